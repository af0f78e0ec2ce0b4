"""DR drills on a real archiving cluster: `dr_test PLAN` recovers the latest physical backup + archived WAL into a
scratch cluster, runs the plan's checks, reports RTO and RPO, removes the cluster; it fails (non-zero exit, a
failed DRDrill with the reasons) when a check fails and when the latest backup is corrupt.

As in tests/test_pitr.py, everything runs in the archiving site as the postgres user (the recovered server's
restore_command reads the site's environment file).
"""
import json
import shutil
import time
from pathlib import Path

import pytest

from tests.wal_site import TARGET, _give

pytestmark = pytest.mark.usefixtures("wal_site")


def _report(done) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def drill_site(wal_site):
    """The site with a RECOVERY_ROOT the postgres user owns, a physical backup, ten rows after it (archived), and
    plan `walplan` counting them."""
    site = wal_site
    root = site.base / "recoveries"
    root.mkdir()
    _give(root, 0o755)
    with open(site.env_file, "a") as fh:
        fh.write(f"RECOVERY_ROOT={root}\n")
    site.root_recoveries = root
    site.sql("CREATE TABLE events (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    backup = _report(site.manage("db_backup", TARGET, "--method", "physical"))
    assert backup["status"] == "succeeded", backup
    site.backup = backup
    for n in range(1, 11):
        site.sql("INSERT INTO events (n) VALUES (%s)", n)
    (site.last_at,), = site.sql("SELECT max(at) FROM events")
    site.wait_archived(site.new_segment())
    site.orm(
        "from apps.recovery.models import DRPlan; from apps.databases.models import DatabaseTarget as T; "
        f"DRPlan.objects.create(name='walplan', primary=T.objects.get(name='{TARGET}'), "
        "drill_tables=['public.events', 'public.marks'], drill_probe_sql='SELECT count(*) = 10 FROM events', "
        "rpo_objective_seconds=3600, rto_objective_seconds=600)")
    return site


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_drill_restores_checks_measures_and_removes_the_cluster(drill_site):
    site = drill_site
    started = time.time()
    done = site.manage("dr_test", "walplan", ok=False, timeout=300)
    assert done.returncode == 0, done.stderr
    report = _report(done)
    assert report["status"] == "passed", report
    assert report["base_backup_id"] == site.backup["id"]
    assert report["checks"]["tables"]["public.events"] == 10 and report["checks"]["probe"] is True
    assert 0 < report["rto_seconds"] < time.time() - started
    # RPO: from the last commit the recovery replayed (the tenth row's, or a later one of the archive) to the drill.
    assert report["last_commit_at"] >= site.last_at.isoformat()
    assert 0 <= report["rpo_seconds"] < time.time() - site.last_at.timestamp()
    assert report["objectives_met"] is True and report["reasons"] == []
    assert report["scratch_removed"] is True and list(site.root_recoveries.iterdir()) == []
    (port,), = site.rows("SELECT port FROM recovery_recoveryrun WHERE id = ?", report["recovery_id"])
    assert port and not _listening(port)
    (kind, status), = site.rows("SELECT kind, status FROM recovery_recoveryrun WHERE id = ?", report["recovery_id"])
    assert (kind, status) == ("drill", "succeeded")


def test_a_failed_check_or_a_missed_objective_fails_the_drill(drill_site):
    site = drill_site
    site.orm("from apps.recovery.models import DRPlan; DRPlan.objects.filter(name='walplan').update("
             "drill_probe_sql='SELECT count(*) = 11 FROM events', drill_tables=['public.nope'], "
             "rto_objective_seconds=0)")
    done = site.manage("dr_test", "walplan", ok=False, timeout=300)
    assert done.returncode != 0
    report = _report(done)
    assert report["status"] == "failed" and report["objectives_met"] is False
    reasons = " | ".join(report["reasons"])
    assert "the probe answered False" in reasons and "public.nope" in reasons and "RTO" in reasons, reasons
    assert report["scratch_removed"] is True and list(site.root_recoveries.iterdir()) == []
    site.orm("from apps.recovery.models import DRPlan; DRPlan.objects.filter(name='walplan').update("
             "drill_probe_sql='SELECT count(*) = 10 FROM events', drill_tables=['public.events'], "
             "rto_objective_seconds=600)")


def test_complete_database_failure_runbook_recovers_everything_archived(drill_site):
    """docs/OPERATIONS.md, "Complete database failure": `pitr TARGET --pgdata DIR --start` with no target recovers
    the latest backup + every archived commit into a new, writable cluster."""
    import psycopg

    from apps.databases.clusters import LocalCluster

    site = drill_site
    pgdata = site.root_recoveries / "replacement"
    done = site.manage("pitr", TARGET, "--pgdata", str(pgdata), "--start", ok=False, timeout=300)
    assert done.returncode == 0, done.stderr
    result = _report(done)
    try:
        with psycopg.connect(host="127.0.0.1", port=result["port"], dbname="postgres", user="postgres",
                             autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 10
            c.execute("INSERT INTO events (n) VALUES (11)")  # promoted: the new primary takes writes
    finally:
        LocalCluster(base=site.root_recoveries, port=result["port"], data_dir=pgdata).stop(mode="immediate")
        for leftover in site.root_recoveries.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def test_a_corrupt_latest_backup_fails_the_drill(drill_site):
    """Last: it breaks the backup. One byte of the stored base.tar artifact is flipped."""
    site = drill_site
    (key,), = site.rows("SELECT key FROM backups_backupartifact WHERE backup_id = ? AND name = 'base.tar'",
                        site.backup["id"])
    stored = Path(site.root) / key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    done = site.manage("dr_test", "walplan", ok=False, timeout=300)
    assert done.returncode != 0
    report = _report(done)
    assert report["status"] == "failed" and report["rto_seconds"] is None
    assert any("recovery failed" in r for r in report["reasons"]), report["reasons"]
    assert report["scratch_removed"] is True and list(site.root_recoveries.iterdir()) == []
    (status,), = site.rows("SELECT status FROM recovery_drdrill WHERE id = ?", report["drill_id"])
    assert status == "failed"
