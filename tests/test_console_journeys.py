"""Browser journeys through the console (Playwright with the Debian chromium), each with the console alone:
log in, start a backup and watch the job page's progress bar reach done, acknowledge and resolve an alert with a
note, a viewer refused a restore, a complete database failure (the latest backup restored into a new database),
and a regional failover (the DR plan's failover confirmed by typing the plan's name); a restore that waits for a
second admin's approval and runs when another admin grants it.
Screenshots go to tests/artifacts/ (git-ignored). PITR journeys: tests/test_console_pitr_journeys.py."""
import shutil
from pathlib import Path

import pytest

pytest.importorskip("playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not shutil.which("chromium"):
    pytest.skip("Debian chromium is not installed (make setup installs it)", allow_module_level=True)

from tests.test_dr_failover import _ids, _insert, _wait_streaming, pair  # noqa: E402,F401  (the DR pair fixture)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run"]}


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def log_in(page, base_url: str, username: str, password: str, next_url: str = "/") -> None:
    page.set_default_timeout(20_000)
    page.goto(f"{base_url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}{next_url}")


@pytest.fixture
def admin_page(live_server, page):
    from django.contrib.auth.models import User

    User.objects.create_superuser("alice", "alice@example.com", "alice-pw-123")
    log_in(page, live_server.url, "alice", "alice-pw-123")
    return page


def test_back_up_from_the_target_page_and_watch_the_progress_bar_reach_done(admin_page, live_server, target,
                                                                            monkeypatch):
    from apps.jobs.models import Job
    from apps.jobs.runner import execute

    page = admin_page
    # A real queue: the job waits for a worker, and the page must follow it without being reloaded.
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    page.goto(f"{live_server.url}/")
    page.click(f"#target-sample a")
    page.wait_for_url(f"**/targets/{target.pk}/")
    page.select_option("#backup-method", "logical")
    page.click("#backup-now")
    page.wait_for_url("**/jobs/*/")
    assert page.inner_text("#job-status") == "queued"
    page.evaluate("document.title = 'before the worker'")  # a reload would lose this
    job = Job.objects.get(type="backup.database")
    execute(job)  # the worker
    page.wait_for_selector("#job-status.status-succeeded", timeout=30_000)
    assert page.evaluate("document.title") == "before the worker"
    assert page.evaluate("document.getElementById('job-bar').value") == 100
    assert page.inner_text("#job-eta") == "done" and "artifact committed" in page.inner_text("#job-log")
    assert "B" in page.inner_text("#job-bytes") and page.inner_text("#job-rate") != "—"
    shot(page, "job-done")
    page.goto(f"{live_server.url}/")
    assert page.locator("#target-sample .light-green").is_visible()
    # The 30-day lines arrive from /dashboard/charts.json after the page: wait for them to be drawn.
    page.wait_for_function("() => Chart.getChart(document.getElementById('durations-chart')) !== undefined",
                           timeout=15_000)
    drawn = page.evaluate("""() => ['sizes-chart', 'durations-chart', 'storage-chart', 'alerts-chart'].map(
        id => { const c = Chart.getChart(document.getElementById(id)); return c ? c.data.datasets.length : -1; })""")
    assert all(n >= 1 for n in drawn), drawn
    points = page.evaluate("() => Chart.getChart(document.getElementById('sizes-chart')).data.datasets"
                           ".find(d => d.label === 'sample').data.length")
    assert points >= 1, points
    shot(page, "dashboard")


def test_acknowledge_and_resolve_an_alert_with_a_note(admin_page, live_server, target):
    from django.utils import timezone

    from apps.core.models import AuditEvent
    from apps.monitoring.models import Alert

    now = timezone.now()
    alert = Alert.objects.create(type="backup_failed", severity="high", target="sample", fingerprint="j:1",
                                 message="sample: the last backup failed", database_target=target,
                                 first_seen=now, last_seen=now)
    page = admin_page
    page.click("#console-nav >> text=Alerts")
    row = page.locator(f"#alert-{alert.pk}")
    row.locator("input[name=note]").fill("looking at the disk")
    row.locator("button.ack").click()
    page.wait_for_selector(f"#alert-{alert.pk} td.alert-status:has-text('acknowledged')")
    row = page.locator(f"#alert-{alert.pk}")
    row.locator("input[name=note]").fill("disk replaced, backup re-run")
    row.locator("button.resolve").click()
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/monitoring/alerts/?status=resolved&type=backup_failed")
    assert "resolved by alice: disk replaced, backup re-run" in page.inner_text(f"#alert-{alert.pk}")
    shot(page, "alert-resolved")
    alert.refresh_from_db()
    assert (alert.acknowledged_note, alert.resolved_note) == ("looking at the disk", "disk replaced, backup re-run")
    assert {"alert.acknowledge", "alert.resolve"} <= set(
        AuditEvent.objects.filter(actor_name="alice").values_list("action", flat=True))
    page.goto(f"{live_server.url}/audit/?actor=alice&action=alert.")
    assert page.locator("#audit tr", has_text="alert.resolve").count() == 1


def test_a_viewer_is_refused_a_restore(live_server, page, target):
    from apps.backups.jobs import DatabaseBackupJob
    from apps.core.services import SYSTEM
    from apps.jobs.models import Job
    from tests.helpers import PASSWORD, make_user

    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    vera = make_user("vera", "viewer")
    vera.is_staff = True  # the console signs in through the admin's login page
    vera.save()
    log_in(page, live_server.url, "vera", PASSWORD)
    page.goto(f"{live_server.url}/backups/{job.result['backup_id']}/")
    assert page.locator("#restore-form").count() == 0
    # Posting the form anyway (a crafted request with the page's CSRF token) is refused.
    status = page.evaluate("""async () => {
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const body = new URLSearchParams({target: 'sample', dbname: 'stolen', create: 'on',
                                          csrfmiddlewaretoken: token});
        const r = await fetch(location.pathname, {method: 'POST', body, credentials: 'same-origin'});
        return [r.status, await r.text()];
    }""")
    assert status[0] == 403 and "needs the <b>admin</b> role" in status[1]
    page.goto(f"{live_server.url}/recovery/pitr/")
    assert "needs the admin role" in page.inner_text("#forbidden")
    shot(page, "viewer-refused")
    assert not Job.objects.filter(type__in=["restore.database", "recovery.pitr"]).exists()


def test_complete_database_failure_restore_the_latest_backup_into_a_new_database(admin_page, live_server, target,
                                                                                fresh_db, source_db):
    from tests.helpers import table_contents

    page = admin_page
    page.goto(f"{live_server.url}/")
    page.click("#targets button.backup-now")
    page.wait_for_selector("#job-status.status-succeeded")
    # From the dashboard: the target, its newest chain, the backup, restore into a new database.
    page.goto(f"{live_server.url}/")
    page.click("#target-sample a")
    page.locator("#chains tr.chain-row a").first.click()
    page.wait_for_url("**/backups/*/")
    dest = fresh_db(create=False)
    page.fill("#id_dbname", dest.dbname)
    page.check("#id_create")
    page.click("#restore")
    page.wait_for_selector("#job-status.status-succeeded")
    assert "tables_compared" in page.inner_text("#job-result")
    shot(page, "restore-new-database")
    for table in ("public.leases", "billing.payments"):
        assert table_contents(dest, table) == table_contents(source_db, table)
    from apps.core.models import AuditEvent

    done = set(AuditEvent.objects.filter(actor_name="alice", via="console").values_list("action", flat=True))
    assert {"backup.requested", "backup.restore.requested"} <= done, done  # the journey is in the audit log


def test_regional_failover_from_the_dr_plan_page(live_server, page, pair):
    from django.contrib.auth.models import User

    from apps.recovery.models import DRPlan

    primary, plan, standby = pair
    _insert(primary, 1, 5)
    _wait_streaming(standby)
    User.objects.create_superuser("alice", "alice@example.com", "alice-pw-123")
    log_in(page, live_server.url, "alice", "alice-pw-123", next_url="/dr/")
    page.click(f"#plan-{plan.pk} h3 a")
    page.wait_for_url(f"**/dr/plans/{plan.pk}/")
    assert "streaming" in page.inner_text("#plan-health")
    page.click("#failover-link")
    page.fill("#id_confirm", "sho")  # not the plan's name: refused, nothing done
    page.click("#failover")
    assert "That is not shop" in page.inner_text("#failover-form")
    page.fill("#id_confirm", "shop")
    page.click("#failover")
    page.wait_for_selector("#job-status.status-succeeded", timeout=90_000)
    shot(page, "failover-done")
    plan = DRPlan.objects.get(pk=plan.pk)
    assert plan.primary_id == standby.pk
    page.goto(f"{live_server.url}/dr/plans/{plan.pk}/")
    assert "succeeded" in page.inner_text("#failovers")
    assert _ids(standby) == {1, 2, 3, 4, 5}  # nothing committed before is lost
    from apps.core.models import AuditEvent

    assert AuditEvent.objects.filter(action="dr.failover.requested", actor_name="alice", via="console").exists()


def test_an_approval_requested_by_one_admin_is_granted_by_another(admin_page, live_server, browser, target, fresh_db,
                                                                 source_db, settings):
    """Two-person policy on: alice's restore over an existing database waits; she cannot approve it herself; bob
    approves it on the approvals page and the restore runs. Both are in the audit log, as the console."""
    from django.contrib.auth.models import User

    from apps.core.models import AuditEvent
    from apps.jobs.models import Job
    from tests.helpers import table_contents

    settings.APPROVAL_REQUIRED_ACTIONS = ["all"]
    page = admin_page
    page.goto(f"{live_server.url}/")
    page.click("#targets button.backup-now")  # backing up is not destructive: it runs at once
    page.wait_for_selector("#job-status.status-succeeded")
    page.goto(f"{live_server.url}/")
    page.click("#target-sample a")
    page.locator("#chains tr.chain-row a").first.click()
    page.wait_for_url("**/backups/*/")
    dest = fresh_db()  # exists: restoring over it is destructive
    page.fill("#id_dbname", dest.dbname)
    page.uncheck("#id_create")
    page.click("#restore")
    assert "Approval requested" in page.inner_text("ul.messages")
    assert not Job.objects.filter(type="restore.database").exists()
    shot(page, "approval-requested")
    page.goto(f"{live_server.url}/approvals/")
    row = page.locator("#pending tr[id^=approval-]")
    assert row.count() == 1 and row.locator("button", has_text="Approve").count() == 0  # not her own

    User.objects.create_superuser("bob", "bob@example.com", "bob-pw-123")
    other = browser.new_context()
    try:
        bob = other.new_page()
        log_in(bob, live_server.url, "bob", "bob-pw-123", next_url="/approvals/")
        bob.fill("#pending input[name=note]", "checked with alice")
        bob.click("#pending button:has-text('Approve')")
        bob.wait_for_selector("#job-status.status-succeeded", timeout=120_000)
        shot(bob, "approval-granted")
    finally:
        other.close()
    assert table_contents(dest, "public.leases") == table_contents(source_db, "public.leases")
    events = {(e.action, e.actor_name, e.via) for e in AuditEvent.objects.filter(action__startswith="approval.")}
    assert {("approval.requested", "alice", "console"), ("approval.approved", "bob", "console")} <= events
