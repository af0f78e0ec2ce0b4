"""The same backup → replicate → verify (checksum, decrypt) → restore through each of the four backends (local
disk, and the real SDKs against moto, Azurite and the GCS emulator); a flipped byte in the primary is caught
by checksum and the restore reads the replica instead."""
import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.storage import backends
from tests.emulators import KINDS
from tests.helpers import V1, table_contents

pytestmark = pytest.mark.django_db


def cli(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def restore(backup, dest) -> dict:
    dsn = f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}"
    return cli("db_restore", backup.pk, "--dsn", dsn, "--create")


def flip_byte(store, key: str) -> None:
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))


@pytest.mark.parametrize("kind", KINDS)
def test_backup_replicate_verify_restore(kind, cloud_location, target, source_db, fresh_db, api_as):
    primary = cloud_location(kind, **({} if kind == "local" else {"path": "repo"}))  # cloud: under a prefix
    replica = cloud_location("s3" if kind == "local" else "local")
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=primary)
    target.replica_locations.set([replica])
    result = cli("db_backup", "sample")
    backup = Backup.objects.get(pk=result["id"])
    assert backup.status == BackupStatus.SUCCEEDED and backup.storage_location == primary
    artifact = backup.artifacts.get()
    for location in (primary, replica):
        store = backends.for_location(location)
        assert sorted(o.key for o in store.list()) == sorted([backup.manifest_key, artifact.key])
        assert store.sha256(artifact.key)[0] == artifact.sha256_stored
    copy = Replica.objects.get(backup=backup, location=replica)
    assert copy.status == ReplicaStatus.PRESENT and copy.copied_at and copy.attempts == 1
    assert copy.bytes > artifact.size_stored  # artifact + manifest
    replication_job = Job.objects.get(type="backup.replicate")
    assert replication_job.status == "succeeded" and replication_job.result["location"] == replica.name
    detail = api_as("viewer").get(f"{V1}/database/backups/{backup.pk}").json()
    shown = {r["location"]: r for r in detail["replicas"]}
    assert shown[replica.name]["status"] == "present" and shown[replica.name]["lag_seconds"] >= 0
    assert shown[primary.name]["lag_seconds"] is None

    for level in ("checksum", "decrypt"):
        assert cli("db_verify", backup.pk, "--level", level)["status"] == "succeeded"
    first = restore(backup, fresh_db(create=False))
    assert first["status"] == "succeeded" and first["location"] == primary.name

    flip_byte(backends.for_location(primary), artifact.key)  # same size: only the checksum can tell
    dest = fresh_db(create=False)
    second = restore(backup, dest)
    assert second["status"] == "succeeded" and second["location"] == replica.name
    assert table_contents(dest, "billing.payments") == table_contents(source_db, "billing.payments")
    log = Job.objects.get(pk=second["job_id"]).log
    assert f"from replica {replica.name}" in log and "fails its SHA-256 check" in log
    assert Replica.objects.get(backup=backup, location=primary).status == ReplicaStatus.CORRUPT
