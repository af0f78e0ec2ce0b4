"""Console pages of monitoring: the dashboard with charts drawn by the vendored Chart.js (no CDN) and the alerts
page whose acknowledge / resolve record the signed-in user; in Django's client and in a real Chromium."""
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from apps.backups.models import Backup, BackupStatus
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.monitoring import engine
from apps.monitoring.models import Alert
from apps.storage.services import ensure_default_location
from tests.helpers import make_user


def failing_target():
    t = save_target(target=DatabaseTarget(name="orders", host="127.0.0.1", port=1, dbname="o", user="u"),
                    actor=SYSTEM)
    now = timezone.now()
    for status in (BackupStatus.SUCCEEDED, BackupStatus.FAILED):
        Backup.objects.create(database_target=t, status=status, storage_location=ensure_default_location(),
                              started_at=now, finished_at=now, size_raw=5000, size_stored=2000, error="boom")
    engine.evaluate()
    return t


def test_chart_library_is_vendored_with_its_license():
    vendor = Path(settings.BASE_DIR) / "static" / "vendor" / "chartjs"
    assert (vendor / "chart.umd.min.js").stat().st_size > 100_000
    assert "MIT" in (vendor / "LICENSE.md").read_text()


def test_dashboard_page_and_alert_actions(client, db):
    failing_target()
    viewer = make_user("vera", "viewer")
    client.force_login(viewer)
    page = client.get("/monitoring/").content.decode()
    assert 'id="chart-data"' in page and "/static/vendor/chartjs/chart.umd.min.js" in page
    assert "cdn" not in page.lower() and "orders" in page
    alerts = client.get("/monitoring/alerts/").content.decode()
    alert = Alert.objects.get(type="backup_failed")
    assert f'id="alert-{alert.pk}"' in alerts and "Acknowledge" not in alerts  # a viewer sees no buttons
    client.post(f"/monitoring/alerts/{alert.pk}/acknowledge/", {"note": "x"})
    alert.refresh_from_db()
    assert alert.status == "open"

    client.force_login(make_user("otto", "operator"))
    client.post(f"/monitoring/alerts/{alert.pk}/acknowledge/", {"note": "on it"})
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by.username, alert.acknowledged_note) == ("acknowledged", "otto", "on it")
    client.post(f"/monitoring/alerts/{alert.pk}/resolve/", {"note": "fixed"})
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by.username, alert.resolved_note) == ("resolved", "otto", "fixed")
    assert client.post(f"/monitoring/alerts/{alert.pk}/explode/").status_code == 302
    assert client.get("/monitoring/alerts/?status=resolved").content.decode().count("resolved by otto") == 1
    assert "resolved by otto" not in client.get("/monitoring/alerts/").content.decode()  # active ones only
    assert f'id="alert-{alert.pk}"' in client.get(f"/monitoring/alerts/?id={alert.pk}").content.decode()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run"]}


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed (make setup installs it)")
def test_charts_draw_and_alert_is_acknowledged_in_a_browser(transactional_db, live_server, page):
    from django.contrib.auth.models import User

    failing_target()
    User.objects.create_superuser("alice", "alice@example.com", "alice-pw-123")
    page.goto(f"{live_server.url}/admin/login/?next=/monitoring/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pw-123")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/monitoring/")
    drawn = page.evaluate("""() => ['sizes-chart', 'storage-chart', 'alerts-chart'].map(
        id => { const c = Chart.getChart(document.getElementById(id)); return c ? c.data.datasets.length : -1; })""")
    assert all(n >= 1 for n in drawn), drawn
    page.click("header >> text=Alerts")
    row = page.locator("#alerts tr", has_text="backup_failed")
    row.locator("input[name=note]").fill("paged the DBA")
    row.locator("button.ack").click()
    page.wait_for_selector("#alerts td.alert-status:has-text('acknowledged')")
    alert = Alert.objects.get(type="backup_failed")
    assert alert.acknowledged_by.username == "alice" and alert.acknowledged_note == "paged the DBA"
