"""No N+1 on the lists and the dashboard: the number of queries a page takes does not grow with the rows it shows.

Each endpoint is measured with a small catalog, then again after adding many more rows (a full page of each list);
the counts must be equal. Runs in both passes of `make test` (SQLite, then PostgreSQL metadata: pgmeta).
"""
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.catalog_fill import fill
from tests.helpers import V1

pytestmark = pytest.mark.pgmeta

ENDPOINTS = [
    f"{V1}/database/backups",
    f"{V1}/database/targets/",
    "/v1/jobs",
    f"{V1}/monitoring/alerts",
    "/",  # the console dashboard
    "/dashboard/charts.json",  # its 30-day lines, fetched by the page
]


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return len(ctx.captured_queries)


@pytest.fixture
def viewer_client(db, api_as, client):
    """A JWT client for the API and a session client for the console, both as a viewer."""
    api = api_as("viewer", "viewer-user")
    from django.contrib.auth.models import User

    client.force_login(User.objects.get(username="viewer-user"))
    return api, client


def test_list_endpoints_take_the_same_queries_for_3_rows_as_for_60(viewer_client):
    api, console = viewer_client
    fill(targets=3, backups=3, alerts=3, prefix="few")

    def measure():
        return {url: count_queries(api if url.startswith("/v") else console, url) for url in ENDPOINTS}

    measure()  # warm: content types, permission caches
    few = measure()
    grown = fill(targets=60, backups=120, alerts=60, prefix="many")
    assert grown["targets"] >= 63 and grown["backups"] >= 123 and grown["alerts"] >= 63
    many = measure()
    assert many == few, {url: (few[url], many[url]) for url in ENDPOINTS if few[url] != many[url]}
    # And small in absolute terms: a list is a handful of queries (auth, count, page, prefetches); the dashboard
    # composes about twenty sections (backups, documents, storage, alerts, DR), each a constant aggregate.
    assert max(n for url, n in many.items() if url.startswith("/v")) <= 10, many
    assert many["/dashboard/charts.json"] <= 8, many
    assert many["/"] <= 21, many  # 45 before the dashboard was aggregated, 28 before its queries were merged, 22 before


def test_job_list_endpoint_exists_under_the_v1_prefix(viewer_client):
    """The job list path used above is the published one (a wrong path would make the comparison vacuous)."""
    api, _console = viewer_client
    fill(targets=1, backups=2, prefix="one")
    r = api.get("/v1/jobs")
    assert r.status_code == 200 and r.json()["count"] >= 2


def rows_read(queries: list[dict]) -> int:
    """How many rows the captured SELECTs returned, by counting each again (the SQL as executed)."""
    total = 0
    with connection.cursor() as cursor:
        for q in queries:
            if q["sql"].lstrip().upper().startswith("SELECT"):
                cursor.execute(f"SELECT COUNT(*) FROM ({q['sql']}) AS counted")
                total += cursor.fetchone()[0]
    return total


def test_dashboard_queries_and_rows_read_do_not_grow_with_backups(viewer_client):
    """With 1,200 backups over 25 days the dashboard takes the queries it takes with 3, and reads what it draws
    (a point per target and day, the newest rows of the short lists), never every backup of the month: the
    per-row charts read about 3 x 960 rows (sizes, durations, replicas) here."""
    _api, console = viewer_client
    fill(targets=3, backups=3, prefix="few")

    def measure():
        with CaptureQueriesContext(connection) as ctx:
            for url in ("/", "/dashboard/charts.json"):
                assert console.get(url).status_code == 200, url
        queries = list(ctx.captured_queries)
        return len(queries), rows_read(queries)

    measure()  # warm: content types, permission caches
    few_queries, few_rows = measure()
    fill(targets=3, backups=1200, prefix="many", minutes_apart=30)
    many_queries, many_rows = measure()
    assert many_queries == few_queries, (few_queries, many_queries)
    # 3 more targets: their rows, about 26 daily points each (sizes and durations in one row), the recent lists.
    assert many_rows - few_rows <= 200, (few_rows, many_rows)


