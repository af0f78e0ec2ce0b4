"""Gaps and the recovery window, from segments really archived by the cluster's archive_command (wal_push).

Base backups are real backups as far as PostgreSQL is concerned (pg_backup_start / pg_backup_stop, which
waits until its last segment is archived and archives the `.backup` label); only their files are not
copied, so their catalog rows are written directly (the physical producer is built elsewhere).
"""
import psycopg
import pytest

from apps.backups import wal_names, wal_selectors
from apps.backups.models import Backup, WalSegment
from apps.databases.models import DatabaseTarget
from apps.storage.services import ensure_default_location
from tests.wal_site import TARGET

SEG = 16 << 20

BACKUP_ROW = """
from django.utils import timezone
from apps.backups.models import Backup
from apps.databases.models import DatabaseTarget
from apps.storage.services import ensure_default_location
b = Backup.objects.create(
    database_target=DatabaseTarget.objects.get(name={target!r}), kind="full", format="basebackup",
    status="succeeded", storage_location=ensure_default_location(), lsn_start={start!r}, lsn_stop={stop!r},
    timeline=1, started_at=timezone.now(), finished_at=timezone.now())
print(b.pk)
"""

DROP_SEGMENT = """
from apps.backups.models import WalSegment
from apps.storage import backends
seg = WalSegment.objects.select_related("storage_location").get(database_target__name={target!r}, name={name!r})
backends.for_location(seg.storage_location).delete(seg.key)
seg.delete()
"""


def base_backup(site, label: str) -> dict:
    with psycopg.connect(**site.cluster.conn().kwargs("wal-test-backup"), autocommit=True) as c:
        (start,) = c.execute("SELECT pg_backup_start(%s, true)::text", (label,)).fetchone()
        (stop,) = c.execute("SELECT lsn::text FROM pg_backup_stop(true)").fetchone()  # waits for the archive
    backup_id = site.orm(BACKUP_ROW.format(target=TARGET, start=start, stop=stop)).strip().splitlines()[-1]
    return {"id": backup_id, "start": start, "stop": stop}


def end_of(name: str) -> str:
    return wal_names.format_lsn(wal_names.parse(name).start_lsn(SEG) + SEG)


def start_of(name: str) -> str:
    return wal_names.format_lsn(wal_names.parse(name).start_lsn(SEG))


@pytest.fixture(scope="module")
def history(wal_site):
    """b1, segments A B C, B removed from catalog and storage, then b2 and D."""
    site = wal_site
    b1 = base_backup(site, "b1")
    label = site.rows("SELECT name FROM backups_walsegment WHERE name LIKE '%.backup'")
    a, b, c = (site.new_segment(rows=50) for _ in range(3))
    segs = {n: site.wait_archived(n) for n in (a, b, c)}
    before = site.status()
    site.orm(DROP_SEGMENT.format(target=TARGET, name=b))
    after_gap = site.status()
    text = site.manage("wal_status", TARGET).stdout
    fetch_gap = site.manage("wal_fetch", TARGET, b, str(site.base / "x"), ok=False)
    b2 = base_backup(site, "b2")
    d = site.new_segment(rows=50)
    segs[d] = site.wait_archived(d)
    return dict(site=site, b1=b1, b2=b2, label=label, a=a, b=b, c=c, d=d, segs=segs, before=before,
                after_gap=after_gap, text=text, fetch_gap=fetch_gap, final=site.status())


def test_backup_label_is_archived(history):
    (name,), = history["label"]
    b1 = history["b1"]
    wal = wal_names.parse(name)
    assert wal.kind == "backup" and wal.start_lsn(SEG) == wal_names.parse_lsn(b1["start"]) // SEG * SEG


def test_continuous_wal_gives_a_window_from_the_base_backup_to_the_last_commit(history):
    st, b1, c = history["before"], history["b1"], history["c"]
    assert st["gaps"] == 0 and len(st["timelines"]["1"]["ranges"]) == 1
    win = st["recovery_window"]
    assert win["recoverable"] and win["base_backup_id"] == b1["id"] and win["timeline"] == 1
    assert win["earliest_lsn"] == b1["stop"] and win["latest_lsn"] == end_of(c)
    assert win["latest_at"] == str(_aware(history["segs"][c]["last_commit_at"]))
    assert win["latest_at"] > win["earliest_at"]


def test_a_missing_segment_is_a_gap_and_ends_the_window_before_it(history):
    st, a, b = history["after_gap"], history["a"], history["b"]
    (gap,) = st["timelines"]["1"]["gaps"]
    assert (gap["first_missing"], gap["last_missing"], gap["missing"]) == (b, b, 1)
    assert gap["start_lsn"] == start_of(b) and gap["end_lsn"] == end_of(b)
    win = st["recovery_window"]
    assert win["base_backup_id"] == history["b1"]["id"]
    assert win["latest_lsn"] == start_of(b)  # nothing past the gap
    assert win["latest_at"] == str(_aware(history["segs"][a]["last_commit_at"]))
    assert win["latest_at"] < str(_aware(history["segs"][b]["last_commit_at"]))
    assert f"GAP on timeline 1: 1 segment(s) missing, {b} .. {b}" in history["text"]
    assert history["fetch_gap"].returncode == 1 and "not in the WAL archive" in history["fetch_gap"].stderr


