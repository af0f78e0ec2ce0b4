"""Item 7: backups are deleted only through the audited deletion service, which honours legal hold and removes
the stored objects (manifest first) from every location; Django's row delete is gone from the record admins."""
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from apps.backups.deletion import delete_backup
from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import ConflictError, UserError
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.storage import backends
from apps.storage.models import StorageLocation
from tests.helpers import V1

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup(admin_client, target) -> Backup:
    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED
    return backup


def stored_files(backup: Backup, root: Path) -> list[Path]:
    keys = [backup.manifest_key, *backup.artifacts.values_list("key", flat=True)]
    return [root / key for key in keys]


def deleted_events(backup: Backup):
    return AuditEvent.objects.filter(action="backup.deleted", object_id=backup.pk)


def staff(role: str, name: str) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_django_delete_is_gone_from_backup_and_record_admins(admin_client, backup, backup_root):
    replica = backup.replicas.get()
    artifact = backup.artifacts.get()
    for url in (f"/admin/backups/backup/{backup.pk}/delete/", f"/admin/backups/backupartifact/{artifact.pk}/delete/",
                f"/admin/backups/replica/{replica.pk}/delete/", f"/admin/jobs/job/{backup.job_id}/delete/"):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403, url
    r = admin_client.post("/admin/backups/backup/", {"action": "delete_selected", "_selected_action": [backup.pk],
                                                      "post": "yes"})
    assert r.status_code in (200, 302)
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED
    assert backup.artifacts.exists() and backup.replicas.exists()
    assert all(p.exists() for p in stored_files(backup, backup_root))


def test_verification_run_delete_is_gone(admin_client, backup):
    admin_client.post("/admin/backups/backup/", {"action": "verify_exists", "_selected_action": [backup.pk]})
    run = backup.verifications.get()
    assert admin_client.post(f"/admin/verification/verificationrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403


def test_admin_action_deletes_stored_objects_keeps_the_row_and_audits(admin_client, backup, backup_root):
    files = stored_files(backup, backup_root)
    assert all(p.exists() for p in files)
    # First the confirmation page; nothing happens yet.
    r = admin_client.post("/admin/backups/backup/", {"action": "delete_backups", "_selected_action": [backup.pk]})
    assert r.status_code == 200 and b"Yes, delete them" in r.content
    assert all(p.exists() for p in files)

    r = admin_client.post("/admin/backups/backup/", {"action": "delete_backups", "_selected_action": [backup.pk],
                                                      "confirm": "yes"})
    assert r.status_code == 302
    backup.refresh_from_db()
    assert backup.status == BackupStatus.DELETED
    assert [r.status for r in backup.replicas.all()] == [ReplicaStatus.DELETED]
    assert not any(p.exists() for p in files)
    assert not (backup_root / backup.manifest_key).parent.exists()  # no empty directories left behind
    event = deleted_events(backup).get()
    assert event.via == "admin" and event.actor_name == "admin"
    assert event.details["previous_status"] == "succeeded"
    # The manifest (the commit marker) is the first object removed.
    assert event.details["objects_removed"][0].endswith(backup.manifest_key)


def test_admin_action_refuses_legal_hold(admin_client, backup, backup_root):
    Backup.objects.filter(pk=backup.pk).update(legal_hold=True)
    r = admin_client.post("/admin/backups/backup/", {"action": "delete_backups", "_selected_action": [backup.pk],
                                                      "confirm": "yes"}, follow=True)
    assert b"under legal hold; release the hold first" in r.content
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED
    assert all(p.exists() for p in stored_files(backup, backup_root))
    assert not deleted_events(backup).exists()


def test_operator_cannot_delete_from_admin(backup, backup_root):
    operator = staff("operator", "olga")
    r = operator.post("/admin/backups/backup/", {"action": "delete_backups", "_selected_action": [backup.pk],
                                                 "confirm": "yes"}, follow=True)
    assert b"needs the admin role" in r.content
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED


@pytest.mark.parametrize("status", [BackupStatus.PENDING, BackupStatus.RUNNING, BackupStatus.DELETED])
def test_service_refuses_unfinished_or_deleted_backups(backup, backup_root, status):
    Backup.objects.filter(pk=backup.pk).update(status=status)
    backup.refresh_from_db()
    with pytest.raises(ConflictError):
        delete_backup(backup=backup, actor=SYSTEM)
    assert all(p.exists() for p in stored_files(backup, backup_root))


def test_service_removes_objects_from_every_replica_location(backup, backup_root, tmp_path):
    second = StorageLocation.objects.create(name="second", kind="local", path=str(tmp_path / "second"))
    source, copy = backends.for_location(backup.storage_location), backends.for_location(second)
    keys = [backup.manifest_key, *backup.artifacts.values_list("key", flat=True)]
    for key in keys:
        copy.put_bytes(key, source.get_bytes(key))
    Replica.objects.create(backup=backup, location=second, status=ReplicaStatus.PRESENT)

    delete_backup(backup=backup, actor=SYSTEM)
    assert all(source.stat(key) is None and copy.stat(key) is None for key in keys)
    assert set(backup.replicas.values_list("status", flat=True)) == {ReplicaStatus.DELETED}


def test_interrupted_deletion_never_leaves_a_manifest_and_can_be_finished(backup, backup_root):
    manifest = backup_root / backup.manifest_key
    artifact = backup_root / backup.artifacts.get().key
    content = artifact.read_bytes()
    # A real failure: the artifact's key is now a non-empty directory, which unlink cannot remove.
    artifact.unlink()
    artifact.mkdir()
    (artifact / "blocker").write_bytes(content)

    with pytest.raises(UserError, match="run the deletion again"):
        delete_backup(backup=backup, actor=SYSTEM)
    assert not manifest.exists(), "the commit marker goes first: a half-deleted backup never looks complete"
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED
    assert AuditEvent.objects.filter(action="backup.delete.failed", object_id=backup.pk).exists()
    assert not deleted_events(backup).exists()

    shutil.rmtree(artifact)
    artifact.write_bytes(content)
    delete_backup(backup=backup, actor=SYSTEM)  # run again: finishes
    assert not artifact.exists()
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.DELETED


def test_api_delete_needs_admin_and_honours_legal_hold(api_as, backup, backup_root):
    url = f"{V1}/database/backups/{backup.pk}"
    assert api_as("operator").delete(url).status_code == 403
    Backup.objects.filter(pk=backup.pk).update(legal_hold=True)
    admin = api_as("admin")
    r = admin.delete(url)
    assert r.status_code == 409 and "legal hold" in r.json()["detail"]
    assert all(p.exists() for p in stored_files(backup, backup_root))

    Backup.objects.filter(pk=backup.pk).update(legal_hold=False)
    r = admin.delete(url)
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert not any(p.exists() for p in stored_files(backup, backup_root))
    assert deleted_events(backup).get().via == "api"
    assert admin.delete(url).status_code == 409  # already deleted