def per_row_reference(now) -> dict:
    """What the dashboard computed row by row before its series and replication lag were aggregated by the
    database: every succeeded backup of 30 days (grouped here by target and UTC day: largest stored size,
    longest run) and the lag of each of a target's 20 newest replicas."""
    from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus

    since = now - timedelta(days=30)
    days: dict = {}
    for b in Backup.objects.filter(status=BackupStatus.SUCCEEDED, finished_at__gte=since,
                                   database_target__isnull=False).select_related("database_target"):
        point = days.setdefault(b.database_target.name, {}).setdefault(
            b.finished_at.astimezone(UTC).date(), {"size": None, "seconds": None})
        if b.size_stored is not None:
            point["size"] = max(point["size"] or 0, b.size_stored)
        if b.started_at is not None:
            seconds = round((b.finished_at - b.started_at).total_seconds(), 2)
            point["seconds"] = max(point["seconds"] if point["seconds"] is not None else seconds, seconds)
    replicas: dict = {}
    for r in (Replica.objects.filter(backup__status=BackupStatus.SUCCEEDED, backup__finished_at__gte=since)
              .exclude(status=ReplicaStatus.DELETED).select_related("backup__database_target")
              .order_by("-backup__created_at", "-pk")):
        replicas.setdefault(r.backup.database_target.name, []).append(r)
    out = {}
    for name in set(days) | set(replicas):
        newest = replicas.get(name, [])[:20]
        # apps.backups.replication.lag_of, with the dashboard's `now` for the copies not done yet.
        lags = [max(0.0, round(((r.copied_at or now) - r.backup.finished_at).total_seconds(), 3))
                for r in newest if r.location_id != r.backup.storage_location_id]
        points = sorted(days.get(name, {}).items())
        out[name] = {
            "sizes": [(day, p["size"]) for day, p in points if p["size"] is not None],
            "durations": [(day, p["seconds"]) for day, p in points if p["seconds"] is not None],
            "replication_lag_seconds": max(lags) if lags else None,
            "replicas_pending": sum(1 for r in newest if r.status != ReplicaStatus.PRESENT),
        }
    return out


def filtered_aggregate_figures(now, windows=(7, 30)) -> dict:
    """target_figures as it was first written: one row per target, a FILTER aggregate per status and window."""
    from django.db.models import Count, Max, Q, Sum

    from apps.backups.models import Backup, BackupStatus

    ok, finished = Q(status=BackupStatus.SUCCEEDED), Q(status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED])
    since = {days: now - timedelta(days=days) for days in windows}
    aggregates = dict(
        total=Count("pk"), **{f"status_{s}": Count("pk", filter=Q(status=s)) for s in BackupStatus.values},
        **{f"ok{d}": Count("pk", filter=ok & Q(created_at__gte=since[d])) for d in windows},
        **{f"finished{d}": Count("pk", filter=finished & Q(created_at__gte=since[d])) for d in windows},
        stored=Sum("size_stored", filter=ok), raw=Sum("size_raw", filter=ok), last=Max("finished_at", filter=ok))
    return {row.pop("database_target"): row for row in Backup.objects.filter(database_target__isnull=False)
            .values("database_target").annotate(**aggregates).order_by()}