def test_a_base_backup_after_the_gap_starts_the_current_window(history):
    win = history["final"]["recovery_window"]
    b1, b2, d = history["b1"], history["b2"], history["d"]
    assert win["base_backup_id"] == b2["id"] and win["earliest_lsn"] == b2["stop"]
    assert win["latest_lsn"] == end_of(d)
    assert win["latest_at"] == str(_aware(history["segs"][d]["last_commit_at"]))
    older, current = win["spans"]
    assert older["base_backup_id"] == b1["id"] and older["latest_lsn"] == start_of(history["b"])
    assert current["base_backup_id"] == b2["id"]


@pytest.fixture
def imported(db, history):
    """The site's catalog for the target, copied into the test database (for the API and the admin)."""
    site = history["site"]
    target = DatabaseTarget.objects.create(name=TARGET, host="127.0.0.1", port=5432, dbname="postgres",
                                           user="postgres", wal_archiving=True)
    location = ensure_default_location()
    cols = ["name", "timeline", "start_lsn", "key", "size_raw", "size_stored", "sha256_raw", "sha256_stored",
            "compression", "cipher", "key_id", "last_commit_at"]
    for row in site.rows(f"SELECT {', '.join(cols)} FROM backups_walsegment"):
        fields = dict(zip(cols, row))
        fields["last_commit_at"] = _aware(fields["last_commit_at"])
        WalSegment.objects.create(database_target=target, storage_location=location, **fields)
    bcols = ["id", "kind", "format", "status", "lsn_start", "lsn_stop", "timeline", "finished_at"]
    for row in site.rows(f"SELECT {', '.join(bcols)} FROM backups_backup"):
        fields = dict(zip(bcols, row))
        fields["finished_at"] = _aware(fields["finished_at"])
        Backup.objects.create(database_target=target, storage_location=location, **fields)
    return target


def test_recovery_window_api(imported, history, api_as, client):
    url = f"/v1/backup-recovery/database/targets/{imported.pk}/recovery-window"
    r = api_as("viewer").get(url)
    assert r.status_code == 200, r.content
    body = r.json()
    expected = wal_selectors.recovery_window(imported).as_dict()
    assert body["base_backup_id"] == history["b2"]["id"] == expected["base_backup_id"]
    assert body["latest_lsn"] == end_of(history["d"]) and body["earliest_lsn"] == history["b2"]["stop"]
    assert [g["first_missing"] for g in body["gaps"]] == [history["b"]]
    assert len(body["spans"]) == 2 and body["archive"]["files"] == WalSegment.objects.count()
    assert body["archive"]["archive_lag_seconds"] >= 0
    assert api_as("viewer").get(f"/v1/backup-recovery/database/targets/{imported.pk + 999}/recovery-window"
                                ).status_code == 404
    assert api_as("viewer").get("/v1/backup-recovery/database/targets/x/recovery-window").status_code == 404
    assert client.get(url).status_code == 401
    assert api_as(None).get(url).status_code == 403


def test_admin_target_page_shows_window_gaps_and_lag(imported, history, admin_client):
    r = admin_client.get(f"/admin/databases/databasetarget/{imported.pk}/change/")
    assert r.status_code == 200
    page = r.content.decode()
    assert "Recoverable from" in page and history["b2"]["id"] in page
    assert f"segment(s) missing, {history['b']} to {history['b']}" in page
    assert "Last archived:" in page


def test_no_window_without_a_base_backup(db):
    target = DatabaseTarget.objects.create(name="nobase", host="h", port=5432, dbname="d", user="u")
    location = ensure_default_location()
    for segno in (1, 2, 4):  # 1 MB segments: the size comes from the archived files
        WalSegment.objects.create(database_target=target, storage_location=location,
                                  name=wal_names.segment_name(1, segno, 1 << 20), timeline=1,
                                  start_lsn=wal_names.format_lsn(segno << 20), key="k", size_raw=1 << 20,
                                  size_stored=1, sha256_raw="x", sha256_stored="x", compression="zstd", cipher="none")
    win = wal_selectors.recovery_window(target)
    assert win.current is None and not win.as_dict()["recoverable"]
    (gap,) = win.gaps
    assert gap.first_missing == wal_names.segment_name(1, 3, 1 << 20) and gap.missing == 1
    Backup.objects.create(database_target=target, storage_location=location, kind="full", format="basebackup",
                          status="succeeded", lsn_start="0/500000", lsn_stop="0/500100", timeline=1)
    assert "is not archived" in next(iter(wal_selectors.recovery_window(target).unusable_backups.values()))


def _aware(text):
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
