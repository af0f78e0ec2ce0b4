"""Locations as an operator sets them up: location_add / target_locations / location_test, the API's connection
test, and write-once storage (S3 Object Lock on moto; Azure and GCS: the requests that carry the retention)."""
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.storage import backends
from apps.storage.backends.base import StorageError
from apps.storage.models import StorageLocation
from tests.emulators import create_container
from tests.helpers import V1

pytestmark = pytest.mark.django_db

LOCATIONS = f"{V1}/storage/locations/"


def run(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def test_location_add_for_each_kind_then_location_test(s3_emulator, azure_emulator, gcs_emulator, tmp_path):
    create_container("s3", s3_emulator, "cli-bucket")
    create_container("azure", azure_emulator, "cli-container")
    create_container("gcs", gcs_emulator, "cli-gcs")
    run("location_add", "disk", "--kind", "local", "--path", str(tmp_path / "disk"))
    out = run("location_add", "aws", "--kind", "s3", "--bucket", "cli-bucket", "--prefix", "/backups/",
              "--endpoint-url", s3_emulator["endpoint_url"], "--region", "eu-west-1",
              "--credentials-file", s3_emulator["credentials_ref"][5:])
    assert out["created"] and out["path"] == "backups" and out["credentials_ref"].startswith("file:/")
    run("location_add", "blob", "--kind", "azure", "--container", "cli-container",
        "--credentials-file", azure_emulator["credentials_ref"][5:])
    run("location_add", "gcs", "--kind", "gcs", "--bucket", "cli-gcs", "--endpoint-url", gcs_emulator["endpoint_url"])
    for name in ("disk", "aws", "blob", "gcs"):
        report = run("location_test", name)
        assert report["ok"], report
        assert [c["name"] for c in report["checks"]] == ["connect", "write", "read", "delete"]
        assert report["immutability"]["required"] is False
    assert not list(backends.for_location(StorageLocation.objects.get(name="aws")).list())  # the probe is gone
    # The prefix is honoured: an object written through the location lands under it in the bucket.
    backends.for_location(StorageLocation.objects.get(name="aws")).put_bytes("k", b"v")
    import boto3

    creds = json.loads(open(s3_emulator["credentials_ref"][5:]).read())
    raw = boto3.client("s3", endpoint_url=s3_emulator["endpoint_url"], region_name="us-east-1", **creds)
    assert [o["Key"] for o in raw.list_objects_v2(Bucket="cli-bucket")["Contents"]] == ["backups/k"]


def test_location_add_refuses_bad_input(tmp_path, s3_emulator):
    with pytest.raises(CommandError, match="--kind is required"):
        run("location_add", "x", "--bucket", "b")
    with pytest.raises(CommandError, match="needs a bucket"):
        run("location_add", "x", "--kind", "s3")
    with pytest.raises(CommandError, match="--path is for local"):
        run("location_add", "x", "--kind", "s3", "--path", "/srv")
    with pytest.raises(CommandError, match="--container for azure"):
        run("location_add", "x", "--kind", "s3", "--container", "c")
    with pytest.raises(CommandError, match="retention_days"):
        run("location_add", "x", "--kind", "s3", "--bucket", "b", "--immutability", "compliance")
    with pytest.raises(CommandError, match="Unknown s3 tier|must not hold credentials|endpoint_url"):
        run("location_add", "x", "--kind", "s3", "--bucket", "b", "--endpoint-url", "http://key:secret@h:1")
    assert not StorageLocation.objects.filter(name="x").exists()
    failing = run("location_add", "down", "--kind", "s3", "--bucket", "no-such-bucket",
                  "--endpoint-url", s3_emulator["endpoint_url"], "--credentials-file", s3_emulator["credentials_ref"][5:])
    assert failing["created"]
    with pytest.raises(CommandError, match="connect.*does not exist"):
        run("location_test", "down")
    with pytest.raises(CommandError, match="No storage location named 'nope'"):
        run("location_test", "nope")


def test_target_locations(target, tmp_path):
    run("location_add", "one", "--kind", "local", "--path", str(tmp_path / "1"))
    run("location_add", "two", "--kind", "local", "--path", str(tmp_path / "2"))
    run("location_add", "three", "--kind", "local", "--path", str(tmp_path / "3"))
    assert run("target_locations", "sample", "one", "two", "three") == {
        "target": "sample", "primary": "one", "replicas": ["two", "three"]}
    target.refresh_from_db()
    assert target.storage_location.name == "one"
    assert sorted(target.replica_locations.values_list("name", flat=True)) == ["three", "two"]
    with pytest.raises(CommandError, match="named twice"):
        run("target_locations", "sample", "one", "one")
    with pytest.raises(CommandError, match="No storage location named 'four'"):
        run("target_locations", "sample", "one", "four")
    with pytest.raises(CommandError, match="No target named"):
        run("target_locations", "nope", "one")
    run("target_locations", "sample", "two")
    target.refresh_from_db()
    assert target.storage_location.name == "two" and not target.replica_locations.exists()


# --- write-once ---------------------------------------------------------------------------------------


def test_object_lock_keeps_an_artifact_until_its_retention_date(cloud_location):
    location = cloud_location("s3", object_lock=True, immutability="governance", retention_days=30)
    store = backends.for_location(location)
    store.put_stream("backups/x/dump.zst.aead", [b"a" * 1000])
    head = store.client.head_object(Bucket=store.bucket, Key="backups/x/dump.zst.aead")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days in (29, 30)
    with pytest.raises(StorageError, match="write-once until"):
        store.delete("backups/x/dump.zst.aead")
    with pytest.raises(StorageError, match="write-once: not overwritten"):
        store.put_bytes("backups/x/dump.zst.aead", b"replacement")
    # Behind our back too: S3 itself refuses to delete the locked version.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied"):
        store.client.delete_object(Bucket=store.bucket, Key="backups/x/dump.zst.aead", VersionId=head["VersionId"])
    assert store.get_bytes("backups/x/dump.zst.aead") == b"a" * 1000


def test_object_lock_on_multipart_uploads(cloud_location, monkeypatch):
    monkeypatch.setattr("apps.storage.backends.s3.PART_SIZE", 5 << 20)
    store = backends.for_location(cloud_location("s3", object_lock=True, immutability="compliance", retention_days=1))
    store.put_stream("big", (b"z" * (1 << 20) for _ in range(11)))
    head = store.client.head_object(Bucket=store.bucket, Key="big")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ContentLength"] == 11 << 20


def test_connection_test_reports_whether_immutability_is_enforced(cloud_location, api_as):
    locked = cloud_location("s3", name="locked", object_lock=True, immutability="governance", retention_days=7)
    plain = cloud_location("s3", name="plain", immutability="governance", retention_days=7)
    operator = api_as("operator")
    r = operator.post(f"{LOCATIONS}{locked.pk}/test/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True and body["immutability"]["enforced"] is True
    assert "refused" in body["immutability"]["detail"]
    r = operator.post(f"{LOCATIONS}{plain.pk}/test/")
    body = r.json()
    assert body["ok"] is False and body["immutability"]["enforced"] is False
    assert "no Object Lock configuration" in body["immutability"]["detail"]
    assert api_as("viewer").post(f"{LOCATIONS}{plain.pk}/test/").status_code == 403
    with pytest.raises(CommandError, match="immutability"):
        run("location_test", "plain")


@pytest.mark.parametrize("kind", ["azure", "gcs"])
def test_write_once_uploads_carry_the_retention(cloud_location, kind):
    """Azurite and the GCS emulator accept but do not enforce retention: check what was sent, and that the
    connection test says the store does not enforce it."""
    import requests

    location = cloud_location(kind, immutability="compliance", retention_days=10)
    store = backends.for_location(location)
    sent = []
    if kind == "azure":
        store.client_options = {"raw_request_hook": lambda r: sent.append(dict(r.http_request.headers))}
        store.put_bytes("obj", b"data")
        commit = sent[-1]
        assert commit["x-ms-immutability-policy-mode"] == "Locked"
        until = datetime.strptime(commit["x-ms-immutability-policy-until-date"], "%a, %d %b %Y %H:%M:%S GMT")
    else:
        session = requests.Session()
        session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
        store.http = session
        store.put_bytes("obj", b"data")
        start = [r for r in sent if "uploadType=resumable" in r.url and r.method == "POST"][0]
        assert "ifGenerationMatch=0" in start.url
        retention = json.loads(start.body)["retention"]
        assert retention["mode"] == "Locked"
        until = datetime.fromisoformat(retention["retainUntilTime"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert (until - datetime.now(UTC).replace(tzinfo=None)).days in (9, 10)
    report = __import__("apps.storage.probe", fromlist=["x"]).test_location(location)
    assert report["ok"] is False and report["immutability"]["enforced"] is False


def test_api_shows_references_never_secrets(api_as, tmp_path, monkeypatch):
    secret = "AKIAVERYSECRETVALUE0"
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"aws_access_key_id": secret, "aws_secret_access_key": "x" + secret}))
    admin = api_as("admin")
    r = admin.post(LOCATIONS, {"name": "aws", "kind": "s3", "bucket": "nobucket", "credentials_ref": secret},
                   format="json")
    assert r.status_code == 400 and secret not in r.content.decode()
    r = admin.post(LOCATIONS, {"name": "aws", "kind": "s3", "bucket": "nobucket", "endpoint_url": "http://127.0.0.1:9",
                               "credentials_ref": f"file:{creds}"}, format="json")
    assert r.status_code == 201, r.content
    pk = r.json()["id"]
    for body in (admin.get(LOCATIONS).content, admin.get(f"{LOCATIONS}{pk}/").content,
                 api_as("operator").post(f"{LOCATIONS}{pk}/test/").content):
        assert secret not in body.decode()
    report = api_as("operator").post(f"{LOCATIONS}{pk}/test/").json()
    assert report["ok"] is False and report["checks"][0]["name"] == "connect"
