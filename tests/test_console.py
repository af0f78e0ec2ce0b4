"""Console pages and admin: what an operator clicks, with role checks."""
import pytest
from django.contrib.auth.models import Group, User

from apps.backups.models import Backup, BackupStatus
from apps.core.models import AuditEvent
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


def user_with_role(role: str | None, name: str) -> User:
    user = User.objects.create_user(name, password="pw-" + name, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def test_dashboard_needs_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_user_without_role_is_refused(client):
    client.force_login(user_with_role(None, "charlie"))
    assert client.get("/").status_code == 403


def test_operator_backs_up_from_dashboard_and_watches_job(client, target):
    client.force_login(user_with_role("operator", "bob"))
    page = client.get("/")
    assert page.status_code == 200 and b"Back up now" in page.content and b"sample" in page.content
    response = client.post(f"/targets/{target.pk}/backup/", {"format": "custom"})
    assert response.status_code == 302
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    detail = client.get(response["Location"])
    assert detail.status_code == 200
    assert b"succeeded" in detail.content and b"artifact committed" in detail.content
    assert b'http-equiv="refresh"' not in detail.content  # finished: the page stops refreshing
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED
    event = AuditEvent.objects.get(action="backup.requested")
    assert event.actor_name == "bob" and event.via == "console"


def test_viewer_sees_but_cannot_back_up(client, target):
    client.force_login(user_with_role("viewer", "vera"))
    assert b"Back up now" not in client.get("/").content
    client.post(f"/targets/{target.pk}/backup/")
    assert not Backup.objects.exists()


def test_bad_format_is_a_message_not_an_error(client, target):
    client.force_login(user_with_role("operator", "bob"))
    response = client.post(f"/targets/{target.pk}/backup/", {"format": "tarball"}, follow=True)
    assert response.status_code == 200 and b"Unknown format" in response.content
    assert not Backup.objects.exists()


def test_every_admin_page_renders(admin_client, target):
    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    pages = ["/admin/"] + [
        f"/admin/{app}/{model}/"
        for app, model in [("core", "auditevent"), ("storage", "storagelocation"), ("databases", "databasetarget"),
                           ("backups", "backup"), ("backups", "backupartifact"), ("backups", "replica"), ("jobs", "job"),
                           ("verification", "verificationrun")]
    ] + [f"/admin/backups/backup/{backup.pk}/change/", f"/admin/databases/databasetarget/{target.pk}/change/",
         f"/admin/jobs/job/{backup.job_id}/change/", "/admin/databases/databasetarget/add/"]
    for url in pages:
        assert admin_client.get(url).status_code == 200, url


def test_admin_target_password_is_write_only(admin_client, target):
    page = admin_client.get(f"/admin/databases/databasetarget/{target.pk}/change/")
    assert b"not-needed-trust-auth" not in page.content
    assert target.password_sealed.encode() not in page.content
    data = {"name": "sample", "host": target.host, "port": target.port, "dbname": target.dbname, "user": target.user,
            "sslmode": "disable", "tags": "[]", "enabled": "on", "password": "n3w-secret"}
    response = admin_client.post(f"/admin/databases/databasetarget/{target.pk}/change/", data)
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.get_password() == "n3w-secret"
    event = AuditEvent.objects.filter(action="target.updated").latest("at")
    assert event.via == "admin" and "n3w-secret" not in str(event.details)


def test_admin_actions_back_up_and_verify(admin_client, target):
    admin_client.post("/admin/databases/databasetarget/", {"action": "backup_now", "_selected_action": [target.pk]})
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED
    admin_client.post("/admin/backups/backup/", {"action": "verify_checksum", "_selected_action": [backup.pk]})
    assert backup.verifications.get().result == "passed"
    assert AuditEvent.objects.filter(action="backup.verify.requested", via="admin").exists()


def test_backup_page_verify_and_restore(admin_client, target, fresh_db, source_db):
    from tests.helpers import table_contents

    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    page = admin_client.get(f"/backups/{backup.pk}/")
    assert page.status_code == 200 and backup.sha256.encode() in page.content
    response = admin_client.post(f"/backups/{backup.pk}/verify/", {"level": "checksum"})
    assert response.status_code == 302 and backup.verifications.get().result == "passed"
    dest = fresh_db(create=False)
    response = admin_client.post(f"/backups/{backup.pk}/", {"target": "sample", "dbname": dest.dbname,
                                                            "create": "on", "table": ""})
    assert response.status_code == 302, response.content[-500:]
    job = Job.objects.get(type="restore.database")
    assert job.status == "succeeded" and job.result["tables_compared"] == 4
    assert "not-needed" not in str(job.args)
    assert table_contents(dest, "public.leases") == table_contents(source_db, "public.leases")
    # Restoring again over the now non-empty database is refused with a message, not an error page.
    admin_client.post(f"/backups/{backup.pk}/", {"target": "sample", "dbname": dest.dbname, "table": ""})
    assert Job.objects.filter(type="restore.database").latest("created_at").error.startswith("Database")


def test_operator_cannot_restore(client, target):
    client.force_login(user_with_role("operator", "bob"))
    client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    assert b"restore-form" not in client.get(f"/backups/{backup.pk}/").content
    client.post(f"/backups/{backup.pk}/", {"target": "sample", "dbname": "x", "create": "on"})
    assert not Job.objects.filter(type="restore.database").exists()


def test_legal_hold_from_admin_is_audited(admin_client, target):
    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    response = admin_client.post(f"/admin/backups/backup/{backup.pk}/change/", {
        "legal_hold": "on",
        "artifacts-TOTAL_FORMS": "1", "artifacts-INITIAL_FORMS": "1", "artifacts-MIN_NUM_FORMS": "0",
        "artifacts-MAX_NUM_FORMS": "1000",
        "replicas-TOTAL_FORMS": "1", "replicas-INITIAL_FORMS": "1", "replicas-MIN_NUM_FORMS": "0",
        "replicas-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 302, response.content[-800:]
    backup.refresh_from_db()
    assert backup.legal_hold is True, response["Location"]
    assert AuditEvent.objects.filter(action="backup.legal_hold.set", object_id=backup.pk, via="admin").exists()
