"""The same backup → verify (checksum, decrypt) → restore through each of the four backends (local disk, and the
real SDKs against moto, Azurite and the GCS emulator)."""
import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.backups.models import Backup, BackupStatus
from apps.databases.models import DatabaseTarget
from apps.storage import backends
from tests.emulators import KINDS
from tests.helpers import table_contents

pytestmark = pytest.mark.django_db


def cli(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.parametrize("kind", KINDS)
def test_backup_verify_restore(kind, cloud_location, target, source_db, fresh_db):
    location = cloud_location(kind, **({} if kind == "local" else {"path": "repo"}))  # cloud: under a prefix
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=location)
    result = cli("db_backup", "sample")
    backup = Backup.objects.get(pk=result["id"])
    assert backup.status == BackupStatus.SUCCEEDED and backup.storage_location == location
    store = backends.for_location(location)
    keys = sorted(o.key for o in store.list())
    assert keys == sorted([backup.manifest_key, backup.artifacts.get().key])
    for level in ("checksum", "decrypt"):
        assert cli("db_verify", backup.pk, "--level", level)["status"] == "succeeded"
    dest = fresh_db(create=False)
    dsn = f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}"
    restored = cli("db_restore", backup.pk, "--dsn", dsn, "--create")
    assert restored["status"] == "succeeded" and restored["tables_compared"] == 4
    assert table_contents(dest, "billing.payments") == table_contents(source_db, "billing.payments")
