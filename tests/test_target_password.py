"""Item 3: pointing a target at another server (host, port, user, sslmode) drops its stored password unless a
new one comes with the same request, through the API, the admin and the DSN command path; audited."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import upsert_target_from_dsn
from tests.helpers import PASSWORD, V1

pytestmark = pytest.mark.django_db

TARGETS = f"{V1}/database/targets/"
SECRET = "Old-server-Passw0rd"


def create(admin) -> int:
    body = {"name": "orders", "host": "db.internal", "port": 5432, "dbname": "orders", "user": "backup",
            "password": SECRET, "sslmode": "require"}
    r = admin.post(TARGETS, body, format="json")
    assert r.status_code == 201, r.content
    return r.json()["id"]


def last_event(pk) -> AuditEvent:
    return AuditEvent.objects.filter(object_type="databases.databasetarget", object_id=str(pk)).latest("id")


@pytest.mark.parametrize("change", [{"port": 55433}, {"host": "evil.example"}, {"user": "other"},
                                    {"sslmode": "disable"}])
def test_api_change_of_server_clears_the_password(api_as, change):
    admin = api_as("admin")
    pk = create(admin)
    r = admin.patch(f"{TARGETS}{pk}/", change, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is False
    assert DatabaseTarget.objects.get(pk=pk).password_sealed == ""
    event = last_event(pk)
    assert event.details["password_changed"] is True and event.details["password_cleared"]
    assert event.details["changed"] == list(change)


def test_api_change_of_server_with_a_new_password_keeps_the_new_one(api_as):
    admin = api_as("admin")
    pk = create(admin)
    r = admin.patch(f"{TARGETS}{pk}/", {"port": 55433, "password": "New-server-pw"}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is True
    assert DatabaseTarget.objects.get(pk=pk).get_password() == "New-server-pw"
    event = last_event(pk)
    assert event.details == {"password_changed": True, "changed": ["port"]}


def test_api_other_changes_keep_the_password(api_as):
    admin = api_as("admin")
    pk = create(admin)
    r = admin.patch(f"{TARGETS}{pk}/", {"description": "d", "dbname": "orders2", "port": 5432}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is True
    assert DatabaseTarget.objects.get(pk=pk).get_password() == SECRET
    assert last_event(pk).details == {"password_changed": False, "changed": ["description", "dbname"]}


def test_admin_form_change_of_port_clears_the_password(api_as):
    admin_api = api_as("admin")
    pk = create(admin_api)
    User.objects.create_superuser("root", "root@example.invalid", PASSWORD)
    browser = Client()
    browser.login(username="root", password=PASSWORD)
    form = {"name": "orders", "description": "", "host": "db.internal", "port": "55433", "dbname": "orders",
            "user": "backup", "sslmode": "require", "storage_location": "", "tags": "[]", "enabled": "on",
            "password": ""}
    r = browser.post(f"/admin/databases/databasetarget/{pk}/change/", form)
    assert r.status_code == 302, r.content[:2000]
    target = DatabaseTarget.objects.get(pk=pk)
    assert target.port == 55433 and not target.has_password
    assert last_event(pk).details["changed"] == ["port"] and last_event(pk).via == "admin"


def test_dsn_upsert_to_another_server_clears_the_password_unless_given():
    dsn = "postgresql://backup@db.internal:5432/orders?sslmode=require"
    target, _ = upsert_target_from_dsn(name="orders", dsn=dsn, actor=SYSTEM, password=SECRET)
    assert target.get_password() == SECRET and last_event(target.pk).details["password_changed"] is True
    target, _ = upsert_target_from_dsn(name="orders", dsn=dsn, actor=SYSTEM)  # same server: kept
    assert target.get_password() == SECRET
    target, _ = upsert_target_from_dsn(name="orders", dsn=dsn.replace("5432", "55433"), actor=SYSTEM)
    assert not DatabaseTarget.objects.get(pk=target.pk).has_password
    target, _ = upsert_target_from_dsn(name="orders", dsn="postgresql://backup:pw2@other:5432/orders", actor=SYSTEM)
    assert DatabaseTarget.objects.get(pk=target.pk).get_password() == "pw2"
    assert last_event(target.pk).details == {"password_changed": True, "changed": ["host", "port", "sslmode"]}


def test_admin_delete_of_a_target_is_audited(api_as):
    pk = create(api_as("admin"))
    User.objects.create_superuser("root", "root@example.invalid", PASSWORD)
    browser = Client()
    browser.login(username="root", password=PASSWORD)
    r = browser.post(f"/admin/databases/databasetarget/{pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert not DatabaseTarget.objects.filter(pk=pk).exists()
    event = last_event(pk)
    assert event.action == "target.deleted" and event.via == "admin" and event.actor_name == "root"
