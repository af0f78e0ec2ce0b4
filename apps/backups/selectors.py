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


def statistics(*, days: int = 30) -> dict:
    since = timezone.now() - timedelta(days=days)
    qs = Backup.objects.filter(database_target__isnull=False)
    recent = qs.filter(created_at__gte=since)
    finished = recent.filter(status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED])
    agg = finished.aggregate(ok=Count("pk", filter=Q(status=BackupStatus.SUCCEEDED)), total=Count("pk"))
    totals = qs.filter(status=BackupStatus.SUCCEEDED).aggregate(
        count=Count("pk"), stored=Sum("size_stored"), raw=Sum("size_raw"), last=Max("finished_at")
    )
    by_status = dict(qs.values_list("status").annotate(n=Count("pk")).order_by())
    per_target = []
    for row in (
        qs.filter(status=BackupStatus.SUCCEEDED)
        .values("database_target__name")
        .annotate(last=Max("finished_at"), count=Count("pk"), stored=Sum("size_stored"))
        .order_by("database_target__name")
    ):
        per_target.append({"target": row["database_target__name"], "last_success_at": row["last"],
                           "backups": row["count"], "stored_bytes": row["stored"] or 0})
    return {
        "window_days": days,
        "total_backups": qs.count(),
        "by_status": {s: by_status.get(s, 0) for s in BackupStatus.values},
        "successful_backups": totals["count"],
        "stored_bytes": totals["stored"] or 0,
        "raw_bytes": totals["raw"] or 0,
        "compression_ratio": round(totals["raw"] / totals["stored"], 3) if totals["stored"] else None,
        "last_success_at": totals["last"],
        "success_rate": round(agg["ok"] / agg["total"], 4) if agg["total"] else None,
        "targets": per_target,
    }
