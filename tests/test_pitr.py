"""Point-in-time recovery on a real archiving cluster: to a time, an LSN and a named restore point, past a gap,
from an incremental, and one table copied back (in place and renamed).

Everything runs as an operator would: `manage.py db_backup --method physical`, the cluster archiving through
`wal_push`, and `manage.py pitr ... --start` (as the postgres user, with the site's environment file, like
the archive commands), then the recovered cluster is queried.
"""
import json
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from apps.databases.clusters import as_server_user, server_bin_dir
from tests.wal_site import TARGET, _give

pytestmark = pytest.mark.usefixtures("wal_site")


def _json(done) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def history(wal_site):
    """A physical base backup, then six committed rows 0.3 s apart, a restore point after the third, an
    incremental after the fifth, all archived."""
    site = wal_site
    site.pitr_tables()
    full = _json(site.manage("db_backup", TARGET, "--method", "physical"))
    assert full["status"] == "succeeded", full
    marks = {}
    for n in range(1, 7):
        site.sql("INSERT INTO events (n) VALUES (%s)", n)
        (lsn,), = site.sql("SELECT pg_current_wal_insert_lsn()::text")
        (at,), = site.sql("SELECT at FROM events WHERE n = %s", n)
        marks[n] = {"at": at, "lsn": lsn}
        if n == 3:
            site.sql("SELECT pg_create_restore_point('after-three')")
        if n == 4:
            site.sql("DELETE FROM leases WHERE id > 10")  # the "corruption", between marks 4 and 5
        if n == 5:
            inc = _json(site.manage("db_backup", TARGET, "--kind", "incremental"))
            assert inc["status"] == "succeeded", inc
        time.sleep(0.3)
    site.wait_archived(site.new_segment())
    return {"full": full, "incremental": inc, "marks": marks}


