"""Configuration through the API: database targets (write-only password) and storage locations; all audited."""
import json

import pytest

from apps.backups import services as backup_services
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.storage.models import StorageLocation
from tests.helpers import V1

pytestmark = pytest.mark.django_db

TARGETS = f"{V1}/database/targets/"
LOCATIONS = f"{V1}/storage/locations/"
SECRET = "Sup3r-secret-pg-Passw0rd"


def new_target(**extra) -> dict:
    return {"name": "orders", "host": "db.internal", "port": 5433, "dbname": "orders", "user": "backup",
            "password": SECRET, "sslmode": "require", "tags": ["prod", "eu"]} | extra


def test_target_crud_keeps_password_write_only(api_as):
    admin = api_as("admin")
    bodies = []

    r = admin.post(TARGETS, new_target(), format="json")
    assert r.status_code == 201, r.content
    bodies.append(r.content)
    created = r.json()
    assert created["has_password"] is True and "password" not in created and "password_sealed" not in created
    assert created["tags"] == ["prod", "eu"] and created["storage_location"] is None
    pk = created["id"]
    target = DatabaseTarget.objects.get(pk=pk)
    assert target.get_password() == SECRET and SECRET not in target.password_sealed

    for r in (admin.get(TARGETS), admin.get(f"{TARGETS}{pk}/"), api_as("viewer").get(f"{TARGETS}{pk}/")):
        assert r.status_code == 200
        bodies.append(r.content)
    assert admin.get(TARGETS, {"name": "orders"}).json()["count"] == 1

    r = admin.patch(f"{TARGETS}{pk}/", {"description": "Order service"}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is True  # omitted: kept
    bodies.append(r.content)
    assert DatabaseTarget.objects.get(pk=pk).get_password() == SECRET

    r = admin.put(f"{TARGETS}{pk}/", new_target(port=5434, password="an0ther-Secret"), format="json")
    assert r.status_code == 200 and r.json()["port"] == 5434
    bodies.append(r.content)
    assert DatabaseTarget.objects.get(pk=pk).get_password() == "an0ther-Secret"

    r = admin.patch(f"{TARGETS}{pk}/", {"password": ""}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is False  # empty: cleared
    bodies.append(r.content)

    r = admin.delete(f"{TARGETS}{pk}/")
    assert r.status_code == 204
    assert not DatabaseTarget.objects.filter(pk=pk).exists()

    for body in bodies:
        assert SECRET.encode() not in body and b"an0ther-Secret" not in body and b"password_sealed" not in body

    events = list(AuditEvent.objects.filter(object_type="databases.databasetarget").order_by("id"))
    assert [e.action for e in events] == ["target.created", "target.updated", "target.updated", "target.updated",
                                          "target.deleted"]
    assert {e.via for e in events} == {"api"} and {e.actor_name for e in events} == {"admin-user"}
    assert all(e.remote_addr == "127.0.0.1" for e in events)
    assert [e.details.get("password_changed") for e in events[:4]] == [True, False, True, True]
    assert SECRET not in json.dumps([e.details for e in events])


def test_target_bad_input_is_400(api_as):
    admin = api_as("admin")
    assert admin.post(TARGETS, new_target(), format="json").status_code == 201
    cases = [
        (new_target(), "name"),  # duplicate
        (new_target(name="has spaces"), "name"),
        (new_target(name="p2", port=70000), "port"),
        (new_target(name="p3", sslmode="sometimes"), "sslmode"),
        (new_target(name="p4", storage_location="nowhere"), "storage_location"),
        (new_target(name="p5", tags="prod"), "tags"),
        ({"name": "p6"}, "host"),
    ]
    for body, field in cases:
        r = admin.post(TARGETS, body, format="json")
        assert r.status_code == 400, (body, r.content)
        assert field in r.json(), (field, r.json())
        assert SECRET.encode() not in r.content
    r = admin.post(TARGETS, "{not json", content_type="application/json")
    assert r.status_code == 400
    assert DatabaseTarget.objects.count() == 1


def test_target_with_backups_cannot_be_deleted(api_as):
    admin = api_as("admin")
    pk = admin.post(TARGETS, new_target(), format="json").json()["id"]
    backup_services.request_database_backup(target=DatabaseTarget.objects.get(pk=pk), actor=SYSTEM)
    r = admin.delete(f"{TARGETS}{pk}/")
    assert r.status_code == 400
    assert "has backups" in r.json()["detail"]
    assert DatabaseTarget.objects.filter(pk=pk).exists()
    assert api_as("operator").delete(f"{TARGETS}{pk}/").status_code == 403


def test_target_uses_named_storage_location(api_as, tmp_path):
    admin = api_as("admin")
    r = admin.post(LOCATIONS, {"name": "vault", "kind": "local", "path": str(tmp_path / "vault")}, format="json")
    assert r.status_code == 201, r.content
    r = admin.post(TARGETS, new_target(storage_location="vault"), format="json")
    assert r.status_code == 201 and r.json()["storage_location"] == "vault"
    target = DatabaseTarget.objects.get(name="orders")
    assert target.storage_location.name == "vault"
    backup = backup_services.request_database_backup(target=target, actor=SYSTEM)
    assert backup.storage_location.name == "vault"


def test_target_replica_locations_through_the_api(api_as, tmp_path):
    admin = api_as("admin")
    for name in ("vault", "copy-a", "copy-b"):
        r = admin.post(LOCATIONS, {"name": name, "kind": "local", "path": str(tmp_path / name)}, format="json")
        assert r.status_code == 201, r.content
    r = admin.post(TARGETS, new_target(storage_location="vault", replica_locations=["copy-b", "copy-a"]),
                   format="json")
    assert r.status_code == 201, r.content
    pk = r.json()["id"]
    assert sorted(r.json()["replica_locations"]) == ["copy-a", "copy-b"]
    target = DatabaseTarget.objects.get(pk=pk)
    assert sorted(loc.name for loc in target.replica_locations.all()) == ["copy-a", "copy-b"]
    assert AuditEvent.objects.filter(action="database.target.locations_set", object_id=str(pk)).exists()

    # The primary cannot also be a replica, an unknown name is refused; neither changes anything.
    for bad in (["vault"], ["nowhere"]):
        r = admin.patch(f"{TARGETS}{pk}/", {"replica_locations": bad, "description": "x"}, format="json")
        assert r.status_code == 400, r.content
        assert bad[0] in json.dumps(r.json())
    target.refresh_from_db()
    assert target.description == "" and target.replica_locations.count() == 2

    r = admin.patch(f"{TARGETS}{pk}/", {"replica_locations": []}, format="json")
    assert r.status_code == 200 and r.json()["replica_locations"] == []
    assert api_as("operator").patch(f"{TARGETS}{pk}/", {"replica_locations": ["copy-a"]},
                                    format="json").status_code == 403


def test_storage_location_crud(api_as, tmp_path):
    admin = api_as("admin")
    r = admin.post(LOCATIONS, {"name": "primary", "kind": "local", "path": str(tmp_path / "a"), "is_primary": True},
                   format="json")
    assert r.status_code == 201, r.content
    first = r.json()
    assert first["is_primary"] is True and first["enabled"] is True
    # A second local disk stands in for an offsite store (the cloud kinds: tests/test_storage_api.py).
    r = admin.post(LOCATIONS, {"name": "offsite", "kind": "local", "path": str(tmp_path / "b"),
                               "credentials_ref": "env:AWS_PROFILE_DR", "is_primary": True}, format="json")
    assert r.status_code == 201, r.content
    second = r.json()
    assert StorageLocation.objects.get(pk=first["id"]).is_primary is False  # only one primary

    viewer = api_as("viewer")
    listing = viewer.get(LOCATIONS).json()
    assert [loc["name"] for loc in listing["results"]] == ["offsite", "primary"]
    assert viewer.get(LOCATIONS, {"kind": "local"}).json()["count"] == 2
    assert viewer.get(LOCATIONS, {"is_primary": True}).json()["count"] == 1
    assert viewer.post(LOCATIONS, {"name": "x", "kind": "local", "path": "/tmp/x"}, format="json").status_code == 403

    r = admin.patch(f"{LOCATIONS}{second['id']}/", {"enabled": False, "storage_class": "STANDARD_IA"}, format="json")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["storage_class"] == "STANDARD_IA"

    r = admin.post(LOCATIONS, {"name": "rel", "kind": "local", "path": "relative/dir"}, format="json")
    assert r.status_code == 400 and "absolute" in r.json()["detail"]
    r = admin.post(LOCATIONS, {"name": "bad", "kind": "tape"}, format="json")
    assert r.status_code == 400 and "kind" in r.json()
    r = admin.post(LOCATIONS, {"name": "primary", "kind": "local", "path": "/tmp/y"}, format="json")
    assert r.status_code == 400 and "name" in r.json()
    r = admin.post(LOCATIONS, {"name": "cap", "kind": "local", "path": "/tmp/y", "capacity_bytes": -1}, format="json")
    assert r.status_code == 400 and "capacity_bytes" in r.json()

    assert admin.delete(f"{LOCATIONS}{second['id']}/").status_code == 405
    assert StorageLocation.objects.count() == 2

    actions = list(AuditEvent.objects.filter(object_type="storage.storagelocation").values_list("action", "via"))
    assert sorted(actions) == sorted([("storage.location.created", "api")] * 2 + [("storage.location.updated", "api")])


@pytest.mark.parametrize("url", [
    f"{V1}/database/backup/full",
    f"{V1}/database/backups/{{backup}}/restore",
    f"{V1}/verification/verify/{{backup}}",
    f"{V1}/verification/verify-all",
    TARGETS,
    LOCATIONS,
])
def test_malformed_bodies_are_400_not_500(api_as, url):
    admin = api_as("admin")
    if "{backup}" in url:
        target = DatabaseTarget.objects.create(name="cheap", host="db.invalid", dbname="d", user="u")
        url = url.format(backup=backup_services.request_database_backup(target=target, actor=SYSTEM).pk)
    for raw in ("null", '"text"', "[]", "42", '{"target": {"a": 1}, "name": [1], "port": "abc", "level": null}',
                "\x00\xff", "{" * 10):
        r = admin.post(url, raw, content_type="application/json")
        assert r.status_code == 400, (raw, r.status_code, r.content)
        assert r["Content-Type"].startswith("application/json")
    r = admin.post(url, {"target": "x", "level": "x"}, format="multipart")
    assert r.status_code == 400
    r = admin.post(url, "<xml/>", content_type="application/xml")
    assert r.status_code == 415
