"""Every audit event says through which interface it came (api, console, admin, cli) and, for web requests,
from which address; the two-person flow names both people."""
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from apps.core.models import AuditEvent
from tests.helpers import V1, make_user

pytestmark = pytest.mark.django_db


def test_each_interface_is_recorded_with_its_address(api_as, target):
    api_as("operator").post(f"{V1}/database/backup/full", {"target": target.name}, format="json",
                            REMOTE_ADDR="198.51.100.7")
    api_event = AuditEvent.objects.filter(action="backup.requested").latest("id")
    assert (api_event.via, api_event.remote_addr) == ("api", "198.51.100.7")

    console = Client(REMOTE_ADDR="198.51.100.8")
    console.force_login(make_user("otto", "operator"))
    console.post(f"/targets/{target.pk}/backup/", {})
    console_event = AuditEvent.objects.filter(action="backup.requested").latest("id")
    assert (console_event.via, console_event.remote_addr, console_event.actor_name) == \
        ("console", "198.51.100.8", "otto")

    admin = Client(REMOTE_ADDR="198.51.100.9")
    admin.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    admin.post("/admin/databases/databasetarget/", {"action": "backup_now", "_selected_action": [target.pk]})
    admin_event = AuditEvent.objects.filter(action="backup.requested").latest("id")
    assert (admin_event.via, admin_event.remote_addr) == ("admin", "198.51.100.9")

    call_command("db_backup", target.name, stdout=open("/dev/null", "w"))
    cli_event = AuditEvent.objects.filter(action="backup.requested").latest("id")
    assert cli_event.via == "cli" and cli_event.remote_addr is None and cli_event.actor_name.startswith("cli:")

    # The list filters by interface and user.
    rows = api_as("admin").get("/v1/audit/", {"via": "console", "actor": "otto"}).json()["results"]
    assert [r["action"] for r in rows] == ["backup.requested"]
