"""Reads of the monitoring app: alert lists and the dashboard, computed from the catalog."""
from datetime import timedelta
from types import SimpleNamespace

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core.selectors import fetch_all
from apps.monitoring.models import (
    ACTIVE,
    Alert,
    Delivery,
    DeliveryStatus,
    HealthCheck,
    Severity,
)
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


def _active_alerts() -> tuple[dict[int, int], set[int], dict[str, int]]:
    """The active alerts in one grouped query: the number per target, the targets with a critical one, and the
    number per severity (open_alerts_by_severity()), for the dashboard, which needs all three."""
    by_target: dict[int, int] = {}
    critical: set[int] = set()
    by_severity = {s: 0 for s in reversed(Severity.values)}
    for target, severity, n in fetch_all(f"""
            SELECT database_target_id, severity, COUNT(*) FROM {Alert._meta.db_table}
            WHERE status IN ({", ".join(["%s"] * len(ACTIVE))}) GROUP BY database_target_id, severity""",
                                      list(ACTIVE)):
        if severity in by_severity:
            by_severity[severity] += n
        if target is not None:
            by_target[target] = by_target.get(target, 0) + n
            if severity == Severity.CRITICAL:
                critical.add(target)
    return by_target, critical, by_severity


def _rate(ok: int, total: int) -> float | None:
    return round(ok / total, 4) if total else None


def _replication(*, now, since, newest: int = 20) -> dict:
    """Per target, over the replicas of its `newest` latest succeeded backups of the window (deleted ones left
    out): the worst replication lag (copied_at, or now while still copying, minus the backup's end; replicas in
    the backup's own location have none) and how many are not present yet. Two correlated aggregates, computed
    by the database: no replica row comes to Python."""
    from apps.backups.models import BackupStatus, Replica, ReplicaStatus

    recent = (Replica.objects.filter(backup__database_target=OuterRef(OuterRef("pk")),
                                     backup__status=BackupStatus.SUCCEEDED, backup__finished_at__gte=since)
              .exclude(status=ReplicaStatus.DELETED).order_by("-backup__created_at", "-pk").values("pk")[:newest])
    of_target = Replica.objects.filter(pk__in=Subquery(recent)).values("backup__database_target")
    lag = ExpressionWrapper(Coalesce("copied_at", Value(now, output_field=DateTimeField()))
                            - F("backup__finished_at"), output_field=DurationField())
    return {
        "lag": Subquery(of_target.exclude(location=F("backup__storage_location")).annotate(m=Max(lag)).values("m")),
        "pending": Subquery(of_target.exclude(status=ReplicaStatus.PRESENT).annotate(n=Count("pk")).values("n")),
    }


