"""Point-in-time recovery from the console alone, in a real Chromium, on a real archiving cluster: the seed's
partial data loss (the wizard recovers a new cluster to a moment before the loss) and single table (the wizard
copies one table as it was back into the live database, under a new name).

The console runs as an operator deploys it, against the archiving site of tests/wal_site.py (the metadata
database PostgreSQL's archive_command writes to): `manage.py runserver` as the postgres user with the site's
environment file, jobs run inline (Q_SYNC). Screenshots go to tests/artifacts/."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not shutil.which("chromium"):
    pytest.skip("Debian chromium is not installed (make setup installs it)", allow_module_level=True)

from apps.databases.clusters import as_server_user, free_port, server_bin_dir  # noqa: E402
from tests.wal_site import ROOT, TARGET, _give  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "alice-pw-123"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run"]}


@pytest.fixture(scope="module")
def site_console(wal_site):
    """History on the archiving cluster (a physical backup, marks 1-3, the moment T, then the loss: 40 of 50
    leases deleted, mark 4), and the console serving the site. Yields (url, site, T)."""
    site = wal_site
    site.pitr_tables()
    site.manage("db_backup", TARGET, "--method", "physical")
    for n in (1, 2, 3):
        site.sql("INSERT INTO events (n) VALUES (%s)", n)
    time.sleep(0.3)
    (moment,), = site.sql("SELECT clock_timestamp()")
    time.sleep(0.3)
    site.sql("DELETE FROM leases WHERE id > 10")  # the loss
    site.sql("INSERT INTO events (n) VALUES (4)")
    site.wait_archived(site.new_segment())
    site.orm("from django.contrib.auth.models import User; "
             f"User.objects.create_superuser('alice', 'alice@example.com', '{PASSWORD}')")

    base = Path(tempfile.mkdtemp(prefix="console-pitr-"))
    _give(base, 0o755)
    recoveries = base / "recoveries"
    recoveries.mkdir()
    _give(recoveries, 0o755)
    port = free_port()
    log = open(base / "runserver.log", "wb")
    env = {**site.env, "Q_SYNC": "true", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
           "RECOVERY_ROOT": str(recoveries), "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        as_server_user([site.python, str(ROOT / "manage.py"), "runserver", "--noreload", "--insecure",
                        f"127.0.0.1:{port}"]),
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((base / "runserver.log").read_text()[-3000:])
                time.sleep(0.2)
        yield url, site, moment
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the session this fixture started (runuser and its python)
        server.wait(timeout=30)
        log.close()
        for pgdata in recoveries.glob("*"):
            if (pgdata / "postmaster.pid").exists():
                subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(pgdata), "-m", "immediate",
                                               "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def open_wizard(page, url: str) -> None:
    page.set_default_timeout(30_000)
    page.goto(f"{url}/admin/login/?next=/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/")
    page.click("#console-nav >> text=Point-in-time recovery")
    page.select_option("#pitr-target", TARGET)
    page.click("#pitr-pick-target")
    page.wait_for_selector("#window-text")


def confirm_and_wait(page) -> dict:
    page.click("#pitr-confirm", timeout=300_000)  # jobs run inline: the answer comes when the recovery is done
    page.wait_for_selector("#job-status.status-succeeded", timeout=300_000)
    return dict(re.findall(r"^(\w+): (.*)$", page.inner_text("#job-result"), re.M))


def test_partial_data_loss_recovered_into_a_new_cluster_before_the_loss(site_console, page):
    url, site, moment = site_console
    open_wizard(page, url)
    # The target page draws the window (and the chain of the physical backup).
    page.click("#console-nav >> text=Dashboard")
    page.click(f"#target-{TARGET} a")
    page.wait_for_selector(".tl-span")  # the target page, not the dashboard still on screen
    drawn = page.evaluate("getComputedStyle(document.querySelector('.tl-span')).width")
    assert float(drawn.rstrip("px")) > 0 and "basebackup" in page.inner_text("#chains")
    shot(page, "target-window")
    page.click("#pitr-link")
    page.wait_for_selector("#window-text")
    # A moment before the window is refused, and the window is named.
    page.fill("#id_at", "2020-01-01 00:00:00+00")
    page.fill("#id_directory", "before_loss")
    page.click("#pitr-review")
    assert "outside the recoverable window of walsrc" in page.inner_text("#pitr-destination-form")
    page.fill("#id_at", moment.isoformat())
    page.check("#id_mode_0")
    page.fill("#id_directory", "before_loss")
    page.click("#pitr-review")
    assert "a new cluster" in page.inner_text("#review-destination")
    shot(page, "pitr-review")
    result = confirm_and_wait(page)
    shot(page, "pitr-done")
    with psycopg.connect(host="127.0.0.1", port=int(result["port"]), dbname=site.cluster.conn().dbname,
                         user="postgres", autocommit=True) as c:
        assert [r[0] for r in c.execute("SELECT n FROM events ORDER BY n")] == [1, 2, 3]
        assert c.execute("SELECT count(*) FROM leases").fetchone()[0] == 50  # as before the loss
        c.execute("INSERT INTO events (n) VALUES (100)")  # promoted: ready and writable
    assert site.sql("SELECT count(*) FROM leases")[0][0] == 10  # the live database is untouched


def test_single_table_recovered_into_the_live_database(site_console, page):
    url, site, moment = site_console
    open_wizard(page, url)
    page.fill("#id_at", moment.isoformat())
    page.check("#id_mode_1")
    page.fill("#id_directory", "")
    page.fill("#id_table", "public.leases")
    page.check("#id_table_action_0")
    page.fill("#id_rename", "leases_before_loss")
    page.click("#pitr-review")
    assert "leases_before_loss" in page.inner_text("#review-destination")
    confirm_and_wait(page)
    shot(page, "pitr-table-done")
    assert site.sql("SELECT count(*) FROM leases_before_loss")[0][0] == 50
    assert site.sql("SELECT count(*) FROM leases")[0][0] == 10  # the live table itself is not touched
    rows = site.rows("SELECT action, actor_name, via FROM core_auditevent WHERE action = 'recovery.requested'")
    assert len(rows) == 2 and all(r[1:] == ("alice", "console") for r in rows)
