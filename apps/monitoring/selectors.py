"""Reads of the monitoring app: alert lists and the dashboard, computed from the catalog."""
from datetime import timedelta

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from apps.monitoring.models import ACTIVE, Alert, Delivery, DeliveryStatus, HealthCheck, Severity
from apps.monitoring.rules import registry
from apps.monitoring.thresholds import Thresholds


def alerts(*, status: str | None = None, severity: str | None = None, target: str | None = None,
           type: str | None = None) -> QuerySet[Alert]:
    qs = Alert.objects.select_related("acknowledged_by", "resolved_by")
    if status:
        qs = qs.filter(status=status)
    if severity:
        qs = qs.filter(severity=severity)
    if target:
        qs = qs.filter(target=target)
    if type:
        qs = qs.filter(type=type)
    return qs


def open_alerts_by_severity() -> dict[str, int]:
    rows = dict(Alert.objects.filter(status__in=ACTIVE).values_list("severity").annotate(n=Count("pk")).order_by())
    return {s: rows.get(s, 0) for s in reversed(Severity.values)}


def _rate(ok: int, total: int) -> float | None:
    return round(ok / total, 4) if total else None


def target_rows(*, now) -> list[dict]:
    from apps.backups import wal_selectors
    from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
    from apps.backups.replication import lag_of
    from apps.databases.models import DatabaseTarget
    from apps.verification.models import VerificationRun

    rpo = registry.get("backup_age")(Thresholds())
    finished = [BackupStatus.SUCCEEDED, BackupStatus.FAILED]
    windows = {}
    for days in (7, 30):
        since = now - timedelta(days=days)
        windows[days] = {row["database_target"]: row for row in Backup.objects.filter(
            status__in=finished, created_at__gte=since, database_target__isnull=False).values("database_target")
            .annotate(ok=Count("pk", filter=Q(status=BackupStatus.SUCCEEDED)), total=Count("pk")).order_by()}
    open_alerts = dict(Alert.objects.filter(status__in=ACTIVE, database_target__isnull=False)
                       .values_list("database_target").annotate(n=Count("pk")).order_by())
    critical = set(Alert.objects.filter(status__in=ACTIVE, severity=Severity.CRITICAL, database_target__isnull=False)
                   .values_list("database_target", flat=True))
    reachable = {c.subject: c for c in HealthCheck.objects.filter(probe="target_reachable")}
    # One query per kind of fact, whatever the number of targets (the newest rows by subquery).
    newest = Backup.objects.filter(database_target=OuterRef("pk"))
    last_verification = VerificationRun.objects.filter(backup__database_target=OuterRef("pk")).order_by(
        "-created_at", "-pk")
    targets = list(DatabaseTarget.objects.order_by("name").annotate(
        last_id=Subquery(newest.filter(status__in=finished).order_by("-created_at", "-pk").values("pk")[:1]),
        last_ok_id=Subquery(newest.filter(status=BackupStatus.SUCCEEDED).order_by("-finished_at", "-pk")
                            .values("pk")[:1]),
        verification_id=Subquery(last_verification.values("pk")[:1])))
    backups = Backup.objects.in_bulk([i for t in targets for i in (t.last_id, t.last_ok_id) if i])
    verifications = VerificationRun.objects.in_bulk([t.verification_id for t in targets if t.verification_id])
    sizes_by_target: dict[int, list] = {}
    for target_id, at, kind, stored, raw in (
            Backup.objects.filter(status=BackupStatus.SUCCEEDED, finished_at__gte=now - timedelta(days=30),
                                  database_target__isnull=False)
            .order_by("finished_at").values_list("database_target", "finished_at", "kind", "size_stored", "size_raw")):
        sizes_by_target.setdefault(target_id, []).append((at, kind, stored, raw))
    # Plain values, not model instances: with thousands of backups a month, instances cost a second a page.
    replicas_by_target: dict[int, list] = {}
    for target_id, location_id, primary_id, finished, copied_at, status in (
            Replica.objects.filter(backup__status=BackupStatus.SUCCEEDED,
                                   backup__finished_at__gte=now - timedelta(days=30))
            .exclude(status=ReplicaStatus.DELETED).order_by("-backup__created_at")
            .values_list("backup__database_target", "location", "backup__storage_location", "backup__finished_at",
                         "copied_at", "status")):
        replicas_by_target.setdefault(target_id, []).append(
            (lag_of(finished=finished, copied_at=copied_at, primary=location_id == primary_id), status))
    rows = []
    for target in targets:
        last, last_ok = backups.get(target.last_id), backups.get(target.last_ok_id)
        params = rpo.params(target=target) or rpo.defaults
        rpo_seconds = params["rpo_hours"] * 3600
        age = (now - last_ok.finished_at).total_seconds() if last_ok and last_ok.finished_at else None
        sizes = sizes_by_target.get(target.pk, [])[-500:]
        verification = verifications.get(target.verification_id)
        replicas = replicas_by_target.get(target.pk, [])[:20]
        lags = [lag for lag, _ in replicas if lag is not None]
        wal = wal_selectors.archive_status(target, now=now) if target.wal_archiving else None
        within_rpo = age is not None and age <= rpo_seconds
        verified_ok = verification is None or verification.result == "passed"
        probe = reachable.get(target.name)
        rows.append({
            "target": target.name,
            "enabled": target.enabled,
            "last_backup": {"id": last.pk, "status": last.status, "kind": last.kind, "format": last.format,
                            "finished_at": last.finished_at} if last else None,
            "status": last.status if last else None,
            "last_success_at": last_ok.finished_at if last_ok else None,
            "age_seconds": round(age, 1) if age is not None else None,
            "rpo_seconds": rpo_seconds,
            "within_rpo": within_rpo,
            "success_rate_7d": _rate(windows[7].get(target.pk, {}).get("ok", 0),
                                     windows[7].get(target.pk, {}).get("total", 0)),
            "success_rate_30d": _rate(windows[30].get(target.pk, {}).get("ok", 0),
                                      windows[30].get(target.pk, {}).get("total", 0)),
            "sizes": [{"at": at, "kind": kind, "size_stored": stored, "size_raw": raw}
                      for at, kind, stored, raw in sizes],
            "replication_lag_seconds": max(lags) if lags else None,
            "replicas_pending": sum(1 for _, status in replicas if status != ReplicaStatus.PRESENT),
            "wal_archive_lag_seconds": wal["archive_lag_seconds"] if wal else None,
            "wal_gaps": wal["gaps"] if wal else None,
            "last_verification": {"backup_id": verification.backup_id, "level": verification.level,
                                  "result": verification.result, "at": verification.created_at}
            if verification else None,
            "reachable": probe.ok if probe else None,
            "open_alerts": open_alerts.get(target.pk, 0),
            # Ready for a disaster: a backup within the RPO, its latest verification not failed, no critical alert.
            "dr_ready": bool(target.enabled and within_rpo and verified_ok and target.pk not in critical),
        })
    return rows