def _target_facts(*, now, since, newest: int = 20) -> tuple[list, dict, dict] | None:
    """Every target's row facts in one PostgreSQL query, written once here (no queryset composed per request: the
    ORM's composing of the three queries it replaces cost more Python than the rest of the rows): the target's
    columns, its newest succeeded and newest failed backup (each an index lookup on (target, status,
    -created_at)), its newest verification, and what _replication computes (each target's `newest` replicas by a
    LATERAL index walk of its newest succeeded backups, aggregated once).
    Returns (targets as SimpleNamespace ordered by name, each with `last`: (id, status, kind, format, finished_at)
    of the newer of the two backups or None, {verification id: SimpleNamespace(backup_id, level, result,
    created_at)}), the shapes the ORM path of target_rows builds (only the datetimes the rows show are read: their
    loading was ~3 ms a page); None on other databases (SQLite: that ORM path). tests/test_prod_queries.py
    compares both with the per-row reference on each database."""
    from django.db import connection

    from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
    from apps.databases.models import DatabaseTarget
    from apps.verification.models import VerificationRun

    if connection.vendor != "postgresql":
        return None
    q = connection.ops.quote_name
    columns = ", ".join(f"t.{q(DatabaseTarget._meta.get_field(f).column)}"
                        for f in ("id", "name", "enabled", "wal_archiving", "user", "host", "port", "dbname"))
    b_table, r_table = Backup._meta.db_table, Replica._meta.db_table

    newest_two = " UNION ALL ".join(f"""(
                SELECT b.id, b.created_at, b.status, b.kind, b.format, b.finished_at FROM {b_table} b
                WHERE b.database_target_id = t.id AND b.status = %s ORDER BY b.created_at DESC, b.id DESC LIMIT 1)"""
                                for _ in range(2))
    # The newer of the newest succeeded and the newest failed backup by (created_at, id): ids compared as Python
    # compares them (code points: the "C" collation).
    sql = f"""
        SELECT {columns}, last.id, last.status, last.kind, last.format, last.finished_at,
               v.id, v.backup_id, v.level, v.result, v.created_at, rep.lag, rep.pending
        FROM {DatabaseTarget._meta.db_table} t
        LEFT JOIN LATERAL (
            SELECT u.id, u.status, u.kind, u.format, u.finished_at FROM ({newest_two}) u
            ORDER BY u.created_at DESC, u.id COLLATE "C" DESC LIMIT 1
        ) last ON true
        LEFT JOIN LATERAL (
            SELECT v.id, v.backup_id, v.level, v.result, v.created_at
            FROM {VerificationRun._meta.db_table} v JOIN {b_table} b ON b.id = v.backup_id
            WHERE b.database_target_id = t.id ORDER BY v.created_at DESC, v.id DESC LIMIT 1
        ) v ON true
        CROSS JOIN LATERAL (
            SELECT MAX(CASE WHEN x.location_id <> x.storage_location_id
                            THEN COALESCE(x.copied_at, %s) - x.finished_at END) AS lag,
                   COUNT(*) FILTER (WHERE x.status <> %s) AS pending
            FROM (SELECT r.location_id, b.storage_location_id, r.copied_at, b.finished_at, r.status
                  FROM {b_table} b JOIN {r_table} r ON r.backup_id = b.id
                  WHERE b.database_target_id = t.id AND b.status = %s AND b.finished_at >= %s AND r.status <> %s
                  ORDER BY b.created_at DESC, r.id DESC LIMIT %s) x
        ) rep
        ORDER BY t.{q(DatabaseTarget._meta.get_field("name").column)}"""
    fetched = fetch_all(sql, [BackupStatus.SUCCEEDED, BackupStatus.FAILED, now, ReplicaStatus.PRESENT,
                              BackupStatus.SUCCEEDED, since, ReplicaStatus.DELETED, newest])
    targets, verifications = [], {}
    for row in fetched:
        pk, name, enabled, wal_archiving, user, host, port, dbname = row[:8]
        last, verification, (lag, pending) = row[8:13], row[13:18], row[18:]
        if verification[0] is not None:
            verifications[verification[0]] = SimpleNamespace(
                backup_id=verification[1], level=verification[2], result=verification[3], created_at=verification[4])
        targets.append(SimpleNamespace(
            pk=pk, name=name, enabled=enabled, wal_archiving=wal_archiving, user=user, host=host, port=port,
            dbname=dbname, last=last if last[0] is not None else None, verification_id=verification[0],
            replication_lag=lag, replication_pending=pending))
    return targets, verifications


