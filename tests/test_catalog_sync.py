"""catalog_sync: the catalog rebuilt from a location alone (a cloud one here) on a wiped metadata database
lists the same backups, ignores half-written ones, rebuilds WAL rows, and a restore from it succeeds."""
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.backups.models import Backup, Replica, ReplicaStatus, WalSegment
from apps.databases.models import DatabaseTarget
from apps.pipeline.artifact import Encoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends
from tests.catalog_helpers import catalog_snapshot, wipe_catalog
from tests.helpers import table_contents

pytestmark = pytest.mark.django_db

SEGMENT = "000000010000000000000003"


def cli(*args, stderr=None) -> dict:
    out = StringIO()
    call_command(*args, stdout=out, stderr=stderr or StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_catalog_sync_rebuilds_backups_and_wal_then_restores(cloud_location, target, source_db, fresh_db):
    location = cloud_location("s3", path="dr")
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=location)
    first = cli("db_backup", "sample")["id"]
    second = cli("db_backup", "sample", "--format", "plain")["id"]
    store = backends.for_location(location)
    # Debris of a backup killed before its manifest: an artifact alone.
    store.put_bytes("targets/sample/backups/01HALFWRITTEN0000000000000/dump.pgc.zst.aead", b"partial")
    # An archived WAL segment (docs/FORMAT.md §1.1), as wal_push stores it.
    raw = bytes(range(256)) * 64 * 1024  # 16 MiB
    encoder = Encoder(compression_name="zstd", keyring=configured_keyring())
    store.put_stream(f"targets/sample/wal/00000001/{SEGMENT}.zst.aead", encoder.encode([raw]))
    before = catalog_snapshot()
    assert set(before) == {first, second}

    wipe_catalog()
    assert not Backup.objects.exists()
    err = StringIO()
    report = cli("catalog_sync", location.name, stderr=err)
    assert sorted(report["backups_added"]) == sorted([first, second]) and report["targets_added"] == ["sample"]
    assert report["wal_added"] == 1 and report["replicas_added"] == 2
    assert [i["why"] for i in report["ignored"]] == ["no manifest (never committed)"]
    assert "01HALFWRITTEN" in err.getvalue()
    assert catalog_snapshot() == before
    assert set(Replica.objects.values_list("status", flat=True)) == {ReplicaStatus.PRESENT}
    wal = WalSegment.objects.get()
    st = encoder.stats
    assert (wal.name, wal.timeline, wal.start_lsn) == (SEGMENT, 1, "0/3000000")
    assert (wal.sha256_raw, wal.sha256_stored, wal.size_raw) == (st.sha256_raw, st.sha256_stored, len(raw))
    rebuilt = DatabaseTarget.objects.get(name="sample")
    assert rebuilt.enabled is False and rebuilt.storage_location == location

    again = cli("catalog_sync", location.name)  # idempotent
    assert again["backups_added"] == [] and sorted(again["backups_known"]) == sorted([first, second])
    assert again["wal_added"] == 0 and again["wal_known"] == 1

    dest = fresh_db(create=False)
    out = cli("db_restore", first, "--dsn", f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}",
              "--create")
    assert out["status"] == "succeeded" and out["tables_compared"] == 4
    assert table_contents(dest, "public.leases") == table_contents(source_db, "public.leases")


def test_catalog_sync_refuses_tampered_manifests_and_unknown_locations(cloud_location, target):
    location = cloud_location("gcs")
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=location)
    backup_id = cli("db_backup", "sample")["id"]
    store = backends.for_location(location)
    backup = Backup.objects.get(pk=backup_id)
    manifest = json.loads(store.get_bytes(backup.manifest_key))
    manifest["artifacts"][0]["size_stored"] += 1  # does not match the object
    store.put_bytes(backup.manifest_key, json.dumps(manifest).encode())
    wipe_catalog()
    report = cli("catalog_sync", location.name)
    assert report["backups_added"] == [] and "the manifest says" in report["ignored"][0]["why"]
    with pytest.raises(CommandError, match="No storage location named 'nope'"):
        cli("catalog_sync", "nope")
