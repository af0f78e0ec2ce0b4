"""Item 9: the console restore form after a SECRET_KEY change answers a page (the job records why it failed),
never a 500: the view builds the redacted destination without unsealing the stored password."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.backups.models import Backup, BackupStatus
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_restore_form_after_secret_key_change_is_not_a_500(admin_client, target, settings, fresh_db):
    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED

    settings.SECRET_KEY = "a-rotated-secret-key-0123456789abcdef"
    browser = Client(raise_request_exception=False)  # a new session: the old one was signed with the old key
    browser.force_login(User.objects.get(username="admin"))
    dest = fresh_db(create=False)
    response = browser.post(f"/backups/{backup.pk}/", {"target": "sample", "dbname": dest.dbname, "create": "on",
                                                       "table": ""})
    assert response.status_code == 302, response.status_code
    job = Job.objects.get(type="restore.database")
    assert job.args["destination"] == f"postgresql://{target.user}@{target.host}:{target.port}/{dest.dbname}"
    # The job (not the page) finds that the stored password cannot be decrypted, and says so.
    assert job.status == "failed" and "SECRET_KEY" in job.error
    assert browser.get(response["Location"]).status_code == 200
