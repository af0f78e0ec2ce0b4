"""Faults in the production shape (issue 15): a worker killed mid-backup (Redis broker, PostgreSQL metadata), the
metadata database restarted mid-job, the storage location removed mid-upload (a local directory; an S3 server
stopped), the local location's disk full, and the partial upload file of a job killed mid-upload removed when the
job is settled as dead.

Each ends the same way: the job is failed with a reason that says what happened (or, for the metadata restart,
completes), no partial artifact is in the catalog or left in the location, and the next backup succeeds.
Backups run in child `manage.py` processes (tests/test_job_liveness.py's Site) blocked behind a table lock on the
source database for as long as the test needs; the disk-full case runs in this process on a small tmpfs.
"""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from apps.databases.clusters import free_port
from tests.emulators import moto_server
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
        # Nothing committed: no object under its final name, no manifest; and the .partial- upload file the killed
        # process could not remove went when its job was settled as dead (by the next backup's request).
        assert [f for f in files_under(tmp_path / "backups") if backup_id in f] == []
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


# --- An S3 location stopped mid-upload ----------------------------------------------------------------------------

BUCKET = "faults"


@pytest.fixture(scope="module")
def big_db(pg_cluster):
    """A database whose dump (uncompressed) is ~45 MB: six 8 MB multipart parts, a few seconds of upload."""
    create_database(pg_cluster, "faulty_big")
    conn = pg_cluster.conn("faulty_big")
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE listing AS SELECT g AS id, md5(g::text) AS a, md5((-g)::text) AS b "
                  "FROM generate_series(1, 650000) g")
    yield conn
    drop_database(pg_cluster, "faulty_big")


def s3_client(url: str, creds: Path):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", **json.loads(creds.read_text()))


def test_s3_location_stopped_mid_upload_fails_cleanly_and_the_next_backup_works(pg_cluster, big_db, tmp_path):
    """A private moto server (not the session's) is killed once the backup's multipart upload has begun (a part
    is on its way, nothing is visible under the key yet): the backup fails with the store's error, nothing is in
    the catalog. A new server on the same port is empty: the bucket is created again (as an operator bringing
    the store back would), and the next backup goes there and succeeds."""
    creds = tmp_path / "aws.json"
    creds.write_text(json.dumps({"aws_access_key_id": "testing-key-id", "aws_secret_access_key": "testing-secret"}))
    site = pg_site(pg_cluster, tmp_path, big_db, "faults_s3")
    site.env.update(BACKUP_COMPRESSION="none", STORAGE_SDK_ATTEMPTS="2")  # the dump's size is the upload's
    port = free_port()
    try:
        with moto_server(port) as (url, moto):
            client = s3_client(url, creds)
            client.create_bucket(Bucket=BUCKET)
            site.manage("location_add", "s3-gone", "--kind", "s3", "--bucket", BUCKET, "--endpoint-url", url,
                        "--region", "us-east-1", "--credentials-file", str(creds))
            site.add_target("cloudy")
            site.manage("target_locations", "cloudy", "s3-gone")
            proc = site.spawn("db_backup", "cloudy")
            backup_id, _worker = site.wait_running("cloudy")
            deadline = time.monotonic() + 40
            while not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
                assert time.monotonic() < deadline and proc.poll() is None, "the multipart upload never began"
                time.sleep(0.02)
            assert client.list_objects_v2(Bucket=BUCKET, Prefix=f"targets/cloudy/backups/{backup_id}/")["KeyCount"] == 0
            moto.kill()  # the store disappears mid-upload
            moto.wait()
            _out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        row = site.backup_row(backup_id)
        print("S3 stopped mid-upload:", row["error"])
        assert row["status"] == "failed" and row["job_status"] == "failed", row
        assert row["error"].startswith("Cannot upload ") and "s3-gone" in row["error"], row
        assert "Traceback" not in row["error"] and "Traceback" not in row["job_error"], row
        assert f"Backup {backup_id} failed" in err
        assert artifacts_of(site, backup_id) == []
        assert site.rows("SELECT manifest_key FROM backups_backup WHERE id = ?", backup_id) == [("",)]
        assert site.rows("SELECT status FROM backups_replica WHERE backup_id = ?", backup_id) == []

        with moto_server(port) as (url, _moto):
            client = s3_client(url, creds)
            assert client.list_buckets()["Buckets"] == []  # a fresh server keeps nothing of the old one
            client.create_bucket(Bucket=BUCKET)
            again = site.backup("cloudy")
            assert again["status"] == "succeeded", again
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
            assert f"targets/cloudy/backups/{again['id']}/manifest.json" in keys, keys
            assert not [k for k in keys if backup_id in k], keys
        assert site.rows("SELECT status FROM backups_backup WHERE id = ?", backup_id) == [("failed",)]
    finally:
        drop_database(pg_cluster, "faults_s3")


# --- The partial file of a job killed mid-upload ------------------------------------------------------------------

def partials_under(root: Path) -> list[str]:
    return [f for f in files_under(root) if ".partial-" in f]


def wait_partial(root: Path, backup_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [f for f in partials_under(root) if backup_id in f]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no partial upload file of {backup_id} under {root}: {files_under(root)}")


def test_partial_file_of_a_job_killed_mid_upload_is_removed_when_it_is_settled(pg_cluster, lock_db, tmp_path):
    """Two backups upload to the same local location (both blocked behind the table lock with their partial
    files open); one is killed -9. Settling dead jobs (here explicitly; also before any job request and every
    minute) removes that job's partial file — named after its job — and leaves the live one's alone."""
    site = pg_site(pg_cluster, tmp_path, lock_db, "faults_partial")
    root = tmp_path / "backups"
    try:
        site.add_target("dying")
        site.add_target("living")
        with table_locked(lock_db):
            dying = site.spawn("db_backup", "dying")
            dead_id, _ = site.wait_running("dying")
            living = site.spawn("db_backup", "living")
            live_id, _ = site.wait_running("living")
            dead_partial, live_partial = wait_partial(root, dead_id), wait_partial(root, live_id)
            (dead_job,), = site.rows("SELECT job_id FROM backups_backup WHERE id = ?", dead_id)
            (live_job,), = site.rows("SELECT job_id FROM backups_backup WHERE id = ?", live_id)
            assert f".partial-{dead_job}-" in dead_partial and f".partial-{live_job}-" in live_partial
            live_inode = (root / live_partial).stat().st_ino
            dying.send_signal(signal.SIGKILL)
            dying.wait()
            assert (root / dead_partial).exists()  # a killed process cannot remove it itself
            site.manage("shell", "-c", "from apps.jobs.services import reap_dead_jobs; print(reap_dead_jobs())")
            assert partials_under(root) == [live_partial]
            assert (root / live_partial).stat().st_ino == live_inode  # the live upload's file, untouched
            assert living.poll() is None
        out, err = living.communicate(timeout=120)
        assert living.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["status"] == "succeeded"
        dead = site.backup_row(dead_id)
        assert dead["status"] == "failed" and dead["error"].startswith("Abandoned"), dead
        assert artifacts_of(site, dead_id) == []
        assert partials_under(root) == []
        assert [name for name, _key in artifacts_of(site, live_id)], live_id
    finally:
        drop_database(pg_cluster, "faults_partial")
