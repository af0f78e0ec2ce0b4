"""Reads for retention: the rules in force, the plan (what the next run would do), lifecycle statistics."""
from datetime import datetime

from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from apps.backups import wal_names
from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus, Replica, ReplicaStatus, WalSegment
from apps.databases.models import DatabaseTarget
from apps.retention import policy
from apps.retention.models import RetentionRule

# Age bands of lifecycle-stats: (label, lower bound in days inclusive, upper bound exclusive or None).
AGE_BANDS = [("0-7d", 0, 7), ("7-30d", 7, 30), ("30-90d", 30, 90), ("90-365d", 90, 365), ("1-7y", 365, 2557),
             (">7y", 2557, None)]
BASE_FORMATS = (BackupFormat.BASEBACKUP,)


def rules_by_target() -> tuple[dict[int, RetentionRule], RetentionRule | None]:
    rules = list(RetentionRule.objects.all())
    return ({r.database_target_id: r for r in rules if r.database_target_id is not None},
            next((r for r in rules if r.database_target_id is None), None))


def backup_facts(*, target: DatabaseTarget | None = None) -> list[policy.BackupFacts]:
    """Every succeeded database backup, as plain data for the policy."""
    qs = Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False)
    if target is not None:
        qs = qs.filter(database_target=target)
    rows = qs.values_list("pk", "database_target__name", "kind", "format", "finished_at", "created_at", "parent_id",
                          "legal_hold", "archived_at", "lsn_start", "timeline", "size_stored")
    facts = []
    for pk, name, kind, fmt, finished, created, parent, hold, archived, lsn, tli, size in rows.iterator():
        physical = fmt in BASE_FORMATS and kind in (BackupKind.FULL, BackupKind.INCREMENTAL) and bool(lsn)
        facts.append(policy.BackupFacts(
            id=pk, target=name, kind=kind, taken_at=finished or created, parent_id=parent, legal_hold=hold,
            archived=archived is not None, physical=physical,
            lsn_start=wal_names.parse_lsn(lsn) if physical else None, timeline=tli, size=size or 0,
        ))
    return facts


def wal_facts(target: DatabaseTarget) -> list[policy.WalFacts]:
    """The target's archived whole segments (not history files or backup labels)."""
    out = []
    rows = WalSegment.objects.filter(database_target=target).exclude(start_lsn="").values_list(
        "name", "timeline", "start_lsn", "size_raw")
    for name, tli, start, size in rows.iterator():
        if wal_names.parse(name).is_segment:
            out.append(policy.WalFacts(name=name, timeline=tli, start_lsn=wal_names.parse_lsn(start), size=size))
    return out


def current_plan(*, target: DatabaseTarget | None = None, now: datetime | None = None) -> policy.Plan:
    """What enforcement would do now: one decision per succeeded backup, and the WAL it would delete."""
    now = now or timezone.now()
    own, default = rules_by_target()
    targets = {t.name: t for t in (DatabaseTarget.objects.filter(pk=target.pk) if target else DatabaseTarget.objects.all())}

    def rules_for(name: str) -> policy.Rules:
        rule = own.get(targets[name].pk, default)
        return rule.as_rules() if rule is not None else policy.Rules()

    wal = {name: wal_facts(t) for name, t in targets.items()}
    return policy.plan(backup_facts(target=target), rules_for=rules_for, now=now, wal=wal)


def _band(age_days: float) -> str:
    for label, low, high in AGE_BANDS:
        if age_days >= low and (high is None or age_days < high):
            return label
    return AGE_BANDS[0][0]


def lifecycle_stats(*, now: datetime | None = None) -> dict:
    """Counts and bytes per status, storage tier and age band; oldest and newest per target; the next run."""
    now = now or timezone.now()
    backups = Backup.objects.filter(database_target__isnull=False)
    by_status = {
        row["status"]: {"count": row["n"], "bytes": row["b"] or 0}
        for row in backups.values("status").annotate(n=Count("pk"), b=Sum("size_stored")).order_by()
    }
    by_tier = {}
    for row in (Replica.objects.filter(status=ReplicaStatus.PRESENT, backup__status=BackupStatus.SUCCEEDED)
                .values("location__name", "storage_class").annotate(n=Count("pk"), b=Sum("bytes")).order_by()):
        key = f"{row['location__name']}:{row['storage_class'] or 'default'}"
        by_tier[key] = {"location": row["location__name"], "tier": row["storage_class"] or "default",
                        "count": row["n"], "bytes": row["b"] or 0}
    by_age = {label: {"count": 0, "bytes": 0} for label, _, _ in AGE_BANDS}
    for finished, created, size in backups.filter(status=BackupStatus.SUCCEEDED).values_list(
            "finished_at", "created_at", "size_stored").iterator():
        band = by_age[_band((now - (finished or created)).total_seconds() / 86400)]
        band["count"] += 1
        band["bytes"] += size or 0
    per_target = []
    for row in (backups.filter(status=BackupStatus.SUCCEEDED).values("database_target__name")
                .annotate(n=Count("pk"), b=Sum("size_stored"), oldest=Min("finished_at"), newest=Max("finished_at"),
                          archived=Count("pk", filter=Q(archived_at__isnull=False)))
                .order_by("database_target__name")):
        per_target.append({"target": row["database_target__name"], "count": row["n"], "bytes": row["b"] or 0,
                           "archived": row["archived"], "oldest_at": row["oldest"], "newest_at": row["newest"]})
    plan = current_plan(now=now)
    nxt = {}
    for action in (policy.DELETE, policy.ARCHIVE):
        chosen = plan.by_action(action)
        nxt[action] = {"count": len(chosen), "bytes": sum(d.size for d in chosen),
                       "backup_ids": [d.backup_id for d in chosen]}
    wal = WalSegment.objects.aggregate(n=Count("pk"), b=Sum("size_stored"))
    return {
        "at": now,
        "by_status": by_status,
        "by_tier": sorted(by_tier.values(), key=lambda r: (r["location"], r["tier"])),
        "by_age": [{"band": label, **by_age[label]} for label, _, _ in AGE_BANDS],
        "targets": per_target,
        "wal": {"count": wal["n"], "bytes": wal["b"] or 0,
                "next_run_deletes": sum(len(v) for v in plan.wal_deletions.values())},
        "next_run": {"delete": nxt[policy.DELETE], "archive": nxt[policy.ARCHIVE]},
    }
