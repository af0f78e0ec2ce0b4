"""Reads for backups: lists, summaries, statistics."""
from datetime import timedelta

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus


def backups(*, target: str | None = None, status: str | None = None, kind: str | None = None) -> QuerySet[Backup]:
    qs = Backup.objects.select_related("database_target", "storage_location")
    if target:
        qs = qs.filter(database_target__name=target)
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def last_physical_backup(*, target) -> Backup | None:
    """The newest succeeded physical backup (full or incremental) of a target: the parent of its next incremental."""
    return (Backup.objects.filter(database_target=target, status=BackupStatus.SUCCEEDED,
                                  format=BackupFormat.BASEBACKUP, kind__in=[BackupKind.FULL, BackupKind.INCREMENTAL])
            .order_by("-created_at", "-pk").first())


def backup_summary(backup: Backup) -> dict:
    return {
        "id": backup.pk,
        "target": backup.database_target.name if backup.database_target else None,
        "kind": backup.kind,
        "format": backup.format,
        "status": backup.status,
        "size_bytes": backup.size_stored,
        "size_raw_bytes": backup.size_raw,
        "sha256": backup.sha256,
        "created_at": backup.created_at,
        "finished_at": backup.finished_at,
        "error": backup.error,
        "last_verified_at": backup.last_verified_at,
        "last_verified_level": backup.last_verified_level,
        "last_verification_result": backup.last_verification_result,
    }


def statistics(*, days: int = 30, per_target: bool = True) -> dict:
    """Counts, sizes and success rate of the database backups; `per_target`: also each target's (the console's
    dashboard cards do without, it shows the targets from apps.monitoring)."""
    since = timezone.now() - timedelta(days=days)
    qs = Backup.objects.filter(database_target__isnull=False)
    ok, recent = Q(status=BackupStatus.SUCCEEDED), Q(created_at__gte=since)
    # One scan of the backups for every figure (each a filtered aggregate), not one query per figure.
    agg = qs.aggregate(
        total=Count("pk"), **{f"status_{s}": Count("pk", filter=Q(status=s)) for s in BackupStatus.values},
        recent_ok=Count("pk", filter=recent & ok),
        recent_finished=Count("pk", filter=recent & Q(status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED])),
        stored=Sum("size_stored", filter=ok), raw=Sum("size_raw", filter=ok), last=Max("finished_at", filter=ok))
    rows = (qs.filter(status=BackupStatus.SUCCEEDED).values("database_target__name")
            .annotate(last=Max("finished_at"), count=Count("pk"), stored=Sum("size_stored"))
            .order_by("database_target__name")) if per_target else []
    targets = [{"target": row["database_target__name"], "last_success_at": row["last"], "backups": row["count"],
                "stored_bytes": row["stored"] or 0} for row in rows]
    return {
        "window_days": days,
        "total_backups": agg["total"],
        "by_status": {s: agg[f"status_{s}"] for s in BackupStatus.values},
        "successful_backups": agg[f"status_{BackupStatus.SUCCEEDED}"],
        "stored_bytes": agg["stored"] or 0,
        "raw_bytes": agg["raw"] or 0,
        "compression_ratio": round(agg["raw"] / agg["stored"], 3) if agg["stored"] else None,
        "last_success_at": agg["last"],
        "success_rate": round(agg["recent_ok"] / agg["recent_finished"], 4) if agg["recent_finished"] else None,
        "targets": targets,
    }
