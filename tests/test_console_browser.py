"""The console in a real Chromium (Playwright): log in, back up, watch the job, restore from the page."""
import shutil

import pytest

pytest.importorskip("playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not shutil.which("chromium"):
    pytest.skip("Debian chromium is not installed (make setup installs it)", allow_module_level=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"],
    }


@pytest.fixture
def operator_login(transactional_db, live_server, page, target):
    from django.contrib.auth.models import User

    User.objects.create_superuser("alice", "alice@example.com", "alice-pw-123")
    page.goto(f"{live_server.url}/admin/login/?next=/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pw-123")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def test_back_up_from_the_dashboard_and_watch_the_job(operator_login, live_server):
    page = operator_login
    assert page.locator("#targets").inner_text().count("sample") >= 1
    page.click("#targets button.backup-now")
    page.wait_for_url("**/jobs/*/")
    page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)
    assert "artifact committed" in page.inner_text("#job-log")
    page.goto(f"{live_server.url}/")
    row = page.locator("#backups tr", has_text="succeeded").first
    assert row.is_visible()
    row.locator("a").click()
    page.wait_for_url("**/backups/*/")
    page.click("#verify")
    page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)
    assert "checksum: passed" in page.inner_text("#job-log")


def test_restore_from_the_backup_page(operator_login, live_server, fresh_db, source_db):
    from apps.backups.models import Backup
    from tests.helpers import table_contents

    page = operator_login
    page.click("#targets button.backup-now")
    page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)
    backup = Backup.objects.get()
    dest = fresh_db(create=False)
    page.goto(f"{live_server.url}/backups/{backup.pk}/")
    page.fill("#id_dbname", dest.dbname)
    page.click("#restore")
    page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)
    assert table_contents(dest, "billing.payments") == table_contents(source_db, "billing.payments")
