"""Retention enforcement on the catalog and real storage: the 400-day synthetic history (tests/retention_history.py)
through the service, the command and the API; dry run and real run agree; legal hold and chains protect; a second
run changes nothing; one run at a time; deletions are confirmed; archival keeps a backup restorable;
lifecycle-stats equals the catalog."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from apps.backups import layout
from apps.backups.models import Backup, BackupArtifact, BackupStatus, Replica, ReplicaStatus, WalSegment
from apps.core.errors import ConflictError
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.databases import lsn as lsns
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.retention import locks, selectors, services
from apps.retention.jobs import EnforceRetentionJob
from apps.retention.models import RetentionLock, RetentionRule
from apps.storage import backends
from apps.storage.backends.local import LocalBackend
from apps.storage.models import StorageLocation
from apps.storage.services import ensure_default_location
from tests.helpers import V1
from tests.retention_history import NOW, SEGMENT, build, expected

pytestmark = pytest.mark.django_db


def put(root, key: str, data: bytes) -> None:
    """Thousands of tiny objects: written directly (the backend's put fsyncs each one)."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def load_history(items, wal, *, location) -> None:
    """The synthetic history as catalog rows, each backup with a manifest and an artifact in storage, each WAL
    segment with its object."""
    root = LocalBackend(location).root
    targets = {}
    for name in sorted({i.target for i in items}):
        targets[name] = DatabaseTarget.objects.create(name=name, host="127.0.0.1", port=5432, dbname=name, user="u")
    rows, artifacts, replicas = [], [], []
    for i in items:
        key = layout.manifest_key(i.target, i.id)
        rows.append(Backup(
            id=i.id, database_target=targets[i.target], kind=i.kind,
            format="basebackup" if i.physical else "custom", parent_id=i.parent_id, status=BackupStatus.SUCCEEDED,
            storage_location=location, started_at=i.taken_at - timedelta(minutes=10), finished_at=i.taken_at,
            size_raw=i.size, size_stored=i.size, lsn_start=lsns.to_text(i.lsn_start) if i.physical else "",
            lsn_stop=lsns.to_text(i.lsn_start + 8192) if i.physical else "", timeline=1 if i.physical else None,
            manifest_key=key, legal_hold=i.legal_hold,
        ))
        art_key = layout.artifact_key(i.target, i.id, "dump.zst")
        artifacts.append(BackupArtifact(backup_id=i.id, name="dump", key=art_key, size_raw=i.size, size_stored=4,
                                        sha256_raw="0" * 64, sha256_stored="0" * 64, compression="zstd",
                                        cipher="none"))
        replicas.append(Replica(backup_id=i.id, location=location, status=ReplicaStatus.PRESENT, bytes=i.size))
        put(root, key, b"{}")
        put(root, art_key, b"data")
    Backup.objects.bulk_create(rows)
    BackupArtifact.objects.bulk_create(artifacts)
    Replica.objects.bulk_create(replicas)
    segments = []
    for target, segs in wal.items():
        for name, lsn in segs:
            key = f"targets/{target}/wal/00000001/{name}.zst"
            put(root, key, b"wal")
            segments.append(WalSegment(database_target=targets[target], name=name, timeline=1,
                                       start_lsn=lsns.to_text(lsn), storage_location=location, key=key,
                                       size_raw=SEGMENT, size_stored=3, sha256_raw="0" * 64, sha256_stored="0" * 64,
                                       compression="zstd", cipher="none"))
    WalSegment.objects.bulk_create(segments)


def catalog_state() -> dict:
    return {
        "backups": dict(Backup.objects.values_list("pk", "status")),
        "archived": set(Backup.objects.exclude(archived_at=None).values_list("pk", flat=True)),
        "wal": set(WalSegment.objects.values_list("name", flat=True)),
        "replicas": dict(Replica.objects.values_list("backup_id", "status")),
    }


@pytest.fixture
def history(backup_root, settings, monkeypatch):
    location = ensure_default_location()
    # The full 400 days of several targets are in tests/test_retention_policy.py (plain data, fast); here,
    # through the catalog and storage, 400 days of daily logical fulls and 75 of physical fulls + incrementals.
    items, wal = build({"beta": "logical"}, days=400)
    alpha, alpha_wal = build({"alpha": "physical"}, days=75)
    items, wal = alpha + items, {**wal, **alpha_wal}
    old_incr = next(i for i in items if i.target == "alpha" and i.kind == "incremental"
                    and NOW - i.taken_at > timedelta(days=50) and i.taken_at.hour == 18)
    old_incr.legal_hold = True
    load_history(items, wal, location=location)
    # Archival needs an archive tier or location: local disk has no tiers, so a second local location.
    StorageLocation.objects.create(name="cold", kind="local", path=str(backup_root.parent / "cold"))
    settings.RETENTION_ARCHIVE_LOCATION = "cold"
    # Archival copies the artifacts (verified against their SHA-256): these are fakes, so the copy is stubbed to
    # record the replica; test_archival_copies_to_the_archive_location_and_stays_restorable does it for real.
    copied = []
    monkeypatch.setattr("apps.backups.replication.replicate",
                        lambda *, backup, location, ctx=None: copied.append(backup.pk) or Replica.objects.create(
                            backup=backup, location=location, status=ReplicaStatus.PRESENT, bytes=7))
    return items, wal, old_incr, location, copied


def test_400_days_dry_run_and_real_run_agree_with_the_expected_set_and_a_second_run_changes_nothing(
        history, backup_root):
    items, wal, old_incr, location, copied = history
    keep, archive_ids, delete, wal_delete = expected(items, wal)

    preview = services.preview(now=NOW)
    by_action = {a: {d["backup_id"] for d in preview["decisions"] if d["action"] == a}
                 for a in ("keep", "archive", "delete")}
    assert by_action == {"keep": keep, "archive": archive_ids, "delete": delete}
    assert preview["wal_deletions"] == wal_delete and wal_delete["alpha"]
    assert len(delete) > 600 and archive_ids and old_incr.id in keep
    decision = {d["backup_id"]: d for d in preview["decisions"]}
    assert decision[old_incr.id]["reason"] == "legal hold" and decision[old_incr.id]["rule"] == "default"
    assert decision[old_incr.parent_id]["reason"] == f"needed by kept incremental {old_incr.id}"
    assert catalog_state()["backups"] == {i.id: "succeeded" for i in items}  # a dry run changes nothing

    report = services.enforce(actor=SYSTEM, now=NOW)
    assert report["failed"] == []
    assert set(report["deleted"]) == delete and set(report["archived"]) == archive_ids == set(copied)
    state = catalog_state()
    assert {pk for pk, st in state["backups"].items() if st == "deleted"} == delete
    assert {pk for pk, st in state["backups"].items() if st == "succeeded"} == keep | archive_ids
    assert state["archived"] == archive_ids
    assert state["wal"] == {n for n, _ in wal["alpha"]} - set(wal_delete["alpha"])
    # Gone from storage: manifests, artifacts and WAL objects of what was deleted; the rest is still there.
    store = LocalBackend(location)
    for i in items:
        assert (store.stat(layout.manifest_key(i.target, i.id)) is None) == (i.id in delete), i.id
    assert store.stat(f"targets/alpha/wal/00000001/{wal_delete['alpha'][0]}.zst") is None
    assert store.stat(f"targets/alpha/wal/00000001/{wal['alpha'][-1][0]}.zst") is not None
    # One audit event per backup acted on, naming the rule and the reason.
    events = AuditEvent.objects.filter(action="retention.backup.deleted")
    assert events.count() == len(delete) and set(events.values_list("object_id", flat=True)) == delete
    assert events.first().details["rule"] == "default" and events.first().details["reason"]
    assert AuditEvent.objects.filter(action="retention.backup.archived").count() == len(archive_ids)
    assert AuditEvent.objects.filter(action="retention.wal.deleted").get().details["files"] == len(wal_delete["alpha"])

    audit_count = AuditEvent.objects.count()
    again = services.enforce(actor=SYSTEM, now=NOW)
    assert again["deleted"] == [] and again["archived"] == [] and again["wal_deleted"] == {}
    assert again["counts"]["delete"] == again["counts"]["archive"] == 0
    assert catalog_state() == state and AuditEvent.objects.count() == audit_count


def test_one_enforcement_at_a_time_and_a_dead_holder_is_displaced(history):
    identity = locks.acquire(job_id="")
    try:
        with pytest.raises(ConflictError, match="already being enforced"):
            services.enforce(actor=SYSTEM, now=NOW)
        job = EnforceRetentionJob.run_now(actor=SYSTEM)  # the scheduled run meanwhile: a no-op, not a failure
        assert job.status == "succeeded" and "already being enforced" in job.result["skipped"]
        assert Backup.objects.filter(status="deleted").count() == 0
    finally:
        locks.release(identity)
    # A holder whose process is gone (same host, no such pid) does not block the next run.
    host = identity.split(":")[0]
    RetentionLock.objects.filter(pk=1).update(holder=f"{host}:999999999:1:{identity.split(':')[3]}",
                                              heartbeat_at=timezone.now())
    locks.release(locks.acquire())


@pytest.fixture
def sticky_kind():
    """A storage kind whose delete answers but removes nothing (as a store holding a lock silently would)."""

    class StickyBackend(LocalBackend):
        kind = "sticky"

        def delete(self, key):
            return None

    backends.register(StickyBackend)
    yield "sticky"
    backends._REGISTRY.pop("sticky", None)


def test_a_replica_whose_deletion_is_not_confirmed_keeps_its_backup(history, sticky_kind, backup_root):
    items, wal, old_incr, location, _ = history
    sticky = StorageLocation.objects.create(name="sticky", kind="sticky", path=str(backup_root.parent / "sticky"))
    victim = next(i for i in items if i.target == "beta" and NOW - i.taken_at > timedelta(days=40)
                  and i.id in expected(items, wal)[2])
    backup = Backup.objects.get(pk=victim.id)
    store = backends.for_location(sticky)
    store.put_bytes(backup.manifest_key, b"{}")
    for key in backup.artifacts.values_list("key", flat=True):
        store.put_bytes(key, b"data")
    Replica.objects.create(backup=backup, location=sticky, status=ReplicaStatus.PRESENT)
    report = services.enforce(actor=SYSTEM, target=backup.database_target, now=NOW)
    failed = {f["backup_id"]: f["error"] for f in report["failed"]}
    assert victim.id in failed and "still in sticky" in failed[victim.id]
    backup.refresh_from_db()
    assert backup.status == "succeeded" and victim.id not in report["deleted"]
    assert set(backup.replicas.values_list("status", flat=True)) == {"present"}
    assert AuditEvent.objects.filter(action="backup.delete.failed", object_id=victim.id).exists()
    assert not AuditEvent.objects.filter(action="retention.backup.deleted", object_id=victim.id).exists()
    # The job says so: failed, with the details kept.
    job = EnforceRetentionJob.run_now(actor=SYSTEM, target=backup.database_target)
    assert job.status == "failed" and job.result["failed"][0]["backup_id"] == victim.id


def test_command_dry_run_lists_decisions_and_real_run_enforces(history):
    out = StringIO()
    call_command("enforce_retention", "--dry-run", "--target", "beta", stdout=out)
    preview = json.loads(out.getvalue())
    assert preview["dry_run"] is True and {d["target"] for d in preview["decisions"]} == {"beta"}
    assert all(d["rule"] == "default" and d["reason"] and d["action"] in ("keep", "archive", "delete")
               for d in preview["decisions"])
    assert Backup.objects.filter(status="deleted").count() == 0
    with pytest.raises(CommandError, match="No database target named 'nobody'"):
        call_command("enforce_retention", "--target", "nobody")
    out = StringIO()
    call_command("enforce_retention", "--target", "beta", stdout=out)
    done = json.loads(out.getvalue())
    assert done["status"] == "succeeded" and done["deleted"]
    assert set(Backup.objects.filter(status="deleted").values_list("database_target__name", flat=True)) == {"beta"}
    assert Job.objects.get(pk=done["job_id"]).type == "retention.enforce"


def direct_stats(now) -> dict:
    """lifecycle-stats recomputed straight from the catalog, another way."""
    qs = Backup.objects.exclude(database_target=None)
    by_status = {}
    for b in qs:
        s = by_status.setdefault(b.status, {"count": 0, "bytes": 0})
        s["count"] += 1
        s["bytes"] += b.size_stored or 0
    tiers = {}
    for r in Replica.objects.filter(status="present", backup__status="succeeded").select_related("location"):
        t = tiers.setdefault((r.location.name, r.storage_class or "default"), {"count": 0, "bytes": 0})
        t["count"] += 1
        t["bytes"] += r.bytes
    bands = {"0-7d": 0, "7-30d": 0, "30-90d": 0, "90-365d": 0, "1-7y": 0, ">7y": 0}
    for b in qs.filter(status="succeeded"):
        days = (now - b.finished_at).days
        label = ("0-7d" if days < 7 else "7-30d" if days < 30 else "30-90d" if days < 90 else
                 "90-365d" if days < 365 else "1-7y" if days < 2557 else ">7y")
        bands[label] += 1
    per_target = {row["database_target__name"]: row for row in qs.filter(status="succeeded").values(
        "database_target__name").annotate(n=Count("pk"), oldest=Min("finished_at"), newest=Max("finished_at"),
                                          b=Sum("size_stored"))}
    return {"by_status": by_status, "tiers": tiers, "bands": bands, "targets": per_target}


def test_lifecycle_stats_equal_the_catalog_and_the_next_run(history, api_as):
    services.enforce(actor=SYSTEM, target=DatabaseTarget.objects.get(name="beta"), now=NOW)  # a mixed catalog
    some = Replica.objects.filter(backup__status="succeeded", location__name="local").order_by("pk")[:5]
    Replica.objects.filter(pk__in=[r.pk for r in some]).update(storage_class="STANDARD_IA")
    now = timezone.now()
    stats = selectors.lifecycle_stats(now=now)
    direct = direct_stats(now)
    assert stats["by_status"] == direct["by_status"] and set(direct["by_status"]) == {"succeeded", "deleted"}
    assert {(t["location"], t["tier"]): {"count": t["count"], "bytes": t["bytes"]} for t in stats["by_tier"]} \
        == direct["tiers"]
    assert ("cold", "default") in direct["tiers"] and ("local", "STANDARD_IA") in direct["tiers"]
    assert {b["band"]: b["count"] for b in stats["by_age"]} == direct["bands"]
    for row in stats["targets"]:
        d = direct["targets"][row["target"]]
        assert (row["count"], row["oldest_at"], row["newest_at"], row["bytes"]) == (d["n"], d["oldest"], d["newest"],
                                                                                   d["b"])
    plan = services.preview(now=now)
    for action in ("delete", "archive"):
        ids = {x["backup_id"] for x in plan["decisions"] if x["action"] == action}
        assert set(stats["next_run"][action]["backup_ids"]) == ids and stats["next_run"][action]["count"] == len(ids)
        assert stats["next_run"][action]["bytes"] == sum(Backup.objects.get(pk=i).size_stored for i in ids)
    assert stats["wal"]["count"] == WalSegment.objects.count()
    # The API serves the same figures to a viewer.
    r = api_as("viewer").get(f"{V1}/retention/lifecycle-stats")
    assert r.status_code == 200, r.content
    body = r.json()
    assert {k: v["count"] for k, v in body["by_status"].items()} == {k: v["count"] for k, v in direct["by_status"].items()}
    assert {b["band"]: b["count"] for b in body["by_age"]} == direct["bands"]


def test_enforce_policies_api_dry_run_inline_real_run_admin_only(history, api_as):
    url = f"{V1}/retention/enforce-policies"
    assert api_as("viewer").post(url, {"dry_run": True}, format="json").status_code == 403
    operator = api_as("operator")
    r = operator.post(url, {"dry_run": True, "target": "beta"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["dry_run"] is True and body["counts"]["delete"] > 0
    assert {d["target"] for d in body["decisions"]} == {"beta"}
    r = operator.post(url, {"dry_run": False}, format="json")
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert operator.post(url, {"dry_run": True, "target": "nobody"}, format="json").status_code == 400
    r = operator.post(url, {}, format="json")
    assert r.status_code == 400 and "dry_run" in r.json()  # never a deletion by default
    assert operator.post(url, {"dry_run": "perhaps"}, format="json").status_code == 400
    assert Backup.objects.filter(status="deleted").count() == 0
    r = api_as("admin").post(url, {"dry_run": False, "target": "beta"}, format="json")
    assert r.status_code == 202, r.content
    job = api_as("admin").get(r.json()["links"]["job"]).json()
    assert job["status"] == "succeeded" and job["type"] == "retention.enforce"
    assert len(job["result"]["deleted"]) == body["counts"]["delete"]
    assert AuditEvent.objects.filter(action="retention.enforce.requested", via="api").count() == 1


def test_rules_crud_through_the_api_and_targets_use_their_own_rule(history, api_as):
    url = f"{V1}/retention/rules/"
    r = api_as("viewer").get(url)
    assert r.status_code == 200 and [x["name"] for x in r.json()["results"]] == ["default"]
    default = r.json()["results"][0]
    assert (default["daily_days"], default["incremental_days"], default["weekly_weeks"], default["monthly_months"],
            default["monthly_then"], default["archive_years"], default["keep_last_fulls"],
            default["pitr_window_days"], default["target"]) == (30, 7, 12, 12, "archive", 7, 3, 30, None)
    assert api_as("operator").post(url, {"name": "beta-long", "target": "beta"}, format="json").status_code == 403
    admin = api_as("admin")
    r = admin.post(url, {"name": "beta-long", "target": "beta", "daily_days": 400}, format="json")
    assert r.status_code == 201, r.content
    rule_id = r.json()["id"]
    preview = services.preview(target=DatabaseTarget.objects.get(name="beta"), now=NOW)
    assert preview["counts"]["delete"] == 0 and {d["rule"] for d in preview["decisions"]} == {"beta-long"}
    assert admin.post(url, {"name": "again", "target": "beta"}, format="json").status_code in (400, 409)
    assert admin.post(url, {"name": "x", "target": "nobody"}, format="json").status_code == 400
    assert admin.post(url, {"name": "neg", "daily_days": -1}, format="json").status_code == 400
    r = admin.patch(f"{url}{rule_id}/", {"enabled": False}, format="json")
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert admin.delete(f"{url}{rule_id}/").status_code == 204
    r = admin.delete(f"{url}{default['id']}/")
    assert r.status_code == 400 and "default" in r.json()["detail"]
    actions = set(AuditEvent.objects.filter(object_type="retention.retentionrule").values_list("action", flat=True))
    assert actions == {"retention.rule.created", "retention.rule.changed", "retention.rule.deleted"}
    assert RetentionRule.objects.count() == 1


def test_schedules_hold_retention_at_01_and_verification_at_04():
    from apps.jobs.schedules import SCHEDULES

    by_func = {func: when for _name, func, when in SCHEDULES}
    assert by_func["apps.retention.tasks.enforce_retention"] == "0 1 * * *"
    assert by_func["apps.verification.tasks.verify_backups"] == "0 4 * * *"


def test_archival_copies_to_the_archive_location_and_stays_restorable(target, backup_root, settings, fresh_db):
    """A real backup, 13 months old and the first of its month: archived by a verified copy to the archive
    location (local disk has no tiers), still restorable; a second run does not copy it again."""
    from apps.backups.jobs import DatabaseBackupJob

    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    old = timezone.now() - timedelta(days=400)
    Backup.objects.filter(pk=backup.pk).update(finished_at=old.replace(day=1))
    cold = StorageLocation.objects.create(name="cold", kind="local", path=str(backup_root.parent / "cold"))
    preview = services.preview()
    assert [(d["action"], d["reason"]) for d in preview["decisions"]] == [("archive", "archive (7 y)")]
    settings.RETENTION_ARCHIVE_LOCATION = ""
    report = services.enforce(actor=SYSTEM)
    assert report["archived"] == [] and "RETENTION_ARCHIVE_LOCATION" in report["failed"][0]["error"]
    settings.RETENTION_ARCHIVE_LOCATION = "cold"
    report = services.enforce(actor=SYSTEM)
    assert report["archived"] == [backup.pk] and report["failed"] == []
    backup.refresh_from_db()
    assert backup.archived_at is not None and backup.status == "succeeded"
    copy = Replica.objects.get(backup=backup, location=cold)
    assert copy.status == "present"
    assert LocalBackend(cold).stat(backup.artifacts.get().key).size == backup.artifacts.get().size_stored
    assert services.enforce(actor=SYSTEM)["archived"] == []  # kept as an archive now
    assert [d["reason"] for d in services.preview()["decisions"]] == ["archive (7 y)"]
    # Restorable from the archive copy alone.
    for path in LocalBackend(backup.storage_location).root.rglob("*"):
        if path.is_file():
            path.unlink()
    out = StringIO()
    dest = fresh_db()
    call_command("db_restore", backup.pk, "--dsn", f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}",
                 stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["status"] == "succeeded"


def test_console_retention_page_previews_and_an_admin_confirms(history, admin_client):
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.helpers import make_user

    page = admin_client.get("/retention/?target=beta")
    assert page.status_code == 200
    html = page.content.decode()
    preview = services.preview(target=DatabaseTarget.objects.get(name="beta"))
    assert f'id="count-delete">{preview["counts"]["delete"]}<' in html
    first = next(d for d in preview["decisions"] if d["action"] == "delete")
    assert first["backup_id"] in html and first["reason"] in html and 'id="enforce"' in html
    assert 'href="/retention/"' in admin_client.get("/").content.decode()  # in the nav

    # An operator sees the preview, cannot enforce.
    make_user("olga", "operator")
    operator = Client()
    operator.force_login(User.objects.get(username="olga"))
    html = operator.get("/retention/").content.decode()
    assert 'id="enforce"' not in html and "needs the admin role" in html
    fingerprint = f'{preview["counts"]["delete"]}-{preview["counts"]["archive"]}-0'
    operator.post("/retention/", {"target": "beta", "confirm": "yes", "expected": fingerprint})
    assert Backup.objects.filter(status="deleted").count() == 0
    # An admin must confirm, on the plan that was shown.
    admin_client.post("/retention/", {"target": "beta", "expected": fingerprint})
    admin_client.post("/retention/", {"target": "beta", "confirm": "yes", "expected": "0-0-0"})
    assert Backup.objects.filter(status="deleted").count() == 0
    r = admin_client.post("/retention/", {"target": "beta", "confirm": "yes", "expected": fingerprint})
    assert r.status_code == 302 and "/jobs/" in r["Location"]
    job = Job.objects.get(type="retention.enforce")
    assert job.status == "succeeded" and len(job.result["deleted"]) == preview["counts"]["delete"]
    assert set(Backup.objects.filter(status="deleted").values_list("database_target__name", flat=True)) == {"beta"}
