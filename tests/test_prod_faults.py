"""Faults in the production shape (issue 15): a worker killed mid-backup (Redis broker, PostgreSQL metadata), the
metadata database restarted mid-job, the storage location removed mid-upload, the local location's disk full.

Each ends the same way: the job is failed with a reason that says what happened (or, for the metadata restart,
completes), no partial artifact is in the catalog or left in the location, and the next backup succeeds.
Backups run in child `manage.py` processes (tests/test_job_liveness.py's Site) blocked behind a table lock on the
source database for as long as the test needs; the disk-full case runs in this process on a small tmpfs.
"""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import create_database, drop_database, throwaway_cluster
from tests.test_job_liveness import (
    Site,
    assert_next_backup_settles_the_dead_one,
    table_locked,
)


@pytest.fixture(scope="module")
def lock_db(pg_cluster):
    create_database(pg_cluster, "faulty")
    conn = pg_cluster.conn("faulty")
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE listing AS SELECT g AS id, md5(g::text) AS title FROM generate_series(1, 5000) g")
    yield conn
    drop_database(pg_cluster, "faulty")


def pg_site(cluster, base: Path, source, dbname: str) -> Site:
    create_database(cluster, dbname)
    c = cluster.conn(dbname)
    site = Site(base, source, f"postgres://{c.user}@{c.host}:{c.port}/{c.dbname}")
    site.manage("migrate", "-v0")
    return site


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def artifacts_of(site: Site, backup_id: str) -> list[tuple]:
    return site.rows("SELECT name, key FROM backups_backupartifact WHERE backup_id = ?", backup_id)


def stop_cluster(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # one SIGTERM: django-q2 stops its workers itself
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_worker_killed_mid_backup_on_redis_fails_the_job_and_the_next_run_succeeds(pg_cluster, lock_db, tmp_path,
                                                                                    redis_server):
    site = pg_site(pg_cluster, tmp_path, lock_db, "faults_kill")
    site.env["REDIS_URL"] = redis_server
    try:
        site.add_target("killed")
        worker_cluster = site.spawn("qcluster", start_new_session=True)
        try:
            with table_locked(lock_db):
                queued = site.backup("killed", "--queue")
                backup_id, worker = site.wait_running("killed")
                assert backup_id == queued["id"]
                os.kill(int(worker.split(":")[1]), signal.SIGKILL)
            assert_next_backup_settles_the_dead_one(site, "killed", backup_id)
        finally:
            stop_cluster(worker_cluster)
        assert artifacts_of(site, backup_id) == []
        assert site.rows("SELECT manifest_key FROM backups_backup WHERE id = ?", backup_id) == [("",)]
        # Nothing committed: no object under its final name, no manifest (a killed process cannot remove its
        # open .partial- upload file: it is never read as an artifact, nor counted in the catalog).
        left = [f for f in files_under(tmp_path / "backups") if backup_id in f]
        assert all(".partial-" in f for f in left), left
    finally:
        drop_database(pg_cluster, "faults_kill")


def test_metadata_database_restarted_mid_job_then_the_next_backup_works(lock_db, tmp_path):
    """The metadata cluster (its own, so the source stays up) restarts while a backup waits on the source: the
    backup either completes or fails with a reason, never stays running; the next one succeeds."""
    with throwaway_cluster("pgmeta-restart-") as meta:
        site = pg_site(meta, tmp_path, lock_db, "meta")
        site.add_target("restarted")
        with table_locked(lock_db):
            proc = site.spawn("db_backup", "restarted")
            backup_id, _worker = site.wait_running("restarted")
            meta.stop(mode="fast")  # terminates every session, as a restart or failover does
            time.sleep(1)
            meta.start()
            time.sleep(1.5)  # a few heartbeats against the restarted server
        _out, err = proc.communicate(timeout=120)
        row = site.backup_row(backup_id)
        print("metadata restart mid-job:", row)
        assert row["status"] in ("succeeded", "failed"), (row, err[-2000:])
        assert row["job_status"] == row["status"], row
        if row["status"] == "failed":
            assert row["error"] and proc.returncode != 0, row
            assert artifacts_of(site, backup_id) == []
        else:
            assert proc.returncode == 0, err[-2000:]
        again = site.backup("restarted")
        assert again["status"] == "succeeded"


def test_storage_location_removed_mid_upload_fails_cleanly(pg_cluster, lock_db, tmp_path):
    site = pg_site(pg_cluster, tmp_path, lock_db, "faults_gone")
    root = tmp_path / "backups"
    try:
        site.add_target("vanishing")
        with table_locked(lock_db):
            proc = site.spawn("db_backup", "vanishing")
            backup_id, _worker = site.wait_running("vanishing")
            deadline = time.monotonic() + 30  # the upload has begun: its partial file is open in the location
            while not [f for f in files_under(root) if ".partial-" in f] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [f for f in files_under(root) if ".partial-" in f], files_under(root)
            shutil.rmtree(root)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        row = site.backup_row(backup_id)
        assert row["status"] == "failed" and row["job_status"] == "failed", row
        assert "No such file or directory" in row["error"] or "missing" in row["error"].lower(), row
        assert f"Backup {backup_id} failed" in err
        assert artifacts_of(site, backup_id) == []
        assert site.rows("SELECT manifest_key FROM backups_backup WHERE id = ?", backup_id) == [("",)]
        assert not [f for f in files_under(root) if backup_id in f or ".partial-" in f]
        # The location is back (created again on the next write): the next backup works.
        assert site.backup("vanishing")["status"] == "succeeded"
    finally:
        drop_database(pg_cluster, "faults_gone")


@pytest.mark.pgmeta
def test_disk_full_in_the_local_location_fails_with_a_clear_error_and_an_alert(db, target, small_fs):
    """As tests/test_held_up_storage.py, plus: the alert is raised, and it holds
    with the metadata on PostgreSQL too (make test's second pass)."""
    from apps.backups.jobs import DatabaseBackupJob
    from apps.backups.models import Backup, BackupArtifact
    from apps.core.services import SYSTEM
    from apps.monitoring.models import Alert, AlertStatus
    from apps.storage.models import StorageLocation

    root = small_fs(64 * 1024)  # the sample database's dump is hundreds of KB, even compressed
    target.storage_location = StorageLocation.objects.create(name="small", kind="local", path=str(root))
    target.save()
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    assert job.status == "failed" and backup.status == "failed"
    assert "No space left on device" in job.error and "No space left on device" in backup.error, job.error
    assert not BackupArtifact.objects.filter(backup=backup).exists()
    assert backup.manifest_key == ""
    assert files_under(root) == []  # the partial file was removed: the space is free again
    alert = Alert.objects.get(type="backup_failed", database_target=target)
    assert alert.status == AlertStatus.OPEN and backup.pk in (alert.occurrence + str(alert.details)), alert.details
