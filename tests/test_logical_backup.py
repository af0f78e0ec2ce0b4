"""Logical backups end to end on a real PostgreSQL 15 cluster: every format, restores, failure paths."""
import json
import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.core.models import AuditEvent
from apps.databases import sample_data
from apps.jobs.models import Job
from tests.helpers import create_database, drop_database, table_contents

pytestmark = pytest.mark.django_db

TABLES = ["public.properties", "public.tenants", "public.leases", "billing.payments"]


def backup_cli(name="sample", fmt="custom") -> dict:
    from io import StringIO

    out = StringIO()
    call_command("db_backup", name, "--format", fmt, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def restore_cli(backup_id, conn, *extra) -> dict:
    from io import StringIO

    out = StringIO()
    dsn = f"postgresql://{conn.user}@{conn.host}:{conn.port}/{conn.dbname}"
    call_command("db_restore", backup_id, "--dsn", dsn, *extra, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def stored_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", ["custom", "plain", "schema", "data"])
def test_backup_each_format_commits_artifact_and_manifest(target, backup_root, fmt):
    result = backup_cli(fmt=fmt)
    backup = Backup.objects.get(pk=result["id"])
    assert result["status"] == backup.status == BackupStatus.SUCCEEDED
    assert result["size_bytes"] == backup.size_stored > 0
    files = stored_files(backup_root)
    names = sorted(p.name for p in files)
    assert "manifest.json" in names and len(files) == 2
    artifact = backup.artifacts.get()
    assert (backup_root / artifact.key).stat().st_size == artifact.size_stored
    manifest = json.loads((backup_root / backup.manifest_key).read_text())
    assert manifest["backup_id"] == backup.pk and manifest["format"] == fmt
    assert manifest["artifacts"][0]["sha256_stored"] == result["sha256"]
    if fmt == "schema":
        assert manifest["row_counts"] == {}  # no rows in the artifact, none claimed
    else:
        assert manifest["row_counts"]["billing.payments"] == 6000
        assert manifest["row_counts"] == backup.row_counts and len(backup.row_counts) == 4
    assert backup.replicas.get().status == ReplicaStatus.PRESENT
    assert AuditEvent.objects.filter(action="backup.requested", object_id=backup.pk, via="cli").exists()
    assert Job.objects.get(pk=result["job_id"]).status == "succeeded"


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_restore_reproduces_every_row(target, source_db, fresh_db, fmt):
    backup_id = backup_cli(fmt=fmt)["id"]
    dest = fresh_db(create=False)
    result = restore_cli(backup_id, dest, "--create")
    assert result["status"] == "succeeded"
    assert result["tables_compared"] == 4
    for table in TABLES:
        assert table_contents(dest, table) == table_contents(source_db, table), table
    assert AuditEvent.objects.filter(action="backup.restore.requested", object_id=backup_id, via="cli").exists()


def test_schema_then_data_backups_restore_to_the_same_rows(target, source_db, fresh_db):
    schema_id = backup_cli(fmt="schema")["id"]
    data_id = backup_cli(fmt="data")["id"]
    dest = fresh_db()
    restore_cli(schema_id, dest)
    assert table_contents(dest, "public.leases") == []
    # The data-only dump goes into the schema just restored (not "empty", so restore the data by psql directly).
    from apps.backups.restores import artifact_stream
    from apps.databases.engines import logical

    backup = Backup.objects.get(pk=data_id)
    logical.restore(dest, artifact_stream(backup=backup, artifact=backup.artifacts.get()), fmt="data")
    for table in TABLES:
        assert table_contents(dest, table) == table_contents(source_db, table)


def test_single_table_restore(target, source_db, fresh_db):
    backup_id = backup_cli()["id"]
    dest = fresh_db(create=False)
    restore_cli(backup_id, dest, "--create")
    with psycopg.connect(**dest.kwargs(), autocommit=True) as c:
        c.execute("DROP TABLE billing.payments")
        c.execute("UPDATE tenants SET full_name = 'changed' WHERE id = 1")  # untouched by a single-table restore
    result = restore_cli(backup_id, dest, "--table", "billing.payments")
    assert result["tables_compared"] == 1 and result["rows_compared"] == 6000
    assert table_contents(dest, "billing.payments") == table_contents(source_db, "billing.payments")
    assert table_contents(dest, "public.tenants")[0][1] == "changed"


def test_restore_refuses_to_overwrite(target, fresh_db):
    backup_id = backup_cli()["id"]
    dest = fresh_db(create=False)
    restore_cli(backup_id, dest, "--create")
    with pytest.raises(CommandError, match="not empty"):
        restore_cli(backup_id, dest)
    with pytest.raises(CommandError, match="already exists"):
        restore_cli(backup_id, dest, "--create")
    with pytest.raises(CommandError, match="already exists"):
        restore_cli(backup_id, dest, "--table", "public.leases")
    missing = fresh_db(create=False)
    with pytest.raises(CommandError, match="does not exist"):
        restore_cli(backup_id, missing)


def test_single_table_restore_needs_custom_format(target, fresh_db):
    backup_id = backup_cli(fmt="plain")["id"]
    with pytest.raises(CommandError, match="custom format"):
        restore_cli(backup_id, fresh_db(), "--table", "public.leases")


def test_verify_all_with_nothing_to_verify_says_so(db):
    with pytest.raises(CommandError, match="no succeeded backups"):
        call_command("db_verify", "--all")


def test_unknown_target_and_backup_give_clear_errors(db):
    with pytest.raises(CommandError, match="No target named 'nope'"):
        backup_cli("nope")
    with pytest.raises(CommandError, match="No backup with id"):
        call_command("db_verify", "01ARZ3NDEKTSV4RRFFQ69G5FAV")


@pytest.fixture(scope="module")
def big_db(pg_cluster):
    """Large enough that pg_dump is still streaming when the test kills it."""
    create_database(pg_cluster, "bigsrc")
    with psycopg.connect(**pg_cluster.conn("bigsrc").kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
                  "FROM generate_series(1, 1500000) g")
    yield pg_cluster.conn("bigsrc")
    drop_database(pg_cluster, "bigsrc")


def test_source_dying_mid_backup_leaves_failed_row_and_no_artifact(big_db, backup_root):
    from apps.core.services import SYSTEM
    from apps.databases.models import DatabaseTarget
    from apps.databases.services import save_target

    save_target(target=DatabaseTarget(name="big", host=big_db.host, port=big_db.port, dbname=big_db.dbname,
                                      user=big_db.user, sslmode="disable"), actor=SYSTEM)
    killed = threading.Event()

    def kill_dump_when_copying():
        with psycopg.connect(**big_db.with_db("postgres").kwargs(), autocommit=True) as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = c.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'backupsite-backup-%%' "
                    "AND application_name NOT LIKE '%%-snapshot' AND query LIKE 'COPY %%'"
                ).fetchone()
                if row:
                    time.sleep(0.2)  # let some data flow first
                    c.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                    killed.set()
                    return
                time.sleep(0.005)

    killer = threading.Thread(target=kill_dump_when_copying)
    killer.start()
    with pytest.raises(CommandError, match="pg_dump exited"):
        backup_cli("big")
    killer.join()
    assert killed.is_set()
    backup = Backup.objects.get(database_target__name="big")
    assert backup.status == BackupStatus.FAILED
    assert "pg_dump" in backup.error
    job = Job.objects.get(pk=backup.job_id)
    assert job.status == "failed" and job.progress_done > 0  # it died mid-way, after data had flowed
    assert stored_files(backup_root) == []  # no artifact, no manifest, no partial file
    assert not Replica.objects.filter(backup=backup).exists()
    # The lock is released: the next backup of the target is not refused.
    assert DatabaseTarget.objects.get(name="big").backup_lock == ""


def test_flipped_byte_fails_checksum_verification(target, backup_root):
    backup_id = backup_cli()["id"]
    call_command("db_verify", backup_id, "--level", "checksum")
    backup = Backup.objects.get(pk=backup_id)
    path = backup_root / backup.artifacts.get().key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    call_command("db_verify", backup_id, "--level", "exists")  # same size: the shallow level cannot see it
    with pytest.raises(CommandError, match="SHA-256"):
        call_command("db_verify", backup_id, "--level", "checksum")
    with pytest.raises(CommandError, match="fails authentication"):
        call_command("db_verify", backup_id, "--level", "decrypt")
    assert backup.replicas.get().status == ReplicaStatus.CORRUPT
    assert backup.verifications.filter(result="failed", level="checksum").count() == 1
    assert backup.verifications.filter(result="failed", level="decrypt").count() == 1
    job = Job.objects.filter(type="verify.backups").latest("created_at")
    assert job.status == "failed" and job.result["failed"][0]["backup_id"] == backup_id  # details kept


def test_verify_all_and_missing_artifact(target, backup_root):
    first = backup_cli()["id"]
    backup_cli(fmt="plain")
    call_command("db_verify", "--all", "--level", "checksum")
    (backup_root / Backup.objects.get(pk=first).artifacts.get().key).unlink()
    with pytest.raises(CommandError, match="missing"):
        call_command("db_verify", "--all", "--level", "exists")


def test_corrupt_encrypted_artifact_restores_nothing(target, backup_root, fresh_db):
    backup_id = backup_cli()["id"]
    backup = Backup.objects.get(pk=backup_id)
    path = backup_root / backup.artifacts.get().key
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # in the last frame: pg_restore has already received most of the dump
    path.write_bytes(bytes(data))
    dest = fresh_db()
    # Caught by the SHA-256 check of the source before the restore starts (apps/backups/sources.py); frame
    # authentication would stop it too (tests/test_physical_backup.py restores with that check off).
    with pytest.raises(CommandError, match="fails its SHA-256 check|fails authentication"):
        restore_cli(backup_id, dest)
    with psycopg.connect(**dest.kwargs()) as c:
        tables = c.execute("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                           "'information_schema')").fetchone()[0]
    assert tables == 0  # one transaction: all or nothing


@pytest.mark.parametrize("encrypted", [True, False])
def test_encryption_hides_source_data(target, backup_root, settings, encrypted):
    settings.BACKUP_COMPRESSION = "none"  # so only encryption stands between the data and the disk
    if not encrypted:
        settings.BACKUP_ENCRYPTION_KEYS = ""
    backup_cli()
    blob = b"".join(p.read_bytes() for p in stored_files(backup_root) if p.name != "manifest.json")
    assert (sample_data.SECRET_MARKER.encode() in blob) is (not encrypted)


def test_key_rotation_keeps_old_backups_readable(target, fresh_db, settings):
    old_keys = settings.BACKUP_ENCRYPTION_KEYS
    old_id = old_keys.split(":")[0]
    first = backup_cli()["id"]
    from apps.pipeline.keys import generate_spec

    new = generate_spec("rotated")
    settings.BACKUP_ENCRYPTION_KEYS = f"{new},{old_keys}"
    second = backup_cli()["id"]
    assert Backup.objects.get(pk=first).encryption_key_id == old_id
    assert Backup.objects.get(pk=second).encryption_key_id == "rotated"
    restore_cli(first, fresh_db(create=False), "--create")  # old key still configured: readable
    settings.BACKUP_ENCRYPTION_KEYS = new
    with pytest.raises(CommandError, match=f"Master key '{old_id}' is not configured"):
        restore_cli(first, fresh_db(create=False), "--create")


def test_second_backup_of_same_target_is_refused_while_one_runs(target, settings):
    from apps.backups import locks

    locks.acquire(target=target, backup_id="01HOLDER000000000000000000")
    with pytest.raises(CommandError, match="already running"):
        backup_cli()
    # A holder that stopped reporting goes stale and is taken over.
    settings.BACKUP_LOCK_STALE_SECONDS = 0
    time.sleep(0.01)
    assert backup_cli()["status"] == "succeeded"


def test_target_add_keeps_the_password_out_of_argv(db, tmp_path):
    from apps.databases.models import DatabaseTarget

    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n")
    call_command("target_add", "filepw", "--dsn", "postgresql://app@db.example:5433/prod", "--password-file",
                 str(secret))
    target = DatabaseTarget.objects.get(name="filepw")
    assert (target.host, target.port, target.dbname, target.user) == ("db.example", 5433, "prod", "app")
    assert target.get_password() == "s3cret-from-file"
    # Updating without any password keeps the stored one; the sealed value never holds the plaintext.
    call_command("target_add", "filepw", "--dsn", "postgresql://app@db.example:5433/prod2")
    target.refresh_from_db()
    assert target.dbname == "prod2" and target.get_password() == "s3cret-from-file"
    assert "s3cret" not in target.password_sealed
    # ...unless it points at another server (host, port, user, sslmode): then the password is dropped.
    call_command("target_add", "filepw", "--dsn", "postgresql://app@db.example:5434/prod2")
    target.refresh_from_db()
    assert target.port == 5434 and not target.has_password
    with pytest.raises(CommandError, match="DSN must look like"):
        call_command("target_add", "bad", "--dsn", "mysql://x@y/z")
    with pytest.raises(CommandError, match="Cannot read the password file"):
        call_command("target_add", "bad", "--dsn", "postgresql://app@h/d", "--password-file", "/nonexistent")


def test_backup_whose_worker_died_is_marked_failed(target, settings):
    """A worker killed mid-backup leaves a running row and a lease nobody renews; the next request settles it."""
    from django.utils import timezone

    from apps.backups import locks
    from apps.backups.jobs import DatabaseBackupJob
    from apps.core.services import SYSTEM
    from apps.databases.models import DatabaseTarget

    dead = Backup.objects.get(pk=DatabaseBackupJob.prepare(target=target, actor=SYSTEM).args["backup_id"])
    Backup.objects.filter(pk=dead.pk).update(status=BackupStatus.RUNNING, started_at=timezone.now())
    locks.acquire(target=target, backup_id=dead.pk)
    with pytest.raises(CommandError, match="already running"):
        backup_cli()  # the lease is still fresh: it might be alive
    DatabaseTarget.objects.filter(pk=target.pk).update(
        backup_lock_heartbeat=timezone.now() - timezone.timedelta(seconds=settings.BACKUP_LOCK_STALE_SECONDS + 1)
    )
    assert backup_cli()["status"] == "succeeded"
    dead.refresh_from_db()
    assert dead.status == BackupStatus.FAILED and "Abandoned" in dead.error
    assert Job.objects.get(pk=dead.job_id).status == "failed"


def test_row_counts_fall_back_to_sql_in_the_same_snapshot(target, monkeypatch):
    """When the dump stream cannot be read for counts, the server counts in pg_dump's own snapshot."""
    from apps.databases.engines import dump_rows

    class Unreadable:
        def feed(self, chunk):
            pass

        def result(self):
            return None

    monkeypatch.setattr(dump_rows, "counter_for", lambda fmt: Unreadable())
    backup = Backup.objects.get(pk=backup_cli()["id"])
    assert backup.row_counts == {"billing.payments": 6000, "public.leases": 2000, "public.properties": 2000,
                                 "public.tenants": 2000}


def test_unreachable_source_fails_cleanly(db, backup_root):
    from apps.core.services import SYSTEM
    from apps.databases.clusters import free_port
    from apps.databases.models import DatabaseTarget
    from apps.databases.services import save_target

    save_target(target=DatabaseTarget(name="gone", host="127.0.0.1", port=free_port(), dbname="x", user="u",
                                      sslmode="disable"), actor=SYSTEM, password="pw-never-shown")
    with pytest.raises(CommandError, match="Cannot connect to postgresql://u@127.0.0.1") as failure:
        backup_cli("gone")
    assert "pw-never-shown" not in str(failure.value)
    backup = Backup.objects.get(database_target__name="gone")
    assert backup.status == BackupStatus.FAILED and "pw-never-shown" not in backup.error
    assert stored_files(backup_root) == []


@pytest.mark.parametrize("fmt", ["custom", "plain", "schema"])
def test_decrypt_level_reads_the_whole_dump(target, fmt):
    backup_id = backup_cli(fmt=fmt)["id"]
    call_command("db_verify", backup_id, "--level", "decrypt")
    run = Backup.objects.get(pk=backup_id).verifications.get(level="decrypt")
    assert run.result == "passed" and run.bytes_read == Backup.objects.get(pk=backup_id).size_stored


def test_decrypt_level_catches_what_checksum_cannot(target, settings):
    """A lost master key leaves every checksum intact; only decrypting shows the backup is unreadable."""
    from apps.pipeline.keys import generate_spec

    backup_id = backup_cli()["id"]
    settings.BACKUP_ENCRYPTION_KEYS = generate_spec("other")
    call_command("db_verify", backup_id, "--level", "checksum")
    with pytest.raises(CommandError, match="is not configured"):
        call_command("db_verify", backup_id, "--level", "decrypt")


def test_decrypt_level_checks_row_counts_against_the_catalog(target):
    backup_id = backup_cli()["id"]
    Backup.objects.filter(pk=backup_id).update(row_counts={**Backup.objects.get(pk=backup_id).row_counts,
                                                           "public.leases": 1999})
    with pytest.raises(CommandError, match="row counts in the dump differ from the catalog for public.leases"):
        call_command("db_verify", backup_id, "--level", "decrypt")


def test_consumer_giving_up_stops_pg_dump_and_leaves_no_thread(big_db):
    """A storage error or cancel closes the dump mid-stream: pg_dump is killed and no thread is left
    behind (the content-hash thread ends; the row counter runs in the reading thread)."""
    from apps.databases.engines import logical

    before = {t.name for t in threading.enumerate()}
    dump = logical.LogicalDump(big_db, fmt="custom", app_name="backupsite-giveup")
    chunks = dump.chunks()
    for _ in range(3):
        assert next(chunks)
    time.sleep(0.3)  # let pg_dump fill the pipe behind us
    chunks.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and {t.name for t in threading.enumerate()} - before:
        time.sleep(0.05)
    assert not {t.name for t in threading.enumerate()} - before
    with psycopg.connect(**big_db.with_db("postgres").kwargs(), autocommit=True) as c:
        deadline = time.monotonic() + 10
        while c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backupsite-giveup%%'"
                        ).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backupsite-giveup%%'"
                         ).fetchone()[0] == 0
