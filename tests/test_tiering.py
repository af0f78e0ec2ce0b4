"""Tiering by age: rules per location (defaults per kind), applied by enforce_tiers and read back from the
emulators (S3 storage class, Azure access tier; GCS: the rewrite request, as the emulators ignore it); an
archived artifact's restore says it needs rehydration. Used bytes per location in the API."""
import json
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from apps.backups import replication
from apps.backups.models import Backup, Replica
from apps.storage import backends
from apps.storage.backends.gcs import GcsBackend
from apps.storage.models import StorageLocation
from tests.helpers import V1

pytestmark = pytest.mark.django_db


def cli(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture
def backup(target):
    return Backup.objects.get(pk=cli("db_backup", "sample")["id"])


def age(backup, days: int) -> None:
    Backup.objects.filter(pk=backup.pk).update(finished_at=timezone.now() - timedelta(days=days))


def test_tiers_move_by_age_and_are_read_back(backup, cloud_location, fresh_db, monkeypatch):
    s3 = cloud_location("s3")
    azure = cloud_location("azure")
    gcs = cloud_location("gcs", tier_rules=[{"after_days": 10, "tier": "nearline"}])
    for location in (s3, azure, gcs):
        replication.replicate(backup=backup, location=location)
    artifact = backup.artifacts.get()
    sent = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    monkeypatch.setattr(GcsBackend, "http", session)

    age(backup, 5)
    assert cli("enforce_tiers")["moved"] == []
    age(backup, 40)
    plan = cli("enforce_tiers", "--dry-run")
    assert sorted((m["location"], m["to"]) for m in plan["moved"]) == sorted(
        [(s3.name, "STANDARD_IA"), (azure.name, "Cool"), (gcs.name, "NEARLINE")])
    assert backends.for_location(s3).stat(artifact.key).tier == "STANDARD"  # a dry run changes nothing
    cli("enforce_tiers")
    assert backends.for_location(s3).stat(artifact.key).tier == "STANDARD_IA"
    assert backends.for_location(azure).stat(artifact.key).tier == "Cool"
    assert backends.for_location(azure).stat(backup.manifest_key).tier == "Hot"  # manifests stay readable
    rewrites = [r for r in sent if "/rewriteTo/" in r.url]
    assert len(rewrites) == 1 and json.loads(rewrites[0].body)["storageClass"] == "NEARLINE"
    assert artifact.key.replace("/", "%2F") in rewrites[0].url or artifact.key in rewrites[0].url
    tiers = dict(Replica.objects.filter(backup=backup).values_list("location__name", "storage_class"))
    assert tiers[s3.name] == "STANDARD_IA" and tiers[azure.name] == "Cool" and tiers[gcs.name] == "NEARLINE"
    assert Replica.objects.get(backup=backup, location=s3).tier_changed_at is not None

    age(backup, 100)
    moved = cli("enforce_tiers", "--location", s3.name)["moved"]
    assert [(m["from"], m["to"]) for m in moved] == [("STANDARD_IA", "GLACIER")]
    assert backends.for_location(s3).stat(artifact.key).tier == "GLACIER"
    assert cli("enforce_tiers", "--location", s3.name)["moved"] == []  # never moved twice, never warmer

    # The primary lost: the remaining copies are archived (S3) or readable (Azure Cool, GCS).
    backends.for_location(backup.storage_location).delete(artifact.key)
    Replica.objects.filter(backup=backup).exclude(location=s3).delete()
    dest = fresh_db(create=False)
    with pytest.raises(CommandError, match="rehydrat"):
        cli("db_restore", backup.pk, "--dsn", f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}",
            "--create")


def test_tier_rules_are_checked(api_as):
    admin = api_as("admin")
    base = {"kind": "s3", "bucket": "bkt"}
    for rules, message in (([{"after_days": 0, "tier": "GLACIER"}], "at least 1"),
                           ([{"after_days": 30, "tier": "Cool"}], "Unknown s3 tier"),
                           ({"after_days": 30}, "must be a list")):
        r = admin.post(f"{V1}/storage/locations/", {"name": "x", **base, "tier_rules": rules}, format="json")
        assert r.status_code == 400 and message in r.content.decode(), r.content
    r = admin.post(f"{V1}/storage/locations/", {"name": "x", **base}, format="json")
    assert r.json()["effective_tier_rules"][-1] == {"after_days": 90, "tier": "GLACIER"}
    r = admin.patch(f"{V1}/storage/locations/{r.json()['id']}/", {"tier_rules": ["off"]}, format="json")
    assert r.status_code == 200 and r.json()["effective_tier_rules"] == []


def test_used_bytes_follow_backups_copies_and_deletions(backup, cloud_location, api_as):
    primary = backup.storage_location
    replica_loc = cloud_location("s3", capacity_bytes=10 << 20)
    replica = replication.replicate(backup=backup, location=replica_loc)
    primary.refresh_from_db()
    assert primary.used_bytes == backup.size_stored  # the primary's replica row counts artifacts only
    body = api_as("viewer").get(f"{V1}/storage/locations/{replica_loc.pk}/").json()
    assert body["used_bytes"] == replica.bytes > backup.size_stored and body["used_bytes_at"]
    assert body["used_fraction"] == round(replica.bytes / (10 << 20), 4)
    from apps.backups.deletion import delete_backup
    from apps.core.services import SYSTEM

    delete_backup(backup=backup, actor=SYSTEM)
    assert StorageLocation.objects.get(pk=replica_loc.pk).used_bytes == 0
    assert not list(backends.for_location(replica_loc).list())