def test_aggregated_series_and_replication_lag_equal_the_per_row_results(db):
    """On a small catalog with every case (several backups a day, no start time, no size, failed, expired and
    old backups, more than 20 replicas, replicas pending, deleted or in the backup's own location), the series
    and lags the database aggregates are what the per-row code gave."""
    from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
    from apps.console import selectors
    from apps.databases.models import DatabaseTarget
    from apps.storage.models import StorageLocation

    now = timezone.now().replace(microsecond=0)
    primary = StorageLocation.objects.create(name="eq-primary", kind="local", path="/nonexistent/p")
    far = StorageLocation.objects.create(name="eq-far", kind="local", path="/nonexistent/f")
    near = StorageLocation.objects.create(name="eq-near", kind="local", path="/nonexistent/n")
    busy, quiet, _idle = (DatabaseTarget.objects.create(name=n, host="h", port=1, dbname="d", user="u")
                         for n in ("eq-busy", "eq-quiet", "eq-idle"))
    statuses = [BackupStatus.SUCCEEDED] * 5 + [BackupStatus.FAILED, BackupStatus.EXPIRED]
    for n in range(40):  # every 7 hours: several a day, over about 12 days
        finished = now - timedelta(hours=7 * n, minutes=n)
        b = Backup.objects.create(
            database_target=busy, status=statuses[n % len(statuses)], storage_location=primary,
            started_at=None if n % 9 == 4 else finished - timedelta(seconds=10 + 3.5 * (n % 6)),
            finished_at=finished, size_stored=None if n % 11 == 3 else 1000 + 37 * ((n * 13) % 17))
        Backup.objects.filter(pk=b.pk).update(created_at=finished - timedelta(minutes=1))
        Replica.objects.create(backup=b, location=primary, status=ReplicaStatus.PRESENT, copied_at=finished)
        Replica.objects.create(backup=b, location=far, status=[ReplicaStatus.PRESENT, ReplicaStatus.PENDING,
                                                               ReplicaStatus.DELETED, ReplicaStatus.FAILED][n % 4],
                               copied_at=finished + timedelta(seconds=90 + n) if n % 4 == 0 else None)
        if n % 3 == 0:
            Replica.objects.create(backup=b, location=near, status=ReplicaStatus.COPYING)
    for days_ago, status in ((2, BackupStatus.SUCCEEDED), (40, BackupStatus.SUCCEEDED), (1, BackupStatus.FAILED)):
        at = now - timedelta(days=days_ago)
        b = Backup.objects.create(database_target=quiet, status=status, storage_location=primary,
                                  started_at=at - timedelta(minutes=3), finished_at=at, size_stored=5)
        Replica.objects.create(backup=b, location=near, status=ReplicaStatus.PRESENT,
                               copied_at=at + timedelta(minutes=2))

    expected = per_row_reference(now)
    data = selectors.dashboard(now=now)
    rows = {row["target"]: row for row in data["targets"]}
    assert set(rows) == {"eq-busy", "eq-quiet", "eq-idle"}
    # The cards' totals, summed from the per-target scan, are what the one-scan statistics() gives.
    from apps.backups import selectors as backup_selectors

    totals = backup_selectors.statistics(per_target=False, now=now)
    # The per-target figures, grouped by target and status and folded in Python, are the filtered aggregates.
    figures = backup_selectors.target_figures(now=now, windows=(7, 30))
    assert figures == filtered_aggregate_figures(now) and len(figures) == 2, figures
    assert backup_selectors.target_figures(now=now, windows=(30,)) == filtered_aggregate_figures(now, (30,))
    assert figures[busy.pk]["ok7"] < figures[busy.pk]["ok30"] and figures[busy.pk]["finished7"] > 0
    assert data["statistics"] == totals
    assert totals["by_status"]["failed"] > 0 and totals["by_status"]["expired"] > 0 and 0 < totals["success_rate"] < 1
    assert totals["stored_bytes"] > 0 and totals["last_success_at"] is not None
    drawn = {s["name"]: s for s in selectors.chart_series(now=now) if s["kind"] == "database"}
    assert set(drawn) == set(rows)
    for name, row in rows.items():
        want = expected.get(name, {"sizes": [], "durations": [], "replication_lag_seconds": None,
                                   "replicas_pending": 0})
        assert drawn[name]["sizes"] == [{"x": day.isoformat(), "y": size} for day, size in want["sizes"]], name
        assert drawn[name]["durations"] == [{"x": day.isoformat(), "y": s} for day, s in want["durations"]], name
        assert row["replication_lag_seconds"] == want["replication_lag_seconds"], name
        assert row["replicas_pending"] == want["replicas_pending"], name
    # Not vacuous: several backups fell on one day, the cap of 20 replicas and the lags were exercised.
    busy_days = expected["eq-busy"]["sizes"]
    assert 8 <= len(busy_days) < 30 and expected["eq-busy"]["replicas_pending"] > 0
    assert expected["eq-busy"]["replication_lag_seconds"] > 0 and expected["eq-quiet"]["replication_lag_seconds"] == 120
    assert drawn["eq-busy"]["sizes"][0] == {"x": busy_days[0][0].isoformat(), "y": busy_days[0][1]}


