"""Physical backups on a real cluster: pg_basebackup fulls, file-level incrementals, restore into a data directory.

One throwaway cluster for the module (autovacuum off: background rewrites of the big table would make the
size bound of an incremental a matter of luck). Restored directories are started as postgres on a free
port and their tables compared with the source's at backup time.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command

from apps.backups import file_index, physical_restore
from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.errors import UserError
from apps.core.services import SYSTEM
from apps.databases import sample_data
from apps.databases.clusters import LocalCluster, free_port
from apps.databases.engines import tarstream
from apps.databases.services import save_target
from apps.storage import backends
from tests.helpers import (
    V1,
    flipped_byte,
    physical_target,
    table_contents,
    throwaway_cluster,
)

TABLES = ["public.properties", "public.tenants", "public.leases", "billing.payments", "public.big"]


@pytest.fixture(scope="module")
def phys():
    with throwaway_cluster("pgphys-", start=False) as cluster:
        cluster.append_conf({"autovacuum": "off"})
        cluster.start()
        conn = cluster.conn()
        with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
            c.execute("CREATE DATABASE shop")
        shop = cluster.conn("shop")
        sample_data.load(shop, rows=2000)
        with psycopg.connect(**shop.kwargs(), autocommit=True) as c:
            # About 40 MB that does not compress to nothing: the bulk an incremental must not copy again.
            c.execute("CREATE TABLE big (id int PRIMARY KEY, payload text)")
            c.execute("INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g")
            c.execute("VACUUM (FREEZE, ANALYZE)")  # hint bits and visibility map settled now, not in a later backup
            c.execute("CHECKPOINT")
            c.execute("CREATE ROLE noreplica LOGIN")
        time.sleep(2)  # the bulk's mtimes are now well before any backup's start
        yield cluster


@pytest.fixture
def phys_target(db, phys):
    return physical_target("phys", phys)


@pytest.fixture
def scratch():
    """A directory the postgres user can reach (pytest's tmp_path is 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="pgrestore-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def snapshot(cluster) -> dict:
    return {t: table_contents(cluster.conn("shop"), t) for t in TABLES}


def change(cluster, tag: str, rows: int = 30) -> None:
    """A small change: new tenants, a few rent updates, one deleted payment."""
    with psycopg.connect(**cluster.conn("shop").kwargs(), autocommit=True) as c:
        c.execute("INSERT INTO tenants (full_name, email) SELECT %s || g, %s || g || '@example.org' "
                  "FROM generate_series(1, %s) g", [f"tenant {tag} ", f"{tag}-", rows])
        c.execute("UPDATE properties SET monthly_rent = monthly_rent + 1 WHERE id % 97 = 0")
        c.execute("DELETE FROM billing.payments WHERE id = (SELECT min(id) FROM billing.payments)")


def backup(target, **params) -> Backup:
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM, **params)
    b = Backup.objects.get(pk=job.args["backup_id"])
    assert b.status == BackupStatus.SUCCEEDED, b.error
    return b


@contextmanager
def started(pgdata: Path):
    """Start a restored data directory as postgres on a free port (its own socket directory)."""
    cluster = LocalCluster(base=pgdata.parent, port=free_port())
    assert cluster.data == pgdata
    shutil.chown(pgdata.parent, "postgres", "postgres")  # its log and socket go there
    cluster.append_conf({"port": str(cluster.port), "unix_socket_directories": f"'{pgdata.parent}'"})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")