def target_rows(*, now, size_points: bool = True, figures: dict | None = None, alerts: tuple | None = None,
                checks: dict | None = None, address: bool = False) -> list[dict]:
    """One row per target: newest and last successful backup, age against the RPO, success rates, replication
    and WAL lag, verification, alerts and DR readiness, in a fixed number of queries whatever the number of
    targets and backups. `size_points`: the size of every succeeded backup of 30 days (the API's `sizes`); the
    console draws its own daily series instead (apps.console.selectors.daily_series) and passes False.
    `alerts` (_active_alerts()) and `checks` (health checks by probe and subject): when the caller has them.
    `address`: also each row's `target_id` and `where` (user@host:port/dbname), read with the targets (the
    console's table shows them; a second query of the targets did it before)."""
    from apps.backups import selectors as backup_selectors
    from apps.backups import wal_selectors
    from apps.backups.models import Backup, BackupStatus
    from apps.databases.models import DatabaseTarget
    from apps.verification.models import VerificationRun

    rpo = registry.get("backup_age")(Thresholds())
    # The RPO of every target without a threshold row of its own is the default scope's: looked up once.
    default_rpo, scoped = rpo.params(), rpo.thresholds.scoped_targets(rpo)
    finished = [BackupStatus.SUCCEEDED, BackupStatus.FAILED]
    since = {days: now - timedelta(days=days) for days in (7, 30)}
    # Success rates of 7 and 30 days and the last success, aggregated per target in one scan (the console passes
    # the figures it also sums into its totals).
    counts = figures if figures is not None else backup_selectors.target_figures(now=now, windows=(7, 30))
    open_alerts, critical, _by_severity = alerts if alerts is not None else _active_alerts()
    reachable = (checks if checks is not None else _health_checks()).get("target_reachable", {})
    # One query per kind of fact, whatever the number of targets (the newest rows by subquery). The newest
    # finished backup is the newer of the newest succeeded and the newest failed one: each an index lookup on
    # (target, status, -created_at), where `status IN (...)` would scan.
    newest = Backup.objects.filter(database_target=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")
    last_verification = VerificationRun.objects.filter(backup__database_target=OuterRef("pk")).order_by(
        "-created_at", "-pk")
    facts = _target_facts(now=now, since=since[30])
    if facts is not None:  # PostgreSQL: the targets with their newest backups, verification and replication
        targets, verifications = facts
    else:
        # The row needs the name, the switches and the pk (thresholds): values, not a model instance per target
        # (the WAL status, for the targets that archive, reads the model: loaded for those only).
        annotations = {f"last_{s}_id": Subquery(newest.filter(status=s)[:1]) for s in finished}
        annotations["verification_id"] = Subquery(last_verification.values("pk")[:1])
        annotations.update({f"replication_{k}": v for k, v in _replication(now=now, since=since[30]).items()})
        targets = [SimpleNamespace(**row) for row in DatabaseTarget.objects.order_by("name").annotate(**annotations)
                   .values("pk", "name", "enabled", "wal_archiving", "user", "host", "port", "dbname", *annotations)]
        backups = {row[0]: row for row in Backup.objects.filter(
            pk__in=[getattr(t, f"last_{s}_id") for t in targets for s in finished if getattr(t, f"last_{s}_id")])
            .values_list("pk", "created_at", "status", "kind", "format", "finished_at")}
        verifications = VerificationRun.objects.in_bulk([t.verification_id for t in targets if t.verification_id])
        for target in targets:
            candidates = [backups[i] for i in (getattr(target, f"last_{s}_id") for s in finished) if i in backups]
            newest_row = max(candidates, key=lambda b: (b[1], b[0]), default=None)  # (created_at, pk)
            target.last = (newest_row[0], *newest_row[2:]) if newest_row else None  # (id, status, kind, ...)
    archiving = DatabaseTarget.objects.in_bulk([t.pk for t in targets if t.wal_archiving]) \
        if any(t.wal_archiving for t in targets) else {}
    sizes_by_target: dict[int, list] = {}
    if size_points:
        for target_id, at, kind, stored, raw in (
                Backup.objects.filter(status=BackupStatus.SUCCEEDED, finished_at__gte=since[30],
                                      database_target__isnull=False)
                .order_by("finished_at").values_list("database_target", "finished_at", "kind", "size_stored",
                                                     "size_raw")):
            sizes_by_target.setdefault(target_id, []).append((at, kind, stored, raw))
    rows = []
    for target in targets:
        last = target.last  # (id, status, kind, format, finished_at) of the newest finished backup, or None
        last_ok_at = counts.get(target.pk, {}).get("last")
        params = (rpo.params(target=target) if target.pk in scoped else default_rpo) or rpo.defaults
        rpo_seconds = params["rpo_hours"] * 3600
        age = (now - last_ok_at).total_seconds() if last_ok_at else None
        sizes = sizes_by_target.get(target.pk, [])[-500:]
        verification = verifications.get(target.verification_id)
        lag = target.replication_lag
        wal = wal_selectors.archive_status(archiving[target.pk], now=now) if target.wal_archiving else None
        within_rpo = age is not None and age <= rpo_seconds
        verified_ok = verification is None or verification.result == "passed"
        probe = reachable.get(target.name)
        rate = counts.get(target.pk, {})
        rows.append({
            "target": target.name,
            "enabled": target.enabled,
            "last_backup": {"id": last[0], "status": last[1], "kind": last[2], "format": last[3],
                            "finished_at": last[4]} if last else None,
            "status": last[1] if last else None,
            "last_success_at": last_ok_at,
            "age_seconds": round(age, 1) if age is not None else None,
            "rpo_seconds": rpo_seconds,
            "within_rpo": within_rpo,
            "success_rate_7d": _rate(rate.get("ok7", 0), rate.get("finished7", 0)),
            "success_rate_30d": _rate(rate.get("ok30", 0), rate.get("finished30", 0)),
            "sizes": [{"at": at, "kind": kind, "size_stored": stored, "size_raw": raw}
                      for at, kind, stored, raw in sizes],
            "replication_lag_seconds": max(0.0, round(lag.total_seconds(), 3)) if lag is not None else None,
            "replicas_pending": target.replication_pending or 0,
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
        if address:
            rows[-1]["target_id"] = target.pk
            rows[-1]["where"] = f"{target.user}@{target.host}:{target.port}/{target.dbname}"
    return rows


def _health_checks(probes=("target_reachable", "storage_reachable")) -> dict[str, dict[str, SimpleNamespace]]:
    """The latest health check of each subject, by probe (its `ok`): one query for the dashboard's two probes."""
    out: dict[str, dict[str, SimpleNamespace]] = {p: {} for p in probes}
    for probe, subject, ok in fetch_all(f"""SELECT probe, subject, ok FROM {HealthCheck._meta.db_table}
                                         WHERE probe IN ({", ".join(["%s"] * len(probes))})""", list(probes)):
        out[probe][subject] = SimpleNamespace(ok=bool(ok))  # SQLite gives 0 / 1
    return out


_LOCATION_COLUMNS = ("pk", "name", "kind", "storage_class", "is_primary", "enabled", "used_bytes", "capacity_bytes")


def _storage_figures() -> tuple[list, dict, dict]:
    """The storage locations (the columns storage_rows shows, as SimpleNamespace; by name), the bytes of present
    or corrupt replicas per location and tier ({location id: {tier or "default": bytes}}) and the stored WAL bytes
    per location: on PostgreSQL one query written once (the tier and WAL sums joined as aggregates; the ORM's
    three queries cost ~3 ms of composing), elsewhere those three ORM queries."""
    from django.db import connection

    from apps.backups.models import Replica, ReplicaStatus, WalSegment
    from apps.storage.models import StorageLocation

    kept = [ReplicaStatus.PRESENT, ReplicaStatus.CORRUPT]
    tiers: dict[int, dict[str, int]] = {}

    def add(loc, tier, n):
        tiers.setdefault(loc, {})[tier or "default"] = tiers.get(loc, {}).get(tier or "default", 0) + (n or 0)

    if connection.vendor != "postgresql":
        for loc, tier, n in (Replica.objects.filter(status__in=kept).values_list("location", "storage_class")
                             .annotate(n=Sum("bytes")).order_by()):
            add(loc, tier, n)
        wal = dict(WalSegment.objects.values_list("storage_location").annotate(n=Sum("size_stored")).order_by())
        return ([SimpleNamespace(**row) for row in StorageLocation.objects.order_by("name").values(*_LOCATION_COLUMNS)],
                tiers, wal)
    q = connection.ops.quote_name
    columns = ", ".join(f"l.{q(StorageLocation._meta.get_field('id' if f == 'pk' else f).column)}"
                        for f in _LOCATION_COLUMNS)
    sql = f"""
        SELECT {columns}, tiers.sums, wal.n
        FROM {StorageLocation._meta.db_table} l
        LEFT JOIN (SELECT location_id, json_agg(json_build_array(storage_class, n) ORDER BY storage_class) AS sums
                   FROM (SELECT location_id, storage_class, SUM(bytes) AS n FROM {Replica._meta.db_table}
                         WHERE status IN (%s, %s) GROUP BY location_id, storage_class) s
                   GROUP BY location_id) tiers ON tiers.location_id = l.id
        LEFT JOIN (SELECT storage_location_id, SUM(size_stored) AS n FROM {WalSegment._meta.db_table}
                   GROUP BY storage_location_id) wal ON wal.storage_location_id = l.id
        ORDER BY l.{q(StorageLocation._meta.get_field("name").column)}"""
    rows = fetch_all(sql, kept)
    locations, wal = [], {}
    for row in rows:
        loc = SimpleNamespace(**dict(zip(_LOCATION_COLUMNS, row)))
        locations.append(loc)
        for tier, n in row[-2] or ():
            add(loc.pk, tier, int(n))
        if row[-1] is not None:
            wal[loc.pk] = int(row[-1])
    return locations, tiers, wal


def storage_rows(*, checks: dict | None = None) -> list[dict]:
    locations, tiers, wal = _storage_figures()
    reachable = (checks if checks is not None else _health_checks()).get("storage_reachable", {})
    rows = []
    for loc in locations:
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


def dashboard(*, now=None, size_points: bool = True, figures: dict | None = None, address: bool = False) -> dict:
    """`figures`: apps.backups.selectors.target_figures(now=now), when the caller has them already; `address`:
    the target rows' `target_id` and `where` (target_rows)."""
    now = now or timezone.now()
    alerts, checks = _active_alerts(), _health_checks()
    targets = target_rows(now=now, size_points=size_points, figures=figures, alerts=alerts, checks=checks,
                          address=address)
    return {
        "generated_at": now,
        "targets": targets,
        "storage": storage_rows(checks=checks),
        "open_alerts_by_severity": alerts[2],
        "deliveries": dict(zip(("pending", "failed"), fetch_all(f"""
            SELECT COUNT(CASE WHEN status = %s THEN 1 END), COUNT(CASE WHEN status = %s THEN 1 END)
            FROM {Delivery._meta.db_table}""", [DeliveryStatus.PENDING, DeliveryStatus.FAILED])[0], strict=True)),
        "dr_ready_targets": sum(1 for t in targets if t["dr_ready"]),
        "targets_total": len(targets),
    }