def test_dashboard_alert_and_delivery_counts_in_one_query_each_equal_the_separate_counts(db):
    """The dashboard reads the active alerts once (per target, critical targets, per severity) and the delivery
    counts once: the same numbers as the separate queries it made before, alerts without a target, resolved
    ones and every severity included."""
    from django.db.models import Count

    from apps.databases.models import DatabaseTarget
    from apps.monitoring import selectors
    from apps.monitoring.models import ACTIVE, Alert, AlertStatus, Severity

    a, b, _c = (DatabaseTarget.objects.create(name=n, host="h", port=1, dbname="d", user="u")
                for n in ("al-a", "al-b", "al-c"))
    now = timezone.now()
    statuses = [AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED]
    severities = list(Severity.values)
    for n in range(3 * len(severities) * 3):  # every target (or none) x severity x status
        Alert.objects.create(type="backup_failed", severity=severities[n // 3 % len(severities)],
                             status=statuses[n // (3 * len(severities))], fingerprint=f"f{n}", target="x",
                             message="m", database_target=[a, b, None][n % 3], first_seen=now, last_seen=now)
    by_target, critical, by_severity = selectors._active_alerts()
    assert by_target == dict(Alert.objects.filter(status__in=ACTIVE, database_target__isnull=False)
                             .values_list("database_target").annotate(n=Count("pk")).order_by())
    assert critical == set(Alert.objects.filter(status__in=ACTIVE, severity=Severity.CRITICAL,
                                                database_target__isnull=False).values_list("database_target",
                                                                                           flat=True))
    assert by_severity == selectors.open_alerts_by_severity()
    assert list(by_severity) == list(selectors.open_alerts_by_severity())  # the same order, for the chart
    assert by_target and critical and sum(by_severity.values()) > sum(by_target.values())  # untargeted counted
    data = selectors.dashboard(now=now, size_points=False)
    assert data["open_alerts_by_severity"] == by_severity
    assert data["deliveries"] == {"pending": 0, "failed": 0}
    rows = {r["target"]: r for r in data["targets"]}
    assert [rows[t.name]["open_alerts"] for t in (a, b, _c)] == [by_target.get(a.pk, 0), by_target.get(b.pk, 0), 0]


def test_dashboard_rows_of_archiving_targets_carry_their_wal_status(db):
    """The target rows are read as values; the targets that archive WAL are loaded as models for their WAL
    status: their rows carry archive_status()'s lag and gaps, the others None."""
    from apps.backups import wal_names, wal_selectors
    from apps.backups.models import WalSegment
    from apps.databases.models import DatabaseTarget
    from apps.monitoring import selectors
    from apps.storage.models import StorageLocation

    location = StorageLocation.objects.create(name="wal-loc", kind="local", path="/nonexistent/w")
    archiving = DatabaseTarget.objects.create(name="wal-on", host="h", port=1, dbname="d", user="u",
                                              wal_archiving=True)
    DatabaseTarget.objects.create(name="wal-off", host="h", port=1, dbname="d", user="u")
    for segno in (1, 2, 4):  # a gap at 3
        WalSegment.objects.create(database_target=archiving, storage_location=location,
                                  name=wal_names.segment_name(1, segno, 1 << 20), timeline=1,
                                  start_lsn=wal_names.format_lsn(segno << 20), key="k", size_raw=1 << 20,
                                  size_stored=1, sha256_raw="x", sha256_stored="x", compression="zstd", cipher="none")
    now = timezone.now()
    rows = {r["target"]: r for r in selectors.dashboard(now=now, size_points=False)["targets"]}
    status = wal_selectors.archive_status(archiving, now=now)
    assert rows["wal-on"]["wal_archive_lag_seconds"] == status["archive_lag_seconds"] is not None
    assert rows["wal-on"]["wal_gaps"] == status["gaps"] == 1
    assert rows["wal-off"]["wal_archive_lag_seconds"] is None and rows["wal-off"]["wal_gaps"] is None


def test_dashboard_newest_backups_verifications_and_storage_equal_the_per_row_results(db):
    """The target rows' newest backup and verification and the storage rows' bytes per tier and WAL (one written
    query each on PostgreSQL, ORM queries on SQLite) are what reading the rows one by one gives: targets with
    succeeded and failed backups in either order, none at all, several verifications; replicas in two tiers,
    the default tier, corrupt ones counted, deleted and pending ones not; WAL in one location only."""
    from apps.backups import wal_names
    from apps.backups.models import (
        Backup,
        BackupStatus,
        Replica,
        ReplicaStatus,
        WalSegment,
    )
    from apps.databases.models import DatabaseTarget
    from apps.monitoring import selectors
    from apps.storage.models import StorageLocation
    from apps.verification.models import VerificationRun

    now = timezone.now()
    primary = StorageLocation.objects.create(name="nb-primary", kind="local", path="/nonexistent/p",
                                             used_bytes=500, capacity_bytes=2000, is_primary=True)
    cold = StorageLocation.objects.create(name="nb-cold", kind="local", path="/nonexistent/c", storage_class="GLACIER")
    StorageLocation.objects.create(name="nb-empty", kind="local", path="/nonexistent/e", enabled=False)
    targets = [DatabaseTarget.objects.create(name=f"nb-{n}", host=f"h{n}", port=5400 + n, dbname=f"d{n}", user="u")
               for n in range(4)]
    pattern = {0: [BackupStatus.SUCCEEDED, BackupStatus.FAILED], 1: [BackupStatus.FAILED, BackupStatus.SUCCEEDED],
               2: [BackupStatus.RUNNING, BackupStatus.SUCCEEDED, BackupStatus.SUCCEEDED], 3: []}
    for t, statuses in pattern.items():
        for i, status in enumerate(statuses):
            at = now - timedelta(hours=10 - i)
            b = Backup.objects.create(database_target=targets[t], status=status, storage_location=primary,
                                      started_at=at - timedelta(minutes=1), finished_at=at, size_stored=10 + i)
            Backup.objects.filter(pk=b.pk).update(created_at=at - timedelta(minutes=2))
            for v in range(i + 1):
                run = VerificationRun.objects.create(backup=b, level="checksum", result=["passed", "failed"][v % 2])
                VerificationRun.objects.filter(pk=run.pk).update(created_at=at + timedelta(minutes=v + 3 * t))
            for loc, status_, tier, size in ((primary, ReplicaStatus.PRESENT, "", 100 + i),
                                             (cold, [ReplicaStatus.PRESENT, ReplicaStatus.CORRUPT,
                                                     ReplicaStatus.DELETED, ReplicaStatus.PENDING][(t + i) % 4],
                                              ["GLACIER", "STANDARD_IA"][i % 2], 1000 * (t + 1) + i)):
                Replica.objects.create(backup=b, location=loc, status=status_, storage_class=tier, bytes=size)
    for segno in (1, 2):
        WalSegment.objects.create(database_target=targets[0], storage_location=cold,
                                  name=wal_names.segment_name(1, segno, 1 << 20), timeline=1,
                                  start_lsn=wal_names.format_lsn(segno << 20), key=f"k{segno}", size_raw=1 << 20,
                                  size_stored=7 * segno, sha256_raw="x", sha256_stored="x", compression="zstd",
                                  cipher="none")

    rows = {r["target"]: r for r in selectors.target_rows(now=now, size_points=False, address=True)}
    assert list(rows) == sorted(rows) and set(rows) == {t.name for t in targets}
    for t in targets:
        newest = (Backup.objects.filter(database_target=t, status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED])
                  .order_by("-created_at", "-pk").first())
        want_backup = {"id": newest.pk, "status": newest.status, "kind": newest.kind, "format": newest.format,
                       "finished_at": newest.finished_at} if newest else None
        verification = VerificationRun.objects.filter(backup__database_target=t).order_by("-created_at", "-pk").first()
        want_verification = {"backup_id": verification.backup_id, "level": verification.level,
                             "result": verification.result, "at": verification.created_at} if verification else None
        row = rows[t.name]
        assert row["last_backup"] == want_backup and row["status"] == (newest.status if newest else None), t.name
        assert row["last_verification"] == want_verification, t.name
        assert row["target_id"] == t.pk and row["where"] == f"u@{t.host}:{t.port}/{t.dbname}"
    assert rows["nb-0"]["status"] == "failed" and rows["nb-1"]["status"] == "succeeded"
    assert rows["nb-3"]["last_backup"] is None and rows["nb-3"]["last_verification"] is None
    assert rows["nb-2"]["last_verification"]["result"] == "passed"  # the newest of three runs: passed, failed, passed

    tiers: dict = {}
    for r in Replica.objects.filter(status__in=[ReplicaStatus.PRESENT, ReplicaStatus.CORRUPT]):
        by = tiers.setdefault(r.location.name, {})
        by[r.storage_class or "default"] = by.get(r.storage_class or "default", 0) + r.bytes
    storage = {s["location"]: s for s in selectors.storage_rows(checks={})}
    assert list(storage) == ["nb-cold", "nb-empty", "nb-primary"]
    assert storage["nb-cold"]["bytes_by_tier"] == {**tiers["nb-cold"], "wal": 21}
    assert storage["nb-primary"]["bytes_by_tier"] == tiers["nb-primary"] == {"default": 100 + 101 + 100 + 101 + 102
                                                                            + 100 + 101}
    assert storage["nb-empty"]["bytes_by_tier"] == {} and storage["nb-empty"]["enabled"] is False
    assert len(tiers["nb-cold"]) == 2 and all(type(n) is int for s in storage.values()
                                              for n in s["bytes_by_tier"].values())
    assert (storage["nb-primary"]["used_percent"], storage["nb-primary"]["is_primary"]) == (25.0, True)
    assert storage["nb-cold"]["storage_class"] == "GLACIER" and storage["nb-primary"]["storage_class"] is None


def test_document_source_rows_equal_the_per_row_results(db):
    """documents.selectors.source_rows (one written query on PostgreSQL, the ORM's elsewhere): per source by name,
    its succeeded versions, last success and the files and bytes of its newest succeeded version; a source
    with no succeeded version has 0 / None."""
    from apps.documents import selectors as doc_selectors
    from apps.documents.models import DocumentSource, DocumentVersion, VersionStatus
    from apps.storage.models import StorageLocation

    loc = StorageLocation.objects.create(name="sr-loc", kind="local", path="/nonexistent/s")
    now = timezone.now()
    sources = [DocumentSource.objects.create(name=n, root_path="/nonexistent") for n in ("sr-b", "sr-a", "sr-c")]
    statuses = [VersionStatus.SUCCEEDED, VersionStatus.FAILED, VersionStatus.SUCCEEDED, VersionStatus.FAILED]
    for s, source in enumerate(sources[:2]):
        for i, status in enumerate(statuses[s:]):
            v = DocumentVersion.objects.create(source=source, status=status, storage_location=loc,
                                               finished_at=now - timedelta(hours=5 - i), files=10 * s + i,
                                               bytes_total=1000 * s + i)
            DocumentVersion.objects.filter(pk=v.pk).update(created_at=now - timedelta(hours=5 - i))
    DocumentVersion.objects.create(source=sources[2], status=VersionStatus.FAILED, storage_location=loc, files=3)
    want = []
    for source in sorted(sources, key=lambda x: x.name):
        ok = list(DocumentVersion.objects.filter(source=source, status=VersionStatus.SUCCEEDED)
                  .order_by("-created_at", "-pk"))
        want.append({"source": source.name, "versions": len(ok),
                     "last_success_at": max((v.finished_at for v in ok), default=None),
                     "files": ok[0].files if ok else 0, "bytes_total": ok[0].bytes_total if ok else 0,
                     "source_id": source.pk})
    assert doc_selectors.source_rows(with_ids=True) == want
    assert [w["versions"] for w in want] == [1, 2, 0] and want[1]["files"] == 2 and want[0]["bytes_total"] == 1001


def test_dashboard_short_lists_are_the_rows_the_orm_gives(db):
    """console.selectors.recent_lists (two written statements on PostgreSQL, the ORM's querysets elsewhere): the
    recent jobs and backups tables it yields are byte for byte the ones the ORM's model instances give, with and
    without a requesting user, a target, a size, a finish time or a verification."""
    from django.contrib.auth.models import User

    from apps.backups.models import Backup, BackupStatus
    from apps.console import selectors
    from apps.console.views import _short_lists_html
    from apps.databases.models import DatabaseTarget
    from apps.jobs.models import Job, JobStatus
    from apps.storage.models import StorageLocation

    user = User.objects.create_user("lists-<u>", password="lists-password-1234")
    now = timezone.now()
    for n in range(18):
        job = Job.objects.create(type=f"t<{n % 3}>", status=[JobStatus.RUNNING, JobStatus.FAILED][n % 2],
                                 progress_done=1000 ** (n % 4), requested_by=user if n % 3 else None, via="api")
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(minutes=n))
    loc = StorageLocation.objects.create(name="sl-loc", kind="local", path="/nonexistent/sl")
    target = DatabaseTarget.objects.create(name="sl-<t>", host="h", port=1, dbname="d", user="u")
    for n in range(23):
        b = Backup.objects.create(database_target=None if n % 5 == 1 else target, storage_location=loc,
                                  status=[BackupStatus.SUCCEEDED, BackupStatus.RUNNING][n % 2],
                                  finished_at=None if n % 2 else now - timedelta(hours=n),
                                  size_stored=None if n % 4 == 3 else 1536 * n,
                                  last_verified_at=now - timedelta(minutes=n) if n % 3 == 0 else None,
                                  last_verified_level="restore", last_verification_result=["passed", "failed"][n % 2])
        Backup.objects.filter(pk=b.pk).update(created_at=now - timedelta(minutes=n))
    jobs, backups = selectors.recent_lists(jobs=15, backups=20)
    assert len(jobs) == 15 and len(backups) == 20
    want = _short_lists_html(list(Job.objects.select_related("requested_by")[:15]),
                             list(Backup.objects.select_related("database_target")[:20]))
    assert _short_lists_html(jobs, backups) == want
    assert "lists-&lt;u&gt;" in want[0] and "<td>None</td>" in want[1] and "sl-&lt;t&gt;" in want[1]


