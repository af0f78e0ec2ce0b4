"""The disaster-recovery API and console pages: plans CRUD, the checks on failover requests (typed confirmation,
roles), status read live from the session cluster, the drill endpoint (202 + job; a plan without a physical
backup fails with the reason and leaves nothing behind).

Failovers on real standbys are in tests/test_dr_failover.py; drills that pass in tests/test_dr_drill.py.
"""
import pytest

from apps.core.models import AuditEvent
from apps.jobs.models import Job
from apps.recovery.models import DRDrill, DRPlan, Failover
from tests.helpers import V1

pytestmark = pytest.mark.django_db
PLANS = f"{V1}/disaster-recovery/plans/"


def _plan(client, **body):
    return client.post(PLANS, {"name": "shop", "primary": "sample", **body}, format="json")


def test_plans_crud_is_admin_only_and_audited(api_as, target):
    admin, viewer = api_as("admin"), api_as("viewer")
    assert _plan(viewer).status_code == 403 and _plan(api_as("operator")).status_code == 403
    r = _plan(admin, switch_hook_command=["/usr/local/bin/point-apps", "--to-new"], drill_tables=["public.leases"],
              notification_channels=["ops-email"], rpo_objective_seconds=60, auto_failover=True, failure_threshold=3)
    assert r.status_code == 201, r.content
    plan = r.json()
    assert plan["primary"] == "sample" and plan["standbys"] == [] and plan["strategy"] == "promote_standby"
    assert plan["notification_channels"] == ["ops-email"] and plan["consecutive_failures"] == 0
    assert viewer.get(PLANS).json()["results"][0]["name"] == "shop"
    r = admin.patch(f"{PLANS}{plan['id']}/", {"rto_objective_seconds": 120}, format="json")
    assert r.status_code == 200 and r.json()["rto_objective_seconds"] == 120
    assert AuditEvent.objects.get(action="dr.plan.updated").details["changed"] == ["rto_objective_seconds"]
    DRPlan.objects.filter(pk=plan["id"]).update(auto_failover_armed=False, consecutive_failures=5)  # as a failover
    r = admin.patch(f"{PLANS}{plan['id']}/", {"auto_failover_armed": True}, format="json")
    assert r.json()["auto_failover_armed"] is True and r.json()["consecutive_failures"] == 0  # re-armed afresh
    assert admin.delete(f"{PLANS}{plan['id']}/").status_code == 204
    assert not DRPlan.objects.exists() and AuditEvent.objects.filter(action="dr.plan.deleted").exists()


@pytest.mark.parametrize("body, words", [
    ({"standbys": ["sample"]}, "cannot be the primary and a standby"),
    ({"switch_hook_command": ["point-apps"]}, "absolute path"),
    ({"switch_hook_command": "/bin/sh -c 'x'"}, "list"),
    ({"drill_tables": ["public.x; drop"]}, "not an acceptable"),
    ({"primary": "nope"}, "No database target named nope"),
    ({"strategy": "pray"}, "not a valid choice"),
    ({"switch_hook_url": "file:///etc/passwd"}, "valid URL"),
    ({"failure_threshold": 0}, "greater than or equal to 1"),
])
def test_bad_plans_are_refused_with_the_reason(api_as, target, body, words):
    r = _plan(api_as("admin"), **body)
    assert r.status_code == 400, r.content
    assert words in str(r.json()), r.json()
    assert not DRPlan.objects.exists()


def test_failover_requests_are_checked_before_anything_happens(api_as, target):
    plan = DRPlan.objects.create(name="shop", primary=target)
    url = f"{V1}/disaster-recovery/failover"
    assert api_as("operator").post(url, {"plan": plan.pk, "confirm": "shop"}, format="json").status_code == 403
    r = api_as("admin").post(url, {"plan": plan.pk, "confirm": "Shop"}, format="json")
    assert r.status_code == 400 and "Type the plan's name" in str(r.json()["confirm"])
    r = api_as("admin").post(url, {"plan": 999, "confirm": "shop"}, format="json")
    assert r.status_code == 400 and "No DR plan" in str(r.json())
    r = api_as("admin").post(url, {"plan": plan.pk, "confirm": "shop"}, format="json")
    assert r.status_code == 400 and "no standby" in r.json()["detail"]
    DRPlan.objects.filter(pk=plan.pk).update(strategy="restore_from_backup")
    r = api_as("admin").post(url, {"plan": plan.pk, "confirm": "shop"}, format="json")
    assert r.status_code == 400 and "point-in-time recovery" in r.json()["detail"]
    assert not Failover.objects.exists() and not Job.objects.exists()


def test_status_reads_the_servers(api_as, target):
    DRPlan.objects.create(name="shop", primary=target)
    r = api_as("viewer").get(f"{V1}/disaster-recovery/status")
    assert r.status_code == 200
    (plan,) = r.json()["plans"]
    assert plan["primary"]["healthy"] is True and plan["primary"]["lsn"]  # the session cluster, live
    assert plan["standbys"] == [] and plan["last_drill"] is None
    assert plan["objectives"]["met"] is None  # nothing proven yet
    assert plan["recoverable_window"]["recoverable"] is False


def test_a_drill_without_a_physical_backup_fails_with_the_reason(api_as, target, settings, tmp_path):
    settings.RECOVERY_ROOT = tmp_path / "recoveries"
    plan = DRPlan.objects.create(name="shop", primary=target)
    assert api_as("viewer").post(f"{V1}/disaster-recovery/test/{plan.pk}").status_code == 403
    assert api_as("operator").post(f"{V1}/disaster-recovery/test/999").status_code == 404
    r = api_as("operator").post(f"{V1}/disaster-recovery/test/{plan.pk}")
    assert r.status_code == 202, r.content
    drill = DRDrill.objects.get(pk=r.json()["drill_id"])
    assert drill.status == "failed" and drill.objectives_met is False and drill.scratch_removed
    assert "no succeeded physical backup" in drill.reasons[0]
    assert Job.objects.get(pk=r.json()["job_id"]).status == "failed"
    assert list((tmp_path / "recoveries").iterdir()) == []
    listed = api_as("viewer").get(f"{V1}/disaster-recovery/drills").json()["results"]
    assert listed[0]["id"] == drill.pk and listed[0]["status"] == "failed"


def test_console_status_and_failover_confirmation(client, target):
    from tests.test_console import user_with_role

    plan = DRPlan.objects.create(name="shop", primary=target)
    client.force_login(user_with_role("viewer", "vera"))
    page = client.get("/dr/")
    assert page.status_code == 200 and b"shop" in page.content and b"Fail over" not in page.content
    assert client.get(f"/dr/plans/{plan.pk}/failover/").status_code == 403
    client.force_login(user_with_role("admin", "ada"))
    assert b"Fail over" in client.get("/dr/").content
    page = client.post(f"/dr/plans/{plan.pk}/failover/", {"confirm": "shop-typo"})
    assert page.status_code == 400 and b"That is not shop" in page.content
    page = client.post(f"/dr/plans/{plan.pk}/failover/", {"confirm": "shop"}, follow=True)
    assert b"no standby" in page.content  # the service's refusal, as a message
    assert not Failover.objects.exists()


def test_admin_pages_of_plans_and_records_render(admin_client, target):
    plan = DRPlan.objects.create(name="shop", primary=target)
    for url in ["/admin/recovery/drplan/", f"/admin/recovery/drplan/{plan.pk}/change/", "/admin/recovery/drplan/add/",
                "/admin/recovery/failover/", "/admin/recovery/drdrill/"]:
        assert admin_client.get(url).status_code == 200, url
