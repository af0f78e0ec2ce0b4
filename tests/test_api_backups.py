"""Backups, restores, verification, jobs and statistics through the REST API, on a real PostgreSQL cluster."""
import pytest
from rest_framework.pagination import PageNumberPagination
from rest_framework.test import APIClient

from apps.backups import locks
from apps.backups import services as backup_services
from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.databases import catalog
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.verification.models import VerificationRun

from tests.helpers import V1, table_contents

pytestmark = pytest.mark.django_db

UNKNOWN_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def backup_via_api(client: APIClient, target: str = "sample", fmt: str | None = None) -> dict:
    body = {"target": target} | ({"format": fmt} if fmt else {})
    r = client.post(f"{V1}/database/backup/full", body, format="json")
    assert r.status_code == 202, r.content
    return r.json()


def get_job(client: APIClient, link: str) -> dict:
    r = client.get(link)
    assert r.status_code == 200, r.content
    return r.json()


def test_full_backup_job_and_detail(api_as, target):
    operator = api_as("operator")
    accepted = backup_via_api(operator)
    assert set(accepted) == {"job_id", "backup_id", "status", "links"}
    assert accepted["links"] == {"job": f"/v1/jobs/{accepted['job_id']}",
                                 "backup": f"{V1}/database/backups/{accepted['backup_id']}"}

    job = get_job(operator, accepted["links"]["job"])  # Q_SYNC: the job ran inline
    assert job["id"] == accepted["job_id"]
    assert job["type"] == "backup.database"
    assert job["status"] == "succeeded", job["error"]
    assert job["is_finished"] is True
    assert job["percent"] == 100.0 and job["progress_done"] == job["progress_total"] > 0
    assert "artifact committed" in job["log"]
    assert job["args"] == {"backup_id": accepted["backup_id"]}
    assert job["requested_by"] == "operator-user" and job["via"] == "api"
    assert job["started_at"] and job["finished_at"]

    r = operator.get(accepted["links"]["backup"])
    assert r.status_code == 200
    backup = r.json()
    assert backup["status"] == "succeeded"
    assert backup["target"] == "sample" and backup["format"] == "custom" and backup["kind"] == "full"
    assert len(backup["sha256"]) == 64
    assert backup["job"] == accepted["job_id"]
    assert backup["row_counts"]["public.properties"] == 2000
    assert backup["row_counts"]["billing.payments"] == 6000
    [artifact] = backup["artifacts"]
    assert artifact["sha256_stored"] == backup["sha256"] and artifact["cipher"] != "none"
    [replica] = backup["replicas"]
    assert replica["status"] == "present" and replica["bytes"] == backup["size_stored"]

    event = AuditEvent.objects.get(action="backup.requested", object_id=accepted["backup_id"])
    assert event.via == "api" and event.actor_name == "operator-user" and event.remote_addr == "127.0.0.1"


def test_plain_format_backup(api_as, target):
    accepted = backup_via_api(api_as("operator"), fmt="plain")
    backup = Backup.objects.get(pk=accepted["backup_id"])
    assert backup.status == BackupStatus.SUCCEEDED and backup.format == "plain"