def test_dashboard_rpo_of_each_target_follows_its_threshold_rows(db):
    """The rows' RPO is the backup_age rule's parameters for the target: its own row, else the default row, else
    the built-in hours (looked up once for the targets without a row of their own, per target for the others)."""
    from apps.databases.models import DatabaseTarget
    from apps.monitoring import selectors
    from apps.monitoring.models import AlertRule
    from apps.monitoring.rules import registry

    own, _other, off = (DatabaseTarget.objects.create(name=n, host="h", port=1, dbname="d", user="u")
                        for n in ("rpo-own", "rpo-other", "rpo-off"))
    built_in = registry.get("backup_age").defaults["rpo_hours"]

    def rpo_hours():
        return {r["target"]: r["rpo_seconds"] / 3600
                for r in selectors.target_rows(now=timezone.now(), size_points=False)}

    assert rpo_hours() == {"rpo-own": built_in, "rpo-other": built_in, "rpo-off": built_in}
    AlertRule.objects.create(type="backup_age", params={"rpo_hours": 5})
    AlertRule.objects.create(type="backup_age", database_target=own, params={"rpo_hours": 2})
    AlertRule.objects.create(type="backup_age", database_target=off, enabled=False)
    assert rpo_hours() == {"rpo-own": 2, "rpo-other": 5, "rpo-off": built_in}