def storage_rows() -> list[dict]:
    from apps.backups.models import Replica, ReplicaStatus, WalSegment
    from apps.storage.models import StorageLocation

    tiers: dict[int, dict[str, int]] = {}
    for loc, tier, n in (Replica.objects.filter(status__in=[ReplicaStatus.PRESENT, ReplicaStatus.CORRUPT])
                         .values_list("location", "storage_class").annotate(n=Sum("bytes")).order_by()):
        tiers.setdefault(loc, {})[tier or "default"] = tiers.get(loc, {}).get(tier or "default", 0) + (n or 0)
    wal = dict(WalSegment.objects.values_list("storage_location").annotate(n=Sum("size_stored")).order_by())
    reachable = {c.subject: c for c in HealthCheck.objects.filter(probe="storage_reachable")}
    rows = []
    for loc in StorageLocation.objects.order_by("name"):
        by_tier = tiers.get(loc.pk, {})
        if wal.get(loc.pk):
            by_tier = {**by_tier, "wal": wal[loc.pk]}
        probe = reachable.get(loc.name)
        rows.append({
            "location": loc.name, "kind": loc.kind, "storage_class": loc.storage_class or None,
            "is_primary": loc.is_primary, "enabled": loc.enabled, "used_bytes": loc.used_bytes,
            "capacity_bytes": loc.capacity_bytes,
            "used_percent": round(100.0 * loc.used_bytes / loc.capacity_bytes, 2) if loc.capacity_bytes else None,
            "bytes_by_tier": by_tier, "reachable": probe.ok if probe else None,
        })
    return rows


def dashboard(*, now=None) -> dict:
    now = now or timezone.now()
    targets = target_rows(now=now)
    return {
        "generated_at": now,
        "targets": targets,
        "storage": storage_rows(),
        "open_alerts_by_severity": open_alerts_by_severity(),
        "deliveries": {"pending": Delivery.objects.filter(status=DeliveryStatus.PENDING).count(),
                       "failed": Delivery.objects.filter(status=DeliveryStatus.FAILED).count()},
        "dr_ready_targets": sum(1 for t in targets if t["dr_ready"]),
        "targets_total": len(targets),
    }