def test_backup_bad_input_is_400(api_as, target):
    operator = api_as("operator")
    url = f"{V1}/database/backup/full"
    r = operator.post(url, {"target": "no-such-target"}, format="json")
    assert r.status_code == 400
    assert "no-such-target" in r.json()["target"][0]
    r = operator.post(url, {"target": "sample", "format": "zip"}, format="json")
    assert r.status_code == 400 and "format" in r.json()
    r = operator.post(url, {"target": "sample", "format": "basebackup"}, format="json")
    assert r.status_code == 400 and "format" in r.json()
    r = operator.post(url, {}, format="json")
    assert r.status_code == 400 and "target" in r.json()
    r = operator.post(url, '{"target": "sample"', content_type="application/json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = operator.post(url, "[1, 2]", content_type="application/json")
    assert r.status_code == 400
    assert not Backup.objects.exists()

    DatabaseTarget.objects.filter(pk=target.pk).update(enabled=False)
    r = operator.post(url, {"target": "sample"}, format="json")
    assert r.status_code == 400 and "disabled" in r.json()["detail"]


def test_backup_while_one_runs_is_409(api_as, target):
    locks.acquire(target=target, backup_id="01HRUNNINGBACKUP0000000000")
    try:
        r = api_as("operator").post(f"{V1}/database/backup/full", {"target": "sample"}, format="json")
    finally:
        locks.release(target=target, backup_id="01HRUNNINGBACKUP0000000000")
    assert r.status_code == 409
    assert "already running" in r.json()["detail"]
    assert not Backup.objects.exists()


def test_unknown_ids_are_404(api_as, target):
    admin = api_as("admin")
    for r in (
        admin.get(f"{V1}/database/backups/{UNKNOWN_ID}"),
        admin.get(f"/v1/jobs/{UNKNOWN_ID}"),
        admin.post(f"{V1}/database/backups/{UNKNOWN_ID}/restore", {"target": "sample", "dbname": "x"}, format="json"),
        admin.post(f"{V1}/verification/verify/{UNKNOWN_ID}", {}, format="json"),
        admin.get(f"{V1}/database/targets/999999/"),
        admin.get(f"{V1}/database/targets/not-a-number/"),
        admin.get(f"{V1}/storage/locations/999999/"),
    ):
        assert r.status_code == 404, r.request
        assert r["Content-Type"].startswith("application/json")
        assert r.json()["detail"]


def _cheap_targets() -> list[DatabaseTarget]:
    """Targets that are never connected to: enough to create pending backups for list tests."""
    return [save_target(target=DatabaseTarget(name=name, host="db.invalid", dbname=name, user="u"), actor=SYSTEM)
            for name in ("alpha", "beta")]


def test_backup_list_pagination_and_filters(api_as, monkeypatch):
    alpha, beta = _cheap_targets()
    # A target accepts one queued backup at a time, so each is settled before the next is asked for.
    for fmt in ("custom", "plain", "custom"):
        made = DatabaseBackupJob.prepare(target=alpha, fmt=fmt, actor=SYSTEM)
        Backup.objects.filter(pk=made.args["backup_id"]).update(status=BackupStatus.SUCCEEDED)
    done = DatabaseBackupJob.prepare(target=beta, fmt="custom", actor=SYSTEM)
    Backup.objects.filter(pk=done.args["backup_id"]).update(status=BackupStatus.FAILED)
    DatabaseBackupJob.prepare(target=beta, fmt="schema", actor=SYSTEM)
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    viewer = api_as("viewer")
    url = f"{V1}/database/backups"

    first = viewer.get(url).json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["previous"] is None
    second = viewer.get(first["next"]).json()
    third = viewer.get(second["next"]).json()
    assert third["next"] is None and len(third["results"]) == 1
    ids = [b["id"] for page in (first, second, third) for b in page["results"]]
    assert len(set(ids)) == 5
    assert ids == list(Backup.objects.order_by("-created_at").values_list("pk", flat=True))
    assert viewer.get(url, {"page": 9}).status_code == 404

    def count(**query) -> int:
        r = viewer.get(url, query)
        assert r.status_code == 200, r.content
        return r.json()["count"]

    assert count(target="alpha") == 3
    assert count(target="beta") == 2
    assert count(target="nobody") == 0
    assert count(status="pending") == 1
    assert count(status="succeeded") == 3
    assert count(status="failed", target="beta") == 1
    assert count(kind="full") == 5
    assert count(kind="incremental") == 0
    assert count(format="plain") == 1
    assert count(format="custom", target="alpha") == 2
    for bad in ({"status": "bogus"}, {"kind": "nope"}, {"format": "zip"}):
        r = viewer.get(url, bad)
        assert r.status_code == 400 and list(bad)[0] in r.json()

    jobs = viewer.get("/v1/jobs", {"type": "backup.database"}).json()
    assert jobs["count"] == 5
    assert viewer.get("/v1/jobs", {"status": "bogus"}).status_code == 400


def test_statistics(api_as, target):
    operator = api_as("operator")
    backup_via_api(operator)
    r = operator.get(f"{V1}/database/statistics")
    assert r.status_code == 200
    stats = r.json()
    assert stats["successful_backups"] == 1 and stats["total_backups"] == 1
    assert stats["by_status"]["succeeded"] == 1 and stats["success_rate"] == 1.0
    assert stats["stored_bytes"] == Backup.objects.get().size_stored
    assert stats["window_days"] == 30
    assert [t["target"] for t in stats["targets"]] == ["sample"]
    assert operator.get(f"{V1}/database/statistics", {"days": 7}).json()["window_days"] == 7
    assert operator.get(f"{V1}/database/statistics", {"days": 0}).status_code == 400
    assert operator.get(f"{V1}/database/statistics", {"days": "x"}).status_code == 400


def test_restore_into_new_database(api_as, target, source_db, fresh_db):
    backup_id = backup_via_api(api_as("operator"))["backup_id"]
    dest = fresh_db(create=False, prefix="apirestore")
    admin = api_as("admin")
    r = admin.post(f"{V1}/database/backups/{backup_id}/restore",
                   {"target": "sample", "dbname": dest.dbname, "create": True}, format="json")
    assert r.status_code == 202, r.content
    accepted = r.json()
    assert accepted["backup_id"] == backup_id
    job = get_job(admin, accepted["links"]["job"])
    assert job["type"] == "restore.database"
    assert job["status"] == "succeeded", job["error"]
    assert job["args"]["destination"] == f"postgresql://{target.user}@{target.host}:{target.port}/{dest.dbname}"
    assert "password" not in str(job["args"]).lower()
    assert job["result"]["tables_compared"] == 4

    backup = Backup.objects.get(pk=backup_id)
    with catalog.connect(dest) as c:
        restored = catalog.row_counts(c.cursor())
    assert restored == backup.row_counts
    for table in ("public.properties", "public.leases", "billing.payments"):
        assert table_contents(dest, table) == table_contents(source_db, table)

    event = AuditEvent.objects.get(action="backup.restore.requested", object_id=backup_id)
    assert event.via == "api" and event.actor_name == "admin-user"

    # The same again without create: the database now exists and is not empty, so the job fails cleanly.
    r = admin.post(f"{V1}/database/backups/{backup_id}/restore",
                   {"target": "sample", "dbname": dest.dbname}, format="json")
    assert r.status_code == 202
    job = get_job(admin, r.json()["links"]["job"])
    assert job["status"] == "failed" and "not empty" in job["error"]


def test_restore_one_table(api_as, target, source_db, fresh_db):
    backup_id = backup_via_api(api_as("operator"))["backup_id"]
    dest = fresh_db(create=True, prefix="apitable")
    admin = api_as("admin")
    r = admin.post(f"{V1}/database/backups/{backup_id}/restore",
                   {"target": "sample", "dbname": dest.dbname, "table": "public.tenants"}, format="json")
    assert r.status_code == 202, r.content
    job = get_job(admin, r.json()["links"]["job"])
    assert job["status"] == "succeeded", job["error"]
    with catalog.connect(dest) as c:
        assert catalog.row_counts(c.cursor()) == {"public.tenants": 2000}
    assert table_contents(dest, "public.tenants") == table_contents(source_db, "public.tenants")


def test_restore_bad_input(api_as, target):
    plain_id = backup_via_api(api_as("operator"), fmt="plain")["backup_id"]
    admin = api_as("admin")
    url = f"{V1}/database/backups/{plain_id}/restore"
    r = admin.post(url, {"target": "nope", "dbname": "x"}, format="json")
    assert r.status_code == 400 and "target" in r.json()
    r = admin.post(url, {"target": "sample"}, format="json")
    assert r.status_code == 400 and "dbname" in r.json()
    r = admin.post(url, {"target": "sample", "dbname": "x" * 64}, format="json")
    assert r.status_code == 400 and "dbname" in r.json()
    r = admin.post(url, {"target": "sample", "dbname": "x", "create": "maybe"}, format="json")
    assert r.status_code == 400 and "create" in r.json()
    r = admin.post(url, {"target": "sample", "dbname": "x", "table": "public.tenants"}, format="json")
    assert r.status_code == 400 and "custom format" in r.json()["detail"]

    pending = backup_services.request_database_backup(target=target, actor=SYSTEM)
    r = admin.post(f"{V1}/database/backups/{pending.pk}/restore", {"target": "sample", "dbname": "x"}, format="json")
    assert r.status_code == 400 and "pending" in r.json()["detail"]
    assert not AuditEvent.objects.filter(action="backup.restore.requested").exists()


def test_verify_endpoints(api_as, target, backup_root):
    operator = api_as("operator")
    first = backup_via_api(operator)["backup_id"]
    second = backup_via_api(operator, fmt="plain")["backup_id"]

    r = operator.post(f"{V1}/verification/verify/{first}", {"level": "checksum"}, format="json")
    assert r.status_code == 202, r.content
    accepted = r.json()
    assert accepted["backups"] == 1
    job = get_job(operator, accepted["links"]["job"])
    assert job["type"] == "verify.backups" and job["status"] == "succeeded", job["error"]
    assert job["result"]["runs"] == 1 and job["result"]["failed"] == []

    runs = operator.get(f"{V1}/verification/runs", {"backup": first}).json()
    assert runs["count"] == 1
    assert runs["results"][0]["result"] == "passed" and runs["results"][0]["level"] == "checksum"
    assert runs["results"][0]["bytes_read"] == Backup.objects.get(pk=first).size_stored
    assert operator.get(f"{V1}/database/backups/{first}").json()["replicas"][0]["checksum_verified_at"]

    r = operator.post(f"{V1}/verification/verify-all", {"level": "exists"}, format="json")
    assert r.status_code == 202
    assert r.json()["backups"] == 2
    job = get_job(operator, r.json()["links"]["job"])
    assert job["status"] == "succeeded" and job["result"]["runs"] == 2
    assert VerificationRun.objects.filter(level="exists", result="passed").count() == 2
    assert AuditEvent.objects.filter(action="backup.verify.requested", via="api").count() == 2

    # A flipped byte: the checksum level finds it and the job fails.
    artifact = Backup.objects.get(pk=second).artifacts.get()
    path = backup_root / artifact.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    r = operator.post(f"{V1}/verification/verify-all", {"target": "sample"}, format="json")
    assert r.status_code == 202
    job = get_job(operator, r.json()["links"]["job"])
    assert job["status"] == "failed" and "SHA-256" in job["error"]
    runs = operator.get(f"{V1}/verification/runs", {"backup": second, "result": "failed"}).json()
    assert runs["count"] == 1 and "SHA-256" in runs["results"][0]["error"]

    # Bad input.
    r = operator.post(f"{V1}/verification/verify/{first}", {"level": "restore-everything"}, format="json")
    assert r.status_code == 400 and "level" in r.json()
    r = operator.post(f"{V1}/verification/verify-all", {"target": "nobody"}, format="json")
    assert r.status_code == 400 and "target" in r.json()
    pending = backup_services.request_database_backup(target=target, actor=SYSTEM)
    r = operator.post(f"{V1}/verification/verify/{pending.pk}", {}, format="json")
    assert r.status_code == 400 and "pending" in r.json()["detail"]
    assert operator.get(f"{V1}/verification/runs", {"result": "maybe"}).status_code == 400


def test_second_request_while_one_is_queued_is_a_conflict(api_as):
    alpha, _ = _cheap_targets()
    backup_services.request_database_backup(target=alpha, fmt="custom", actor=SYSTEM)  # queued, not yet run
    r = api_as("operator").post(f"{V1}/database/backup/full", {"target": "alpha"}, format="json")
    assert r.status_code == 409 and "already queued" in r.json()["detail"]
