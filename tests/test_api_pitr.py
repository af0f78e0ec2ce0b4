"""The point-in-time recovery endpoint: who may call it, what it refuses (400, with the reason), what it records.

Recovery itself runs on a real archiving cluster in tests/test_pitr.py (its WAL archive lives in a separate
site that PostgreSQL's archive_command can reach); here the requests are checked against the catalog.
"""
import pytest

from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus
from apps.core.models import AuditEvent
from apps.jobs.models import Job
from apps.recovery.models import RecoveryRun
from apps.storage.services import ensure_default_location

from tests.helpers import V1

pytestmark = pytest.mark.django_db
URL = f"{V1}/disaster-recovery/point-in-time-recovery"


def post(client, **body):
    return client.post(URL, {"target": "sample", "directory": "shop_1200", **body}, format="json")


def test_only_admins_may_recover(api_as, target):
    for role in ("viewer", "operator"):
        assert post(api_as(role), target_time="2026-11-25T12:00:00+00:00").status_code == 403
    assert api_as("viewer").get(f"{V1}/disaster-recovery/recoveries").status_code == 200


@pytest.mark.parametrize("body, field, words", [
    ({"target_time": "2026-11-25 12:00:00"}, "non_field_errors", "UTC offset"),
    ({"target_time": "yesterday"}, "non_field_errors", "not a time"),
    ({"target_time": "2026-11-25T12:00:00+00:00", "target_lsn": "0/3000000"}, "non_field_errors", "one recovery target"),
    ({"target_lsn": "0/30000zz"}, "non_field_errors", "not an LSN"),
    ({"target_name": "x'; DROP"}, "non_field_errors", "restore point name"),
    ({"directory": "../../etc"}, "directory", "not an acceptable directory name"),
    ({"table": "public.leases; x"}, "table", "not an acceptable"),
    ({"rename": "leases_old"}, "rename", "goes with table"),
    ({"target": "nope"}, "target", "No database target named nope"),
])
def test_bad_requests_are_refused_with_the_reason(api_as, target, body, field, words):
    r = post(api_as("admin"), **body)
    assert r.status_code == 400, r.content
    assert words in str(r.json()[field]), r.json()
    assert not RecoveryRun.objects.exists() and not Job.objects.exists()


def test_a_target_without_a_physical_backup_is_refused(api_as, target):
    Backup.objects.create(database_target=target, kind=BackupKind.FULL, format=BackupFormat.CUSTOM,
                          status=BackupStatus.SUCCEEDED, storage_location=ensure_default_location())
    r = post(api_as("admin"), target_time="2026-11-25T12:00:00+00:00")
    assert r.status_code == 400
    assert "no succeeded physical backup" in r.json()["detail"]


def test_a_time_before_every_base_backup_is_refused(api_as, target):
    from django.utils import timezone

    Backup.objects.create(database_target=target, kind=BackupKind.FULL, format=BackupFormat.BASEBACKUP,
                          status=BackupStatus.SUCCEEDED, storage_location=ensure_default_location(),
                          lsn_start="0/2000028", lsn_stop="0/2000100", timeline=1, finished_at=timezone.now())
    r = post(api_as("admin"), target_time="2020-01-01T00:00:00+00:00")
    assert r.status_code == 400
    assert "earliest point" in r.json()["detail"]
    # A later time passes the base backup check but the archive holds no WAL after it: refused as well, saying why.
    r = post(api_as("admin"), target_time="2099-01-01T00:00:00+00:00")
    assert r.status_code == 400
    assert "cannot be recovered" in r.json()["detail"] and "not archived" in r.json()["detail"]
    assert not RecoveryRun.objects.exists()
    assert not AuditEvent.objects.filter(action="recovery.requested").exists()