def restore_cmd(backup_id: str, pgdata: Path) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("db_restore", backup_id, "--pgdata", str(pgdata), stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_physical_full_records_lsns_and_restores_to_a_cluster_equal_to_the_source(phys, phys_target, scratch):
    from io import StringIO

    out = StringIO()
    call_command("db_backup", "phys", "--kind", "full", "--method", "physical", stdout=out)
    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    full = Backup.objects.get(pk=printed["id"])
    expected = snapshot(phys)
    change(phys, "after-full")  # not in the backup: the restore must show the backup's moment

    assert full.status == BackupStatus.SUCCEEDED and full.format == "basebackup" and full.kind == "full"
    assert printed["lsn_start"] == full.lsn_start and printed["lsn_stop"] == full.lsn_stop
    with psycopg.connect(**phys.conn().kwargs()) as c:
        sysid = str(c.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        version = c.execute("SHOW server_version").fetchone()[0]
    assert full.system_identifier == sysid and full.server_version == version and full.timeline == 1
    from apps.databases.engines.physical import parse_lsn

    assert 0 < parse_lsn(full.lsn_start) < parse_lsn(full.lsn_stop)
    # Read from the data directory (it is readable here): the tar of the files in two halves written by two
    # processes, then the label, WAL and the tar's end (BACKUP_PROCESSES is 2 on this 2-CPU machine).
    assert sorted(a.name for a in full.artifacts.all()) == ["base.tar", "base.tar.1", "base.tar.2", "files.json"]
    parts = {a.name: a for a in full.artifacts.all()}
    halves = parts["base.tar"].size_raw, parts["base.tar.1"].size_raw  # cut by estimated work, about halves
    assert min(halves) > 0.25 * sum(halves), halves
    assert parts["base.tar.2"].size_raw < 64 << 20  # label and WAL only
    manifest = json.loads(backends.for_location(full.storage_location).get_bytes(full.manifest_key))
    assert manifest["wal"] and manifest["wal_segment_size"] == 16 << 20 and manifest["stored_files"] > 500
    assert manifest["lsn_start"] == full.lsn_start and manifest["lsn_stop"] == full.lsn_stop
    assert manifest["system_identifier"] == sysid and manifest["timeline"] == 1
    index = file_index.load(full)
    files = {f["path"]: f for f in index["files"]}
    assert files["PG_VERSION"]["size"] == (phys.data / "PG_VERSION").stat().st_size
    assert files["global/pg_control"]["type"] == "file" and files["base"]["type"] == "dir"
    assert "backup_label" not in files and not any(p.startswith("pg_wal/0") for p in files)
    assert manifest["file_index"]["files"] == len(index["files"])
    assert not any(f.get("sha256") for f in files.values())  # as a pg_basebackup full's index

    pgdata = scratch / "data"
    result = restore_cmd(full.pk, pgdata)
    assert result["status"] == "succeeded" and result["chain"] == [full.pk]
    st = pgdata.stat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == __import__("pwd").getpwnam("postgres").pw_uid
    assert (pgdata / "backup_label").exists() and not (scratch / "data.partial").exists()
    with started(pgdata) as restored:
        assert snapshot(restored) == expected
        assert snapshot(restored) != snapshot(phys)  # the change made after the backup is not there


def test_a_role_without_replication_fails_with_a_clear_message(phys, phys_target):
    phys_target.user = "noreplica"
    save_target(target=phys_target, actor=SYSTEM)
    # Read from the data directory: pg_backup_start is what the role may not run.
    job = DatabaseBackupJob.run_now(target=phys_target, method="physical", actor=SYSTEM)
    b = Backup.objects.get(pk=job.args["backup_id"])
    assert b.status == BackupStatus.FAILED and not b.artifacts.exists()
    assert "pg_backup_start" in b.error and "GRANT EXECUTE" in b.error and "noreplica" in b.error, b.error
    phys_target.data_directory = ""  # over the network: pg_basebackup, which needs REPLICATION
    save_target(target=phys_target, actor=SYSTEM)
    job = DatabaseBackupJob.run_now(target=phys_target, method="physical", actor=SYSTEM)
    b = Backup.objects.get(pk=job.args["backup_id"])
    assert b.status == BackupStatus.FAILED
    assert "REPLICATION" in b.error and "pg_hba.conf" in b.error and "noreplica" in b.error
    assert not b.artifacts.exists()


def test_default_method_and_the_api(api_as, phys, phys_target):
    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backup/incremental", {"target": "phys"}, format="json")
    assert r.status_code == 400 and "no succeeded physical backup" in r.json()["detail"]
    r = operator.post(f"{V1}/database/backup/full", {"target": "phys"}, format="json")  # default_method physical
    assert r.status_code == 202 and r.json()["status"] == "succeeded"
    b = Backup.objects.get(pk=r.json()["backup_id"])
    assert b.format == "basebackup" and b.lsn_stop
    r = operator.post(f"{V1}/database/backup/full", {"target": "phys", "method": "logical"}, format="json")
    assert r.status_code == 202 and Backup.objects.get(pk=r.json()["backup_id"]).format == "custom"
    r = operator.post(f"{V1}/database/backup/full", {"target": "phys", "format": "plain"}, format="json")
    assert r.status_code == 202 and Backup.objects.get(pk=r.json()["backup_id"]).format == "plain"  # implies logical
    r = operator.post(f"{V1}/database/backup/full", {"target": "phys", "method": "physical", "format": "plain"},
                      format="json")
    assert r.status_code == 400 and "physical" in r.json()["detail"]
    r = operator.post(f"{V1}/database/backup/full", {"target": "phys", "method": "tape"}, format="json")
    assert r.status_code == 400 and "method" in r.json()
    # The target's fields are in its API.
    r = api_as("viewer").get(f"{V1}/database/targets/{phys_target.pk}/")
    assert r.status_code == 200
    assert r.json()["default_method"] == "physical" and r.json()["data_directory"] == str(phys.data)


def test_an_incremental_of_a_network_only_target_is_refused_with_the_alternatives(api_as, phys, phys_target):
    phys_target.data_directory = ""
    save_target(target=phys_target, actor=SYSTEM)
    r = api_as("operator").post(f"{V1}/database/backup/incremental", {"target": "phys"}, format="json")
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "no data directory" in detail and "logical full" in detail and "WAL archiving" in detail
    assert not Backup.objects.exists()
    with pytest.raises(CommandError, match="no data directory"):
        call_command("db_backup", "phys", "--kind", "incremental")


def test_full_and_two_incrementals_restore_to_the_source_at_the_last_backup(api_as, phys, phys_target, scratch):
    full = backup(phys_target, method="physical")
    change(phys, "one")
    r = api_as("operator").post(f"{V1}/database/backup/incremental", {"target": "phys"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "succeeded", r.json()
    inc1 = Backup.objects.get(pk=r.json()["backup_id"])
    change(phys, "two")
    inc2 = backup(phys_target, kind="incremental")
    expected = snapshot(phys)
    change(phys, "three")  # after the last backup: must not be restored

    assert inc1.parent_id == full.pk and inc2.parent_id == inc1.pk and inc2.kind == "incremental"
    assert inc2.system_identifier == full.system_identifier and inc2.lsn_start and inc2.lsn_stop
    assert sorted(a.name for a in inc2.artifacts.all()) == ["files.json", "files.tar", "pages.delta"]
    # About 1 % of the data changed: far less stored than the full (the big table is referenced, not copied).
    for inc in (inc1, inc2):
        assert inc.size_stored < 0.25 * full.size_stored, (inc.size_stored, full.size_stored)
    index = {f["path"]: f for f in file_index.load(inc2)["files"]}
    big_files = [f for p, f in index.items() if f["type"] == "file" and f["size"] >= 8 << 20]
    assert big_files and all(f["backup"] == full.pk for f in big_files)
    assert any(f["backup"] == inc2.pk and f.get("sha256") for f in index.values())

    pgdata = scratch / "data"
    result = physical_restore.restore_data_directory(inc2, pgdata)
    assert result["chain"] == [full.pk, inc1.pk, inc2.pk]
    with started(pgdata) as restored:
        assert snapshot(restored) == expected

    # A missing link is found before anything is written.
    other = scratch / "other"
    backend = backends.for_location(inc1.storage_location)
    tar1 = inc1.artifacts.get(name="files.tar")
    saved = scratch / "saved.tar"
    shutil.copy(backend._path(tar1.key), saved)
    backend.delete(tar1.key)
    with pytest.raises(physical_restore.ChainError, match=f"Broken backup chain: backup {inc1.pk}.*missing"):
        physical_restore.restore_data_directory(inc2, other)
    assert not other.exists() and not (scratch / "other.partial").exists()

    # A corrupt one (same size, one byte flipped) is not read twice when it has one encrypted copy
    # (physical_restore._check_link): the files it holds for this restore fail their frames' authentication as
    # they are extracted; with nothing of it needed, it is not read at all (as pgBackRest reads only what it writes).
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    backend.put_bytes(tar1.key, bytes(data))
    needed = any(f["backup"] == inc1.pk for f in file_index.load(inc2)["files"] if f["type"] == "file")
    assert not needed  # the second incremental stored again every file the first had
    restore_cmd(inc2.pk, other)
    assert (other / "PG_VERSION").exists()
    shutil.rmtree(other)
    # Without the up-front check, frame authentication still stops a corrupt link that is read (the full's
    # tar always is: it holds the big table), and the partial directory goes.
    shutil.copy(saved, backend._path(tar1.key))
    base = full.artifacts.get(name="base.tar")
    data = bytearray(backend.get_bytes(base.key))
    data[len(data) // 2] ^= 0x01
    backend.put_bytes(base.key, bytes(data))
    with pytest.raises(Exception, match="authentication|corrupt"):
        physical_restore.restore_data_directory(inc2, other, verify_first=False)
    assert not other.exists() and not (scratch / "other.partial").exists()



def test_a_link_corrupt_in_either_restore_process_fails_the_restore_and_leaves_nothing(phys, phys_target, scratch):
    """A chain of two tars is extracted by two forked processes; a frame that fails authentication in either
    stops the restore with the link named, and neither the directory nor its .partial is left."""
    full = backup(phys_target, method="physical")
    change(phys, "forked")
    inc = backup(phys_target, kind="incremental")
    backend = backends.for_location(inc.storage_location)
    pgdata = scratch / "data"
    result = physical_restore.restore_data_directory(inc, pgdata, verify_first=False)  # intact: restores
    assert result["chain"] == [full.pk, inc.pk] and (pgdata / "PG_VERSION").exists()
    for link, name in ((inc, "files.tar"), (full, "base.tar")):
        artifact = link.artifacts.get(name=name)
        saved = backend.get_bytes(artifact.key)
        data = bytearray(saved)
        data[len(data) // 2] ^= 0x01
        backend.put_bytes(artifact.key, bytes(data))
        other = scratch / f"other-{name}"
        try:
            with pytest.raises(UserError, match=f"Restoring backup {link.pk} .*fails authentication"):
                physical_restore.restore_data_directory(inc, other, verify_first=False)
        finally:
            backend.put_bytes(artifact.key, saved)
        assert not other.exists() and not (scratch / f"other-{name}.partial").exists()


def test_one_encrypted_copy_is_not_read_twice_and_a_flipped_byte_still_leaves_nothing(phys, phys_target, scratch,
                                                                                      monkeypatch):
    """With one copy of each (encrypted) link, the up-front SHA-256 read of every stored byte is skipped: the
    decoder authenticates each frame before its bytes are written. A flipped byte still fails the restore, with
    the link named and nothing left; with a replica to fail over to, the up-front check is made (test_replication)."""
    full = backup(phys_target, method="physical")
    assert full.encryption_key_id and all(a.key_id for a in full.artifacts.all())
    hashed = []
    cls = type(backends.for_location(full.storage_location))
    original = cls.sha256
    monkeypatch.setattr(cls, "sha256", lambda self, key, *a, **k: hashed.append(key) or original(self, key, *a, **k))
    result = physical_restore.restore_data_directory(full, scratch / "data")
    assert result["chain"] == [full.pk] and (scratch / "data" / "PG_VERSION").exists() and hashed == []

    backend = backends.for_location(full.storage_location)
    with flipped_byte(backend, full.artifacts.get(name="base.tar").key), \
            pytest.raises(UserError, match=f"backup {full.pk} .*fails authentication"):
        physical_restore.restore_data_directory(full, scratch / "other")
    assert not (scratch / "other").exists() and not (scratch / "other.partial").exists()


def test_restore_refuses_bad_destinations_and_logical_backups(phys, phys_target, scratch, target):
    logical = backup(target)
    with pytest.raises(CommandError, match="logical"):
        restore_cmd(logical.pk, scratch / "x")
    full = backup(phys_target, method="physical")
    busy = scratch / "busy"
    busy.mkdir()
    (busy / "PG_VERSION").write_text("15\n")
    with pytest.raises(CommandError, match="not empty"):
        restore_cmd(full.pk, busy)
    with pytest.raises(CommandError, match="parent directory"):
        restore_cmd(full.pk, scratch / "no" / "such" / "dir")
    # An empty directory is fine; a stale .partial of a killed restore is cleared first.
    empty = scratch / "empty"
    empty.mkdir()
    (scratch / "empty.partial").mkdir()
    (scratch / "empty.partial" / "junk").write_text("left by a killed restore")
    result = restore_cmd(full.pk, empty)
    assert result["status"] == "succeeded" and (empty / "PG_VERSION").exists()
    assert not (empty / "junk").exists() and not (scratch / "empty.partial").exists()


def test_catalog_sync_rebuilds_a_chain_that_then_restores(phys, phys_target, scratch):
    """A lost metadata database: the full → incremental chain comes back from the location's manifests."""
    from tests.catalog_helpers import catalog_snapshot, wipe_catalog

    full = backup(phys_target, method="physical")
    change(phys, "sync")
    inc = backup(phys_target, kind="incremental")
    location = inc.storage_location
    before = catalog_snapshot()
    wipe_catalog()
    from io import StringIO

    out = StringIO()
    call_command("catalog_sync", location.name, stdout=out)
    report = json.loads(out.getvalue())
    assert sorted(report["backups_added"]) == sorted([full.pk, inc.pk])
    assert catalog_snapshot() == before
    rebuilt = Backup.objects.get(pk=inc.pk)
    assert rebuilt.parent_id == full.pk and rebuilt.system_identifier == full.system_identifier
    result = restore_cmd(inc.pk, scratch / "data")
    assert result["chain"] == [full.pk, inc.pk] and result["files"] > 0


def test_a_target_without_a_readable_data_directory_gets_pg_basebackup_and_an_incremental_chains_on_it(
        phys, phys_target, scratch):
    """A database reachable only over the network (no data_directory, or one not readable here) gets a
    pg_basebackup full; the same cluster later named with its data directory takes an incremental on it."""
    phys_target.data_directory = str(scratch / "not-here")  # set, but no global/pg_control to read here
    save_target(target=phys_target, actor=SYSTEM)
    full = backup(phys_target, method="physical")
    assert sorted(a.name for a in full.artifacts.all()) == ["base.tar", "files.json"]
    index = file_index.load(full)
    assert "wal" not in index
    phys_target.data_directory = str(phys.data)
    save_target(target=phys_target, actor=SYSTEM)
    change(phys, "after-basebackup")
    inc = backup(phys_target, kind="incremental")
    expected = snapshot(phys)
    assert inc.parent_id == full.pk
    result = physical_restore.restore_data_directory(inc, scratch / "data")
    assert result["chain"] == [full.pk, inc.pk]
    with started(scratch / "data") as restored:
        assert snapshot(restored) == expected


def backup_with_a_part_in_the_way(target, name: str) -> tuple[Backup, Path]:
    """A physical full of `target` run while a directory stands where its artifact `name` goes (that part
    cannot be committed); the backup after it ran, and the obstacle."""
    from apps.backups import layout
    from apps.jobs.runner import execute
    from apps.pipeline import compression
    from apps.pipeline.keys import configured_keyring

    job = DatabaseBackupJob.request(actor=SYSTEM, target=target, method="physical")
    b = Backup.objects.get(pk=job.args["backup_id"])
    stored = layout.stored_name(name, compression.SUFFIX[b.compression], configured_keyring() is not None)
    obstacle = backends.for_location(b.storage_location)._path(layout.artifact_key(target.name, b.pk, stored))
    obstacle.mkdir(parents=True)
    (obstacle / "in-the-way").write_text("x")
    execute(job)
    b.refresh_from_db()
    return b, obstacle


def test_a_failing_share_fails_the_local_full_and_leaves_nothing_stored(phys, phys_target):
    """One of the two processes cannot commit its part (a directory stands where its object goes): the
    backup fails naming it, the other part committed meanwhile is removed, no manifest is written, the
    backup's session (and with it the backup mode and its temporary slot) is gone, and the next one works."""
    b, obstacle = backup_with_a_part_in_the_way(phys_target, "base.tar.1")
    assert b.status == BackupStatus.FAILED and "base.tar.1" in b.error, b.error
    assert not b.artifacts.exists()
    prefix = obstacle.parent
    left = sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*"))
    assert left == [obstacle.name, f"{obstacle.name}/in-the-way"], left  # base.tar and any manifest removed
    with psycopg.connect(**phys.conn().kwargs()) as c:
        assert not c.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s",
                             [f"backupsite-backup-{b.pk}"]).fetchall()
        assert not c.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'backupsite%'").fetchall()
    shutil.rmtree(obstacle)
    assert backup(phys_target, method="physical").status == BackupStatus.SUCCEEDED


def test_a_lease_lost_while_the_writer_processes_run_leaves_no_partial_upload(phys, phys_target, monkeypatch):
    """Another holder takes the target's lease while the two processes write: the parent finds it at a progress
    report and SIGKILLs them mid-upload. Their unfinished `.partial-<job>-` files go with the failed backup."""
    from apps.backups import locks, steps
    from apps.jobs.runner import execute

    real = steps.BackupWriter.put_in_processes
    taken = []

    def taken_over_meanwhile(self, group, *, check=None, **kw):
        lease = check.__self__

        def check_after_a_takeover():
            if not taken:  # the first progress report: a child has written 8 MiB and holds its partial file
                taken.append(locks._rows(lease.target).update(backup_lock="01OTHERHOLDER0000000000000"))
                lease.beat()  # the real renewal finds the lease gone
            lease.check()

        return real(self, group, check=check_after_a_takeover, **kw)

    monkeypatch.setattr(steps.BackupWriter, "put_in_processes", taken_over_meanwhile)
    job = DatabaseBackupJob.request(actor=SYSTEM, target=phys_target, method="physical")
    b = Backup.objects.get(pk=job.args["backup_id"])
    execute(job)
    b.refresh_from_db()
    assert taken == [1]
    assert b.status == BackupStatus.FAILED and "lease" in b.error, b.error
    assert not b.artifacts.exists()
    root = backends.for_location(b.storage_location).root
    assert not [p for p in root.rglob("*") if b.pk in p.as_posix() or ".partial-" in p.name]
    locks.release(target=phys_target, backup_id="01OTHERHOLDER0000000000000")
    monkeypatch.undo()
    assert backup(phys_target, method="physical").status == BackupStatus.SUCCEEDED


def test_a_local_full_in_one_process_is_one_base_tar_and_restores(phys, phys_target, scratch, settings):
    """BACKUP_PROCESSES=1 (or a cloud location): the full read from the data directory is one stream."""
    settings.BACKUP_PROCESSES = 1
    full = backup(phys_target, method="physical")
    expected = snapshot(phys)
    change(phys, "after-single")
    assert sorted(a.name for a in full.artifacts.all()) == ["base.tar", "files.json"]
    assert file_index.load(full)["wal"]  # read from the data directory, not pg_basebackup
    result = physical_restore.restore_data_directory(full, scratch / "data")
    assert result["chain"] == [full.pk]
    with started(scratch / "data") as restored:
        assert snapshot(restored) == expected


def test_a_large_local_full_is_written_in_decreasing_parts_taken_by_two_processes_and_restores(
        phys, phys_target, scratch, monkeypatch):
    """A full of PIECES_MIN_BYTES or more (lowered here) is cut into 5 parts per process, of decreasing
    estimated work, that the two processes take one after the other (so they end together); the parts,
    label and WAL part included, restore to the source's contents. A part that cannot be committed fails the
    backup naming it, with nothing left stored, whichever process took it."""
    from apps.backups import producers

    monkeypatch.setattr(producers, "PIECES_MIN_BYTES", 0)
    full = backup(phys_target, method="physical")
    expected = snapshot(phys)
    change(phys, "after-pieces")
    names = [f"base.tar.{i}" if i else "base.tar" for i in range(11)]
    assert sorted(a.name for a in full.artifacts.all()) == sorted(names + ["files.json"])
    sizes = {a.name: a.size_raw for a in full.artifacts.all()}
    assert min(sizes[n] for n in names[:2]) > 2 * max(sizes[n] for n in names[2:10]) > 0  # largest first
    from apps.pipeline.artifact import Decoder
    from apps.pipeline.keys import configured_keyring

    backend = backends.for_location(full.storage_location)
    for a in full.artifacts.filter(name__in=["base.tar", "base.tar.1", "base.tar.9"]):
        decoder = Decoder.for_record(a, keyring=configured_keyring())
        assert sum(len(c) for c in decoder.decode(backend.get_stream(a.key))) == a.size_raw  # raw SHA-256 checked
    result = physical_restore.restore_data_directory(full, scratch / "data")
    assert result["chain"] == [full.pk]
    with started(scratch / "data") as restored:
        assert snapshot(restored) == expected

    b, obstacle = backup_with_a_part_in_the_way(phys_target, "base.tar.7")
    assert b.status == BackupStatus.FAILED and "base.tar.7" in b.error, b.error
    assert not b.artifacts.exists()
    left = sorted(p.relative_to(obstacle.parent).as_posix() for p in obstacle.parent.rglob("*"))
    assert left == [obstacle.name, f"{obstacle.name}/in-the-way"], left
    shutil.rmtree(obstacle)


def _static_files(data: Path, before: float) -> dict[str, int]:
    """Files of a data directory not written since `before` (so the same in a backup taken after it)."""
    out = {}
    for p in data.rglob("*"):
        rel = str(p.relative_to(data))
        if p.is_file() and not rel.startswith(("pg_wal", "pg_stat", "pg_logical", "pg_xact", "global/pg_control")) \
                and p.stat().st_mtime < before:
            out[rel] = p.stat().st_size
    return out


def test_a_full_in_parts_is_extracted_part_by_part_in_parallel_byte_identical(phys, phys_target, scratch,
                                                                               monkeypatch):
    """The file index records where each part starts; the restore extracts the parts in forked processes side
    by side (a file a cut falls inside is written by two of them, at their offsets) to the same bytes."""
    with psycopg.connect(**phys.conn("shop").kwargs(), autocommit=True) as c:
        c.execute("CHECKPOINT")
    time.sleep(1.1)
    before = time.time() - 1
    full = backup(phys_target, method="physical")
    expected = snapshot(phys)
    static = _static_files(phys.data, before)
    records = file_index.load(full)["tar_parts"]
    assert [r["name"] for r in records] == ["base.tar", "base.tar.1", "base.tar.2"]
    cut = records[1]
    assert cut["left"] > 0 and cut["file_offset"] > 0, cut  # this cluster's cut falls inside a table's file
    assert (phys.data / cut["path"]).stat().st_size == cut["file_offset"] + cut["left"]
    assert records[2]["path"] == "" and records[2]["member"] == len(file_index.load(full)["files"])

    processes = []
    from apps.documents import forked

    real_run = forked.run
    monkeypatch.setattr(forked, "run", lambda parts, work, **kw: processes.append((len(parts), kw["workers"]))
                        or real_run(parts, work, **kw))
    pgdata = scratch / "data"
    result = physical_restore.restore_data_directory(full, pgdata)
    # base.tar, base.tar.1, base.tar.2 each a stream, taken by one more process than cores
    assert processes == [(3, physical_restore.PART_PROCESSES)]
    assert physical_restore.PART_PROCESSES == os.cpu_count() + 1
    assert result["files"] == len([f for f in file_index.load(full)["files"] if f["type"] == "file"]) + 1 + len(
        file_index.load(full)["wal"])  # + backup_label, the WAL; the split file counted once
    listed = {f["path"] for f in file_index.load(full)["files"] if f["type"] == "file"}
    static = {rel: size for rel, size in static.items() if rel in listed}  # not postmaster.opts and the like
    assert len(static) > 500 and cut["path"] in static
    for rel in static:
        assert (pgdata / rel).read_bytes() == (phys.data / rel).read_bytes(), rel
    with started(pgdata) as restored:
        assert snapshot(restored) == expected

    # One corrupt part fails the restore, the part named, nothing left.
    backend = backends.for_location(full.storage_location)
    other = scratch / "other"
    with flipped_byte(backend, full.artifacts.get(name="base.tar.1").key, at=1 / 3), \
            pytest.raises(UserError, match=f"Restoring backup {full.pk} \\(.*base.tar.1.*\\) failed: .*authentication"):
        physical_restore.restore_data_directory(full, other, verify_first=False)
    assert not other.exists() and not (scratch / "other.partial").exists()


def test_a_part_of_the_full_whose_files_a_newer_link_holds_is_not_read(phys, phys_target, scratch):
    """A full's part holding only files a newer link supersedes is left unread (and its label/WAL part, which the
    newest link's replaces): only the parts with something to write are extracted."""
    full = backup(phys_target, method="physical")
    change(phys, "superseded")
    inc = backup(phys_target, kind="incremental")
    full = physical_restore.backup_chain(inc)[0]  # with its source noted, as a restore reads it
    index = file_index.load(full)
    records, entries = index["tar_parts"], index["files"]
    assert [r["name"] for r in records] == ["base.tar", "base.tar.1", "base.tar.2"]
    files = {e["path"] for e in entries if e["type"] == "file"}
    in_part1 = {e["path"] for e in entries[records[1]["member"]:records[2]["member"]] if e["type"] == "file"}
    newer = in_part1 | {records[1]["path"]}  # what the newest link would hold: everything part 1 writes
    wanted = files - newer
    extractor = tarstream.Extractor(scratch)
    units = physical_restore._units(extractor, [(full, physical_restore.tar_parts(full), set(wanted))],
                                    holders={full.pk: wanted, inc.pk: newer}, newest=inc)
    assert [u["parts"][0].name for u in units] == ["base.tar"]
    assert set(units[0]["files"]) == wanted & {e["path"] for e in entries[:records[1]["member"]]}
    # Nothing superseded: every part with files is read.
    units = physical_restore._units(extractor, [(full, physical_restore.tar_parts(full), set(files))],
                                    holders={full.pk: files}, newest=inc)
    assert sorted(u["parts"][0].name for u in units) == ["base.tar", "base.tar.1"]


def test_a_full_without_part_records_restores_as_one_stream(phys, phys_target, scratch, monkeypatch):
    """A full in parts written before the records (no "tar_parts" in its index): its parts are one chained
    stream, extracted by one process, as before."""
    real_dumps = file_index.dumps
    monkeypatch.setattr(file_index, "dumps", lambda **kw: real_dumps(**{k: v for k, v in kw.items()
                                                                         if k != "tar_parts"}))
    full = backup(phys_target, method="physical")
    monkeypatch.undo()
    expected = snapshot(phys)
    assert "tar_parts" not in file_index.load(full) and full.artifacts.filter(name="base.tar.1").exists()
    from apps.documents import forked

    monkeypatch.setattr(forked, "run", lambda *a, **kw: pytest.fail("an old full is extracted in one process"))
    result = physical_restore.restore_data_directory(full, scratch / "data")
    assert result["chain"] == [full.pk]
    with started(scratch / "data") as restored:
        assert snapshot(restored) == expected


def test_page_deltas_over_a_full_in_parts_are_put_in_as_the_parts_are_extracted(phys, phys_target, scratch,
                                                                                monkeypatch):
    """An incremental's page deltas over a full in parts: each process makes the changed pages of what it
    extracts as it writes them (delta_patch), the file a cut falls inside included (its two halves by two
    processes, the page cut between them after); the cluster starts with the source's contents."""
    from apps.backups import delta_patch, delta_restore

    with psycopg.connect(**phys.conn("shop").kwargs(), autocommit=True) as c:
        c.execute("CHECKPOINT")
        big = c.execute("SELECT pg_relation_filepath('big')").fetchone()[0]
    full = backup(phys_target, method="physical")
    cut = file_index.load(full)["tar_parts"][1]
    assert cut["path"] == big and cut["left"] > 0  # the cut falls inside big's file
    with psycopg.connect(**phys.conn("shop").kwargs(), autocommit=True) as c:
        c.execute("UPDATE big SET payload = upper(payload) WHERE id % 40 = 0")  # every page, and new ones
    change(phys, "parts")
    inc = backup(phys_target, kind="incremental")
    expected = snapshot(phys)
    entry = next(f for f in file_index.load(inc)["files"] if f["path"] == big)
    assert entry.get("deltas") == [inc.pk]
    # Each index names the header of every artifact stored before it (the restore holds the tars to them
    # instead of hashing every stored byte): the headers as they are in storage.
    from apps.pipeline.artifact import _Reader, read_header

    for link, names in ((full, {"base.tar", "base.tar.1", "base.tar.2"}), (inc, {"pages.delta", "files.tar"})):
        headers = file_index.load(link)["headers"]
        assert set(headers) == names
        stored = backends.for_location(link.storage_location)
        for artifact in link.artifacts.filter(name__in=names):
            _header, header_bytes = read_header(_Reader(stored.get_stream(artifact.key)))
            assert hashlib.sha256(header_bytes).hexdigest() == headers[artifact.name], artifact.name

    from apps.backups import restores

    held_to, real_stream = {}, restores.artifact_stream  # the page deltas too are held to their recorded header

    def stream(**kw):
        held_to[kw["artifact"].name] = kw.get("expected_header")
        return real_stream(**kw)

    monkeypatch.setattr(restores, "artifact_stream", stream)
    reports, finish = [], delta_patch.finish
    monkeypatch.setattr(delta_patch, "finish", lambda root, spool, got: reports.append(got) or finish(root, spool, got))
    monkeypatch.setattr(delta_restore, "apply_chain", lambda *a, **k: pytest.fail("deltas applied after extraction"))
    pgdata = scratch / "data"
    physical_restore.restore_data_directory(inc, pgdata)
    halves = [r for report in reports[0] for r in report.get(big, ())]
    assert len(halves) == 2 and [h["ended"] for h in halves].count(True) == 1  # two processes, one wrote the end
    assert held_to["pages.delta"] == file_index.load(inc)["headers"]["pages.delta"]
    assert hashlib.sha256((pgdata / big).read_bytes()).hexdigest() == entry["sha256"]
    with started(pgdata) as restored:
        assert snapshot(restored) == expected
