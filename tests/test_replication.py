"""Replication: a location down during the copy is retried with backoff and succeeds when it comes back; one
that stays down ends `failed` with the error while the backup stays usable; a corrupt source is never copied."""
import json

import pytest
from django.core.management import call_command

from apps.backups import replication
from apps.backups.jobs import ReplicateBackupJob
from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.core.services import SYSTEM
from apps.databases.clusters import free_port
from apps.storage import backends
from tests.emulators import create_container, moto_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_retries(settings):
    settings.REPLICATION_ATTEMPTS = 6
    settings.REPLICATION_BACKOFF_SECONDS = 0.05
    settings.REPLICATION_BACKOFF_MAX_SECONDS = 0.2
    settings.STORAGE_SDK_ATTEMPTS = 1


@pytest.fixture
def backup(target):
    from io import StringIO

    out = StringIO()
    call_command("db_backup", "sample", stdout=out)
    return Backup.objects.get(pk=json.loads(out.getvalue().strip().splitlines()[-1])["id"])


def s3_location(s3_emulator, port: int, name: str):
    from apps.storage.models import StorageLocation
    from apps.storage.services import save_location

    return save_location(location=StorageLocation(
        name=name, kind="s3", bucket="comeback", region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
        credentials_ref=s3_emulator["credentials_ref"]), actor=SYSTEM)


def test_a_location_down_during_replication_is_retried_until_it_comes_back(backup, s3_emulator, fast_retries):
    port = free_port()
    location = s3_location(s3_emulator, port, "offsite")
    servers, failures = [], []

    def on_retry(state):
        failures.append(str(state.outcome.exception()))
        if len(failures) == 2:  # down for two attempts, then back (with its bucket)
            servers.append(moto_server(port))
            servers[-1].__enter__()
            create_container("s3", {**s3_emulator, "endpoint_url": f"http://127.0.0.1:{port}"}, "comeback")

    try:
        replica = replication.replicate(backup=backup, location=location, on_retry=on_retry)
        assert replica.status == ReplicaStatus.PRESENT and replica.attempts == 3 and replica.last_error == ""
        assert all("Cannot" in f for f in failures) and len(failures) == 2
        store = backends.for_location(location)
        artifact = backup.artifacts.get()
        assert store.sha256(artifact.key)[0] == artifact.sha256_stored
        assert store.stat(backup.manifest_key) is not None
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def test_a_location_that_stays_down_ends_failed_and_the_backup_stays_usable(backup, s3_emulator, fast_retries,
                                                                              settings, fresh_db):
    settings.REPLICATION_ATTEMPTS = 3
    location = s3_location(s3_emulator, free_port(), "gone")  # nothing listens there
    job = ReplicateBackupJob.run_now(actor=SYSTEM, backup=backup, location=location)
    assert job.status == "failed" and "Cannot" in job.error
    replica = Replica.objects.get(backup=backup, location=location)
    assert replica.status == ReplicaStatus.FAILED and replica.attempts == 3 and "Cannot" in replica.last_error
    assert job.log.count("failed") >= 3
    backup.refresh_from_db()
    assert backup.status == BackupStatus.SUCCEEDED
    dest = fresh_db(create=False)
    from io import StringIO

    out = StringIO()
    call_command("db_restore", backup.pk, "--dsn", f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}",
                 "--create", stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["location"] == backup.storage_location.name


def test_a_corrupt_source_is_never_copied(backup, cloud_location, fast_retries, settings):
    settings.REPLICATION_ATTEMPTS = 2
    primary = backends.for_location(backup.storage_location)
    artifact = backup.artifacts.get()
    data = bytearray(primary.get_bytes(artifact.key))
    data[100] ^= 0xFF
    primary.put_bytes(artifact.key, bytes(data))
    location = cloud_location("azure")
    with pytest.raises(Exception, match="No healthy copy|corrupt source"):
        replication.replicate(backup=backup, location=location)
    replica = Replica.objects.get(backup=backup, location=location)
    assert replica.status == ReplicaStatus.FAILED
    assert list(backends.for_location(location).list()) == []  # nothing committed, manifest least of all
    assert Replica.objects.get(backup=backup, location=backup.storage_location).status == ReplicaStatus.CORRUPT


def test_replication_copies_from_a_replica_when_the_primary_lost_it(backup, cloud_location):
    first = cloud_location("gcs")
    replication.replicate(backup=backup, location=first)
    backends.for_location(backup.storage_location).delete(backup.artifacts.get().key)
    second = cloud_location("s3")
    replica = replication.replicate(backup=backup, location=second)
    assert replica.status == ReplicaStatus.PRESENT
    artifact = backup.artifacts.get()
    assert backends.for_location(second).sha256(artifact.key)[0] == artifact.sha256_stored


def test_replication_refuses_bad_requests(backup, target):
    with pytest.raises(Exception, match="not a replica of itself"):
        ReplicateBackupJob.run_now(actor=SYSTEM, backup=backup, location=backup.storage_location)
    Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.FAILED)
    backup.refresh_from_db()
    with pytest.raises(Exception, match="only a succeeded backup"):
        replication.request_replication(backup=backup, location=backup.storage_location, actor=SYSTEM)
