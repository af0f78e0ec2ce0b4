"""Two-person approval: with the policy on, destructive requests from the API, console and admin wait for a
second admin; the requester cannot approve their own; requests expire; approval runs the action with the
stored parameters and both people are in the audit log. Management commands (trusted) pass straight through."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.approvals.gate import ApprovalPending
from apps.approvals.models import ApprovalRequest
from apps.backups.deletion import delete_backup
from apps.backups.models import Backup, BackupStatus
from apps.backups.services import set_legal_hold
from apps.core.commands import cli_actor
from apps.core.models import AuditEvent, Interface
from apps.core.services import Actor
from apps.jobs.models import Job
from tests.helpers import V1, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy_on(settings):
    settings.APPROVAL_REQUIRED_ACTIONS = ["all"]


@pytest.fixture
def backup(admin_client, target) -> Backup:
    admin_client.post(f"/targets/{target.pk}/backup/")
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED
    return backup


def stored(backup: Backup, root) -> list:
    return [root / key for key in [backup.manifest_key, *backup.artifacts.values_list("key", flat=True)]]


def test_backup_delete_waits_for_a_second_admin(policy_on, api_as, backup, backup_root):
    alice, bob = api_as("admin", "alice"), api_as("admin", "bob")
    r = alice.delete(f"{V1}/database/backups/{backup.pk}")
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["status"] == "pending" and body["expires_at"] and "second admin" in body["detail"]
    request = ApprovalRequest.objects.get(pk=body["approval_request"])
    assert request.action == "backup.delete" and request.parameters == {"backup_id": backup.pk}
    # Nothing happened yet.
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED
    assert all(p.exists() for p in stored(backup, backup_root))

    # The requester may not approve their own request.
    r = alice.post(f"/v1/approvals/{request.pk}/approve", {}, format="json")
    assert r.status_code == 403 and "second admin" in r.json()["detail"]
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"

    r = bob.post(f"/v1/approvals/{request.pk}/approve", {"note": "checked with legal"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "executed" and r.json()["decided_by"] == "bob"
    assert r.json()["result"] == {"backup_id": backup.pk, "status": "deleted"}
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.DELETED
    assert not any(p.exists() for p in stored(backup, backup_root))

    # Both people are in the audit log.
    events = AuditEvent.objects.filter(object_type="approvals.approvalrequest", object_id=str(request.pk))
    assert events.get(action="approval.requested").actor_name == "alice"
    approved = events.get(action="approval.approved")
    assert approved.actor_name == "bob" and approved.details["requested_by"] == "alice" and approved.via == "api"
    assert events.get(action="approval.executed").details["requested_by"] == "alice"
    assert AuditEvent.objects.get(action="backup.deleted", object_id=backup.pk).actor_name == "bob"

    # Decided once: a second approval is a conflict.
    assert bob.post(f"/v1/approvals/{request.pk}/approve", {}, format="json").status_code == 409


def test_refusal_is_said_at_once_not_after_approval(policy_on, api_as, backup):
    Backup.objects.filter(pk=backup.pk).update(legal_hold=True)
    r = api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}")
    assert r.status_code == 409 and "legal hold" in r.json()["detail"]
    assert not ApprovalRequest.objects.exists()


def test_expired_request_is_409_and_never_runs(policy_on, api_as, backup):
    alice, bob = api_as("admin", "alice"), api_as("admin", "bob")
    request_id = alice.delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = bob.post(f"/v1/approvals/{request_id}/approve", {}, format="json")
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert ApprovalRequest.objects.get(pk=request_id).status == "expired"
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED


def test_expiry_follows_the_setting(policy_on, settings, api_as, backup):
    settings.APPROVAL_EXPIRY_HOURS = 2
    before = timezone.now()
    request_id = api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    expires = ApprovalRequest.objects.get(pk=request_id).expires_at
    assert timedelta(hours=2) <= expires - before < timedelta(hours=2, seconds=30)
    # A list shows a request past its time as expired.
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now())
    listed = api_as("admin", "bob").get("/v1/approvals/", {"status": "expired"}).json()
    assert [row["id"] for row in listed["results"]] == [request_id]


def test_rejected_request_does_nothing(policy_on, api_as, backup):
    alice, bob = api_as("admin", "alice"), api_as("admin", "bob")
    request_id = alice.delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    r = bob.post(f"/v1/approvals/{request_id}/reject", {"note": "wrong backup"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["note"] == "wrong backup"
    assert bob.post(f"/v1/approvals/{request_id}/approve", {}, format="json").status_code == 409
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.SUCCEEDED
    assert AuditEvent.objects.get(action="approval.rejected").actor_name == "bob"


def test_only_admins_see_and_decide(policy_on, api_as, backup):
    request_id = api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    for role in ("viewer", "operator"):
        client = api_as(role)
        assert client.get("/v1/approvals/").status_code == 403
        r = client.post(f"/v1/approvals/{request_id}/approve", {}, format="json")
        assert r.status_code == 403 and r.json()["detail"]
    assert api_as("admin", "bob").get(f"/v1/approvals/{request_id}").json()["status"] == "pending"
    assert api_as("admin", "bob").get("/v1/approvals/999999").status_code == 404


def test_policy_off_runs_at_once(api_as, backup):
    r = api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}")
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert not ApprovalRequest.objects.exists()


def test_only_listed_actions_wait(settings, api_as, backup):
    settings.APPROVAL_REQUIRED_ACTIONS = ["recovery.failover"]
    assert api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}").status_code == 200


def test_management_commands_are_trusted(policy_on, backup):
    assert cli_actor().via == Interface.CLI
    assert delete_backup(backup=backup, actor=cli_actor()).status == BackupStatus.DELETED
    assert not ApprovalRequest.objects.exists()


def test_lifting_a_legal_hold_waits_but_setting_one_does_not(policy_on, backup):
    alice, bob = make_user("alice", "admin"), make_user("bob", "admin")
    console_alice = Actor(user=alice, via=Interface.CONSOLE)
    set_legal_hold(backup=backup, hold=True, actor=console_alice)
    assert Backup.objects.get(pk=backup.pk).legal_hold is True
    with pytest.raises(ApprovalPending) as caught:
        set_legal_hold(backup=backup, hold=False, actor=console_alice)
    assert Backup.objects.get(pk=backup.pk).legal_hold is True
    bob_client = Client()
    bob_client.force_login(bob)
    r = bob_client.post(f"/approvals/{caught.value.request.pk}/approve/")
    assert r.status_code == 302
    assert Backup.objects.get(pk=backup.pk).legal_hold is False
    assert ApprovalRequest.objects.get().status == "executed"
    assert AuditEvent.objects.get(action="backup.legal_hold.released").actor_name == "bob"


def test_retention_enforcement_waits_then_runs_as_a_job(policy_on, api_as, target):
    url = f"{V1}/retention/enforce-policies"
    alice, bob = api_as("admin", "alice"), api_as("admin", "bob")
    assert alice.post(url, {"dry_run": True}, format="json").status_code == 200  # a dry run never waits
    r = alice.post(url, {"dry_run": False, "target": target.name}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert not Job.objects.filter(type="retention.enforce").exists()
    request = ApprovalRequest.objects.get()
    assert request.parameters == {"target_id": target.pk} and target.name in request.summary
    r = bob.post(f"/v1/approvals/{request.pk}/approve", {}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "executed"
    job = Job.objects.get(pk=r.json()["result"]["job_id"])
    assert job.type == "retention.enforce" and job.status == "succeeded" and job.requested_by.username == "bob"


def test_restore_over_an_existing_database_waits_into_a_new_one_does_not(policy_on, api_as, backup, target,
                                                                         fresh_db):
    db = fresh_db()
    url = f"{V1}/database/backups/{backup.pk}/restore"
    alice, bob = api_as("admin", "alice"), api_as("admin", "bob")
    # A table the backup does not hold is refused at once (the request is checked as if it ran).
    r = alice.post(url, {"target": target.name, "dbname": db.dbname, "table": "public.nope"}, format="json")
    assert r.status_code == 400 and not ApprovalRequest.objects.exists()
    r = alice.post(url, {"target": target.name, "dbname": db.dbname}, format="json")
    assert r.status_code == 202 and "approval_request" in r.json()
    assert not Job.objects.filter(type="restore.database").exists()
    request = ApprovalRequest.objects.get()
    assert request.parameters["dbname"] == db.dbname and "password" not in str(request.parameters).lower()
    r = bob.post(f"/v1/approvals/{request.pk}/approve", {}, format="json")
    assert r.json()["status"] == "executed", r.json()
    assert Job.objects.get(pk=r.json()["result"]["job_id"]).status == "succeeded"
    # Into a new database: nothing is overwritten, nothing waits.
    new = fresh_db(create=False)
    r = alice.post(url, {"target": target.name, "dbname": new.dbname, "create": True}, format="json")
    assert r.status_code == 202 and "job_id" in r.json()
    assert ApprovalRequest.objects.count() == 1


def test_failover_waits_and_an_impossible_one_is_refused_at_once(policy_on, api_as, target):
    from apps.databases.models import DatabaseTarget
    from apps.recovery.models import DRPlan, Failover

    plan = DRPlan.objects.create(name="shop", primary=target)
    alice = api_as("admin", "alice")
    url = f"{V1}/disaster-recovery/failover"
    r = alice.post(url, {"plan": plan.pk, "confirm": "shop"}, format="json")
    assert r.status_code == 400 and "no standby" in r.json()["detail"]
    assert not ApprovalRequest.objects.exists()
    # With a standby it would run: it waits, and no failover is recorded until approved.
    standby = DatabaseTarget.objects.create(name="shop-standby", host="127.0.0.1", port=1, dbname="x", user="x")
    plan.standbys.add(standby)
    r = alice.post(url, {"plan": plan.pk, "confirm": "shop"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert ApprovalRequest.objects.get().parameters == {"plan_id": plan.pk, "standby_id": None}
    assert not Failover.objects.exists() and not AuditEvent.objects.filter(action="dr.failover.requested").exists()


def test_console_restore_turns_into_a_request_that_another_admin_approves_on_the_page(policy_on, backup, target,
                                                                                      fresh_db):
    db = fresh_db()
    alice, bob = Client(), Client()
    alice.force_login(make_user("alice", "admin"))
    bob.force_login(make_user("bob", "admin"))
    page = alice.post(f"/backups/{backup.pk}/", {"target": target.name, "dbname": db.dbname}, follow=True)
    assert page.status_code == 200 and "Approval requested" in page.content.decode()
    assert not Job.objects.filter(type="restore.database").exists()
    request = ApprovalRequest.objects.get()
    assert request.requested_via == "console" and request.requested_by_name == "alice"

    # The requester sees it without an Approve button; the second admin sees both buttons.
    own = alice.get("/approvals/").content.decode()
    assert f'id="approval-{request.pk}"' in own and ">Approve<" not in own and ">Reject<" in own
    other = bob.get("/approvals/").content.decode()
    assert ">Approve<" in other and "csrfmiddlewaretoken" in other
    # A forged approval by the requester is refused all the same.
    alice.post(f"/approvals/{request.pk}/approve/")
    assert ApprovalRequest.objects.get().status == "pending"

    r = bob.post(f"/approvals/{request.pk}/approve/", {"note": "ok"})
    job = Job.objects.get(type="restore.database")
    assert r.status_code == 302 and r["Location"] == f"/jobs/{job.pk}/"
    assert job.status == "succeeded" and ApprovalRequest.objects.get().status == "executed"
    assert AuditEvent.objects.get(action="approval.approved").via == "console"
    # Viewers and operators do not see the page.
    for role in ("viewer", "operator"):
        c = Client()
        c.force_login(make_user(f"{role}-x", role))
        assert c.get("/approvals/").status_code == 403


def test_lifting_a_legal_hold_in_the_django_admin_waits(policy_on, admin_client, backup):
    Backup.objects.filter(pk=backup.pk).update(legal_hold=True)
    forms = {f"{name}-{part}": value for name in ("artifacts", "replicas")
             for part, value in (("TOTAL_FORMS", "1"), ("INITIAL_FORMS", "1"), ("MIN_NUM_FORMS", "0"),
                                 ("MAX_NUM_FORMS", "1000"))}
    r = admin_client.post(f"/admin/backups/backup/{backup.pk}/change/", forms, follow=True)  # box unticked
    assert r.status_code == 200 and "Approval requested" in r.content.decode()
    assert Backup.objects.get(pk=backup.pk).legal_hold is True
    request = ApprovalRequest.objects.get()
    assert request.action == "backup.legal_hold.release" and request.requested_via == "admin"


def test_the_schedule_expires_stale_requests_without_anyone_looking(policy_on, api_as, backup):
    """Every 5 minutes the scheduler expires pending requests past their time, and the audit log says so."""
    from apps.approvals.tasks import expire_requests
    from apps.core.models import AuditEvent
    from apps.jobs.schedules import SCHEDULES

    assert ("Expire approval requests", "apps.approvals.tasks.expire_requests", 5) in SCHEDULES
    request_id = api_as("admin", "alice").delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    fresh_id = api_as("admin", "carol").delete(f"{V1}/database/backups/{backup.pk}").json()["approval_request"]
    ApprovalRequest.objects.filter(pk=request_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expire_requests() == 1
    assert ApprovalRequest.objects.get(pk=request_id).status == "expired"
    assert ApprovalRequest.objects.get(pk=fresh_id).status == "pending"
    assert AuditEvent.objects.filter(action="approval.expired", object_id=str(request_id)).count() == 1
    assert expire_requests() == 0