def test_dashboard_health_and_delivery_figures_equal_the_orm_reading(db):
    """The dashboard's health checks (reachable per target and location, True / False / None when never checked)
    and delivery counts, read by statements written once, are what the models say, on SQLite and PostgreSQL."""
    from apps.databases.models import DatabaseTarget
    from apps.monitoring import selectors
    from apps.monitoring.models import (
        Delivery,
        DeliveryStatus,
        HealthCheck,
        NotificationChannel,
    )
    from apps.storage.models import StorageLocation

    now = timezone.now()
    for name in ("hc-up", "hc-down", "hc-never"):
        DatabaseTarget.objects.create(name=name, host="h", port=1, dbname="d", user="u")
    for name in ("hcl-up", "hcl-down"):
        StorageLocation.objects.create(name=name, kind="local", path=f"/nonexistent/{name}")
    for probe, subject, ok in (("target_reachable", "hc-up", True), ("target_reachable", "hc-down", False),
                               ("storage_reachable", "hcl-up", True), ("storage_reachable", "hcl-down", False),
                               ("other_probe", "hc-never", True)):
        HealthCheck.objects.create(probe=probe, subject=subject, ok=ok, checked_at=now)
    channel = NotificationChannel.objects.create(name="hc-channel", kind="webhook")
    for status in [DeliveryStatus.PENDING] * 3 + [DeliveryStatus.FAILED] * 2 + [DeliveryStatus.SENT]:
        Delivery.objects.create(channel=channel, event="test", status=status, next_attempt_at=now)
    data = selectors.dashboard(now=now, size_points=False)
    reachable = {r["target"]: r["reachable"] for r in data["targets"]}
    assert reachable == {"hc-up": True, "hc-down": False, "hc-never": None}
    assert all(v is None or type(v) is bool for v in reachable.values())  # booleans in the API's JSON, not 0 / 1
    assert {s["location"]: s["reachable"] for s in data["storage"]} == {"hcl-up": True, "hcl-down": False}
    assert data["deliveries"] == {"pending": Delivery.objects.filter(status=DeliveryStatus.PENDING).count(),
                                  "failed": Delivery.objects.filter(status=DeliveryStatus.FAILED).count()} \
        == {"pending": 3, "failed": 2}
