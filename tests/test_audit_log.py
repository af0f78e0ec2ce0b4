"""The audit log: every API action recorded with who, from where and via what; readable by admins through
`GET /v1/audit/` with filters; refused to change by every ORM path (save, bulk update, delete)."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.core.models import AuditEvent
from tests.helpers import V1

pytestmark = pytest.mark.django_db

AUDIT = "/v1/audit/"


def test_actions_are_listed_with_who_where_and_filters(api_as, tmp_path):
    admin = api_as("admin")
    r = admin.post(f"{V1}/storage/locations/", {"name": "vault", "kind": "local", "path": str(tmp_path / "v")},
                   format="json")
    assert r.status_code == 201, r.content
    r = admin.post(f"{V1}/database/targets/", {"name": "orders", "host": "db", "dbname": "o", "user": "u"},
                   format="json")
    assert r.status_code == 201, r.content
    target_id = str(r.json()["id"])

    listed = admin.get(AUDIT).json()["results"]
    actions = [e["action"] for e in listed]
    assert actions.index("target.created") < actions.index("storage.location.created")  # newest first
    created = next(e for e in listed if e["action"] == "target.created")
    assert created["via"] == "api" and created["remote_addr"] == "127.0.0.1"
    assert created["object_type"] == "databases.databasetarget" and created["object_id"] == target_id
    assert created["actor"] == listed[0]["actor"] and created["actor"]

    def only(**query):
        r = admin.get(AUDIT, query)
        assert r.status_code == 200, r.content
        return [e["action"] for e in r.json()["results"]]

    assert only(action="target.") == ["target.created"]
    assert only(object_type="databases.databasetarget", object_id=target_id) == ["target.created"]
    assert set(only(actor=created["actor"])) >= {"target.created", "storage.location.created"}
    assert only(actor="nobody") == []
    assert only(since=(timezone.now() + timedelta(minutes=1)).isoformat()) == []
    assert "target.created" in only(until=(timezone.now() + timedelta(minutes=1)).isoformat())
    one = admin.get(f"{AUDIT}{created['id']}")
    assert one.status_code == 200 and one.json() == created
    assert admin.get(AUDIT, {"since": "yesterday"}).status_code == 400
    assert admin.get(AUDIT, {"via": "telepathy"}).status_code == 400
    assert admin.get(f"{AUDIT}999999").status_code == 404


@pytest.mark.parametrize("role", ["viewer", "operator", None])
def test_only_admins_read_it(api_as, role):
    client = api_as(role) if role else api_as("viewer").__class__()
    r = client.get(AUDIT)
    assert r.status_code == (403 if role else 401)
    assert r.json()["detail"]


def test_no_orm_path_changes_history(api_as):
    admin = api_as("admin")
    admin.post(f"{V1}/database/targets/", {"name": "orders", "host": "db", "dbname": "o", "user": "u"},
               format="json")
    event = AuditEvent.objects.get(action="target.created")
    before = list(AuditEvent.objects.values_list("id", "action", "actor_name", "details"))
    event.action = "forged"
    for attempt in (event.save, event.delete, lambda: AuditEvent.objects.update(action="forged"),
                    lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
                    lambda: AuditEvent.objects.bulk_update([event], ["action"])):
        with pytest.raises(ValueError, match="append-only"):
            attempt()
    assert list(AuditEvent.objects.values_list("id", "action", "actor_name", "details")) == before
    # A deleted user's events stay, with the name they acted under.
    user = User.objects.get(username=event.actor_name)
    user.delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert event.actor_id is None and event.actor_name == user.username and event.action == "target.created"