@pytest.fixture
def recover(wal_site):
    """recover(*pitr args) -> (result JSON, connection to the recovered cluster's database); stopped afterwards."""
    site, started = wal_site, []
    base = Path(tempfile.mkdtemp(prefix="pitr-"))  # not pytest's tmp_path: the postgres user must reach it
    _give(base, 0o755)

    def run(*args, ok=True):
        pgdata = base / f"data{len(started)}"
        done = site.manage("pitr", TARGET, "--pgdata", str(pgdata), *args, ok=False, timeout=300)
        started.append(pgdata)
        if not ok:
            return done
        assert done.returncode == 0, done.stderr
        result = _json(done)
        if "--table" in args:
            return result, None  # the scratch cluster is gone
        return result, psycopg.connect(host="127.0.0.1", port=result["port"], dbname="postgres", user="postgres",
                                       autocommit=True)

    yield run
    for pgdata in started:
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(pgdata), "-m", "immediate",
                                         "stop"]), capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def _events(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT n FROM events ORDER BY n").fetchall()]


def test_recovery_to_a_time_lands_between_two_commits(history, recover):
    m = history["marks"]
    between = m[2]["at"] + (m[3]["at"] - m[2]["at"]) / 2
    result, conn = recover("--target-time", between.isoformat(), "--start")
    assert _events(conn) == [1, 2]
    assert result["base_backup_id"] == history["full"]["id"]  # the incremental ended after that time
    assert "recovery stopping before commit" in result["reached"]
    conn.execute("INSERT INTO events (n) VALUES (100)")  # promoted: writable


def test_recovery_to_an_lsn(history, recover):
    result, conn = recover("--target-lsn", history["marks"][4]["lsn"], "--start")
    assert _events(conn) == [1, 2, 3, 4]


def test_recovery_to_a_named_restore_point(history, recover):
    result, conn = recover("--target-name", "after-three", "--start")
    assert _events(conn) == [1, 2, 3]
    assert "restore point" in result["reached"]


def test_recovery_from_an_incremental_chain(history, recover):
    m = history["marks"]
    between = m[6]["at"] - timedelta(milliseconds=100)  # the incremental ended 0.3 s before mark 6
    result, conn = recover("--target-time", between.isoformat(), "--start")
    assert result["base_backup_id"] == history["incremental"]["id"]
    assert _events(conn) == [1, 2, 3, 4, 5]


def test_a_time_beyond_the_archive_is_refused_before_anything_is_written(history, recover, wal_site):
    window = json.loads(wal_site.manage("wal_status", TARGET, "--json").stdout)
    late = history["marks"][6]["at"] + timedelta(hours=1)
    done = recover("--target-time", late.isoformat(), "--start", ok=False)
    assert done.returncode != 0
    assert "beyond what can be recovered" in done.stderr and "last commit" in done.stderr
    assert window["last_commit_at"]  # the archive knows its last commit, which is what the refusal names


def test_the_recovery_window_is_what_can_be_recovered(history, recover, wal_site):
    """Just inside both ends of the reported window recovery works; just outside it is refused."""
    from django.utils.dateparse import parse_datetime

    window = json.loads(wal_site.orm(
        "import json; from apps.backups import wal_selectors; from apps.databases.models import DatabaseTarget as T; "
        f"print(json.dumps(wal_selectors.recovery_window(T.objects.get(name='{TARGET}')).as_dict(), default=str))"))
    earliest, latest = parse_datetime(window["earliest_at"]), parse_datetime(window["latest_at"])
    assert window["base_backup_id"] == history["full"]["id"] and not window["gaps"]
    assert earliest <= history["marks"][1]["at"] < history["marks"][6]["at"] <= latest

    result, conn = recover("--target-time", (latest - timedelta(microseconds=1)).isoformat(), "--start")
    assert _events(conn) == [1, 2, 3, 4, 5, 6]  # everything committed before the last archived commit
    for outside in (latest, earliest - timedelta(seconds=1)):
        done = recover("--target-time", outside.isoformat(), ok=False)
        assert done.returncode != 0 and ("beyond what can be recovered" in done.stderr
                                          or "No physical backup" in done.stderr), done.stderr


def test_wal_fetch_fetches_ahead_into_a_spool(history, wal_site):
    """What the spool restore_command relies on: one wal_fetch writes the asked segment and the next archived ones,
    each authentic (same SHA-256 as catalogued), stopping where the archive stops."""
    import hashlib

    site = wal_site
    names = [n for (n,) in site.rows("SELECT name FROM backups_walsegment WHERE start_lsn != '' ORDER BY name")]
    work = Path(tempfile.mkdtemp(prefix="spool-"))
    try:
        _give(work, 0o755)
        spool = work / "spool"
        spool.mkdir()
        _give(spool, 0o700)
        site.manage("wal_fetch", TARGET, names[-3], str(work / "asked"), "--spool", str(spool), "--prefetch", "5")
        assert sorted(p.name for p in spool.iterdir()) == names[-2:]  # only what is archived after it
        for name in names[-2:]:
            (sha,), = site.rows("SELECT sha256_raw FROM backups_walsegment WHERE name = ?", name)
            assert hashlib.sha256((spool / name).read_bytes()).hexdigest() == sha
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_one_table_copied_back_renamed_and_in_place(history, recover, wal_site):
    m = history["marks"]
    before_damage = m[4]["at"] + timedelta(milliseconds=1)  # after mark 4 committed, before the DELETE did
    src = wal_site.cluster.conn()
    dsn = f"postgresql://{src.user}@{src.host}:{src.port}/{src.dbname}?sslmode=disable"
    result, _ = recover("--target-time", before_damage.isoformat(), "--table", "public.leases", "--rename",
                        "leases_restored", "--into-dsn", dsn)
    assert "50 rows" in result["table"]
    assert wal_site.sql("SELECT count(*) FROM leases_restored")[0][0] == 50
    assert wal_site.sql("SELECT count(*) FROM leases")[0][0] == 10  # the live table is untouched
    assert not Path(result["pgdata"]).exists()  # the scratch cluster is gone
    # In place: the live rows are replaced by the recovered ones, in one transaction.
    recover("--target-time", before_damage.isoformat(), "--table", "public.leases", "--into-dsn", dsn)
    assert wal_site.sql("SELECT count(*), min(tenant) FROM leases")[0] == (50, "tenant 1")


def test_a_gap_in_the_archive_stops_recovery_with_a_clear_message(history, recover, wal_site):
    """Last in the module: it breaks the archive. The segment holding mark 6 goes missing."""
    site = wal_site
    late = history["marks"][6]["at"] + timedelta(milliseconds=50)
    (name,), = site.sql("SELECT pg_walfile_name(%s::pg_lsn)", history["marks"][6]["lsn"])
    (key,), = site.rows("SELECT key FROM backups_walsegment WHERE name = ?", name)
    stored = site.root / key
    # Gone from storage only: the catalog still promises it, so the server finds out, and says so.
    hidden = stored.rename(stored.with_name(stored.name + ".hidden"))
    done = recover("--target-time", late.isoformat(), "--start", ok=False)
    assert done.returncode != 0
    assert "Recovery ended before it reached the target" in done.stderr, done.stderr
    hidden.rename(stored)
    # Gone from the catalog too, with later WAL archived: a gap, reported, and recovery past it refused up front.
    site.orm(f"from apps.backups.models import WalSegment; WalSegment.objects.filter(name='{name}').delete()")
    stored.unlink()
    site.wait_archived(site.new_segment())
    status = json.loads(site.manage("wal_status", TARGET, "--json").stdout)
    assert status["gaps"] == 1
    done = recover("--target-time", late.isoformat(), "--start", ok=False)
    assert done.returncode != 0
    assert f"Segments {name} to {name} are missing" in done.stderr, done.stderr
    # Up to the gap is still recoverable: with no target, everything archived before it.
    result, conn = recover("--start")
    assert _events(conn) == [1, 2, 3, 4, 5]
