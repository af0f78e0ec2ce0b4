"""The platform at one moment, on a real archiving cluster: `recover_platform --at T` gives a database whose
marker rows stop at T and a document tree equal to the version current at T, and says what each reached.
Run as an operator would (manage.py as the postgres user, like tests/test_pitr.py)."""
import json
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from apps.databases.clusters import as_server_user, server_bin_dir
from tests.wal_site import TARGET, _give


def _json(done) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="platform-"))  # the postgres user must reach it
    _give(path, 0o755)
    yield path
    for pgdata in path.glob("*/database"):
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(pgdata), "-m", "immediate",
                                           "stop"]), capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def test_database_and_documents_at_one_moment(wal_site, base):
    site = wal_site
    tree = base / "uploads"
    (tree / "leases").mkdir(parents=True)
    (tree / "leases" / "a.pdf").write_bytes(b"lease A, first draft\n" * 100)
    (tree / "notes.txt").write_text("tenant notes v1\n")
    for p in [tree, *tree.rglob("*")]:
        _give(p, 0o755 if p.is_dir() else 0o644)
    site.manage("docs_source_add", "uploads", "--path", str(tree))
    site.sql("CREATE TABLE platform_marks (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    assert _json(site.manage("db_backup", TARGET, "--method", "physical"))["status"] == "succeeded"

    before = base / "too-early"
    early = site.manage("recover_platform", "--at", datetime.now().astimezone().isoformat(), "--target", TARGET,
                        "--source", "uploads", "--to", str(before), ok=False)
    assert early.returncode != 0 and "has no version whose scan ended at or before" in early.stderr
    assert not before.exists()

    site.sql("INSERT INTO platform_marks (n) VALUES (1), (2)")
    v1 = _json(site.manage("docs_backup", "uploads"))
    assert v1["status"] == "succeeded"
    state_at_t = _tree(tree)
    time.sleep(0.3)
    (t,), = site.sql("SELECT clock_timestamp()")
    time.sleep(0.3)
    # After T: the tree changes, more rows commit, a second version is taken.
    (tree / "leases" / "a.pdf").write_bytes(b"lease A, signed\n" * 100)
    (tree / "leases" / "b.pdf").write_bytes(b"lease B\n")
    (tree / "notes.txt").unlink()
    site.sql("INSERT INTO platform_marks (n) VALUES (3)")
    assert _json(site.manage("docs_backup", "uploads"))["status"] == "succeeded"
    site.sql("INSERT INTO platform_marks (n) VALUES (4)")
    site.wait_archived(site.new_segment())

    dest = base / "at-t"
    done = site.manage("recover_platform", "--at", t.isoformat(), "--target", TARGET, "--source", "uploads",
                       "--to", str(dest), timeout=300)
    report = _json(done)
    assert report["status"] == "succeeded", report
    assert report["documents"]["version_id"] == v1["id"]
    assert datetime.fromisoformat(report["documents"]["scan_finished_at"]) <= t
    assert _tree(dest / "documents") == state_at_t
    last_commit = datetime.fromisoformat(report["database"]["last_commit_at"])
    assert last_commit <= t
    with psycopg.connect(host="127.0.0.1", port=report["database"]["port"], dbname=site.cluster.conn().dbname,
                         user="postgres", autocommit=True) as c:
        assert [r[0] for r in c.execute("SELECT n FROM platform_marks ORDER BY n")] == [1, 2]
        (newest,), = c.execute("SELECT max(at) FROM platform_marks").fetchall()
        assert newest <= last_commit  # the report's time is the last commit the database replayed


@pytest.mark.django_db
def test_console_page_refuses_bad_input_and_other_roles(settings, tmp_path):
    from django.test import Client

    from apps.core.services import SYSTEM
    from apps.databases.models import DatabaseTarget
    from apps.databases.services import save_target
    from apps.documents.models import DocumentSource
    from apps.jobs.models import Job
    from tests.helpers import make_user

    settings.RECOVERY_ROOT = tmp_path / "recoveries"
    save_target(target=DatabaseTarget(name="shop", host="db.invalid", dbname="shop", user="u"), actor=SYSTEM)
    DocumentSource.objects.create(name="uploads", root_path=str(tmp_path))
    url = "/dr/platform/"
    for role in ("viewer", "operator"):
        c = Client()
        c.force_login(make_user(f"platform-{role}", role))
        assert c.get(url).status_code == 403 and c.post(url, {}).status_code == 403
    admin = Client()
    admin.force_login(make_user("platform-admin", "admin"))
    page = admin.get(url)
    assert page.status_code == 200 and b'value="shop"' in page.content and b'value="uploads"' in page.content
    assert b"platform-link" in admin.get("/dr/").content

    good = {"target": "shop", "source": "uploads", "at": "2026-11-25 12:00:00+00", "directory": "noon"}
    for bad, message in (({"at": "yesterday"}, b"UTC offset"), ({"at": "2026-11-25 12:00:00"}, b"UTC offset"),
                         ({"directory": "../etc"}, b"directory"), ({"target": "nope"}, b"Select a valid choice")):
        r = admin.post(url, good | bad)
        assert r.status_code == 400 and message in r.content, (bad, r.content[-1500:])
    # Valid input, but nothing to recover from: said on the page, no job, no directory.
    r = admin.post(url, good, follow=True)
    assert r.status_code == 200 and b"has no version whose scan ended" in r.content
    assert not Job.objects.filter(type="recovery.platform").exists()
    assert not (settings.RECOVERY_ROOT / "noon").exists()
