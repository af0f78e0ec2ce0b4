"""The documents API and CLI: roles, the seed endpoints, browse, restore under the configured root, exit codes."""
import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.documents.models import DocumentSource, DocumentVersion
from apps.jobs.models import Job
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

pytestmark = pytest.mark.django_db
V1 = "/v1/backup-recovery/documents"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, files=12)
    return root


@pytest.fixture
def restore_root(settings, tmp_path):
    settings.DOCUMENTS_RESTORE_ROOT = tmp_path / "restores"
    return settings.DOCUMENTS_RESTORE_ROOT


def test_sources_crud_admin_only_and_audited(api_as, tree):
    from apps.core.models import AuditEvent

    body = {"name": "contracts", "root_path": str(tree), "include": ["*.bin"], "exclude": ["deep"]}
    assert api_as("operator").post(f"{V1}/sources/", body, format="json").status_code == 403
    admin = api_as("admin")
    r = admin.post(f"{V1}/sources/", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["follow_symlinks"] is False and r.json()["storage_location"] is None
    assert AuditEvent.objects.filter(action="documents.source.created").exists()
    viewer = api_as("viewer")
    assert [s["name"] for s in viewer.get(f"{V1}/sources/").json()["results"]] == ["contracts"]
    r = admin.patch(f"{V1}/sources/contracts/".replace("contracts", str(r.json()["id"])), {"root_path": "relative"},
                    format="json")
    assert r.status_code == 400 and "absolute" in json.dumps(r.json())
    bad = admin.post(f"{V1}/sources/", {**body, "name": "x", "include": "not-a-list"}, format="json")
    assert bad.status_code == 400


def test_backup_list_browse_statistics_and_roles(api_as, tree):
    add_source("docs", tree)
    assert api_as("viewer").post(f"{V1}/backup", {"source": "docs"}, format="json").status_code == 403
    operator = api_as("operator")
    r = operator.post(f"{V1}/backup", {"source": "docs"}, format="json")
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.type == "documents.backup" and job.status == "succeeded"  # Q_SYNC runs it inline
    version_id = r.json()["version_id"]
    assert operator.post(f"{V1}/backup", {"source": "nope"}, format="json").status_code == 400

    viewer = api_as("viewer")
    rows = viewer.get(f"{V1}/backups").json()["results"]
    assert rows[0]["id"] == version_id and rows[0]["status"] == "succeeded"
    assert rows[0]["files"] == 13 and rows[0]["files_new"] == 13 and rows[0]["bytes_added"] > 0
    top = viewer.get(f"{V1}/backups/{version_id}/files").json()
    assert {(e["path"], e["type"]) for e in top} >= {("big.dat", "file"), ("dir0", "dir"), ("empty-dir", "dir")}
    sub = viewer.get(f"{V1}/backups/{version_id}/files", {"path": "dir1"}).json()
    assert {e["path"] for e in sub} == {"dir1/file1.bin", "dir1/file5.bin"} or all(
        e["path"].startswith("dir1/") for e in sub)
    one = viewer.get(f"{V1}/backups/{version_id}/files", {"path": "big.dat"}).json()
    assert len(one) == 1 and one[0]["size"] == (tree / "big.dat").stat().st_size
    assert viewer.get(f"{V1}/backups/{version_id}/files", {"path": "../etc"}).status_code == 400
    assert viewer.get(f"{V1}/backups/{version_id}/files", {"path": "no/such"}).status_code == 404
    assert viewer.get(f"{V1}/backups/01ARZ3NDEKTSV4RRFFQ69G5FAV/files").status_code == 404
    detail = viewer.get(f"{V1}/backups/{version_id}").json()
    assert detail["source"] == "docs" and detail["job"] == job.pk and detail["problems"] == []
    stats = viewer.get(f"{V1}/statistics").json()
    assert stats["total_versions"] == 1 and stats["by_status"] == {"succeeded": 1}
    assert stats["stored_bytes"] > 0 and stats["sources"][0]["files"] == 13


def test_conflicting_backup_is_409(api_as, tree):
    source = add_source("docs", tree)
    DocumentVersion.objects.create(source=source, storage_location=__import__(
        "apps.storage.services", fromlist=["x"]).ensure_default_location())  # a queued version
    r = api_as("operator").post(f"{V1}/backup", {"source": "docs"}, format="json")
    assert r.status_code == 409 and "already queued" in r.json()["detail"]


def test_verify_endpoint_operator_and_job_result(api_as, tree):
    version = backup(add_source("docs", tree))
    assert api_as("viewer").post(f"{V1}/backups/{version.pk}/verify").status_code == 403
    r = api_as("operator").post(f"{V1}/backups/{version.pk}/verify")
    assert r.status_code == 202
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.type == "documents.verify" and job.status == "succeeded"
    assert job.result["ok"] and job.result["files"] == 13


def test_restore_endpoint_admin_only_under_the_configured_root(api_as, tree, restore_root):
    version = backup(add_source("docs", tree))
    url = f"{V1}/backups/{version.pk}/restore"
    assert api_as("operator").post(url, {"directory": "r1"}, format="json").status_code == 403
    admin = api_as("admin")
    for bad in ("../r1", "/tmp/x", "a/b", ""):
        r = admin.post(url, {"directory": bad}, format="json")
        assert r.status_code == 400, bad
    assert admin.post(url, {"directory": "r1", "path": "../x"}, format="json").status_code == 400
    r = admin.post(url, {"directory": "r1"}, format="json")
    assert r.status_code == 202, r.content
    assert Job.objects.get(pk=r.json()["job_id"]).status == "succeeded"
    assert snapshot(restore_root / "r1") == snapshot(tree)
    r = admin.post(url, {"directory": "r2", "path": "big.dat"}, format="json")
    assert r.status_code == 202
    assert os.listdir(restore_root / "r2") == ["big.dat"]
    assert admin.post(f"{V1}/backups/01ARZ3NDEKTSV4RRFFQ69G5FAV/restore", {"directory": "r3"},
                      format="json").status_code == 404


def test_failed_version_cannot_be_browsed_or_restored(api_as, tmp_path, restore_root):
    version = backup(add_source("gone", tmp_path / "missing"))
    assert version.status == "failed"
    admin = api_as("admin")
    assert admin.get(f"{V1}/backups/{version.pk}/files").status_code == 400
    assert admin.post(f"{V1}/backups/{version.pk}/restore", {"directory": "x"}, format="json").status_code == 400
    assert admin.post(f"{V1}/backups/{version.pk}/verify").status_code == 400


# --- CLI ---------------------------------------------------------------------------------------------


def _cmd(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_cli_source_backup_restore_export_verify(tmp_path, tree, backup_root):
    added = _cmd("docs_source_add", "cli", "--path", str(tree), "--exclude", "*.dat")
    assert added["exclude"] == ["*.dat"]
    first = _cmd("docs_backup", "cli")
    assert first["status"] == "succeeded" and first["files"] == 12
    assert {"id", "status", "files", "bytes_added", "bytes_stored"} <= set(first)
    write(tree / "dir0" / "new.txt", b"new")
    second = _cmd("docs_backup", "cli")
    assert second["files_new"] == 1 and second["bytes_added"] < first["bytes_added"]
    restored = _cmd("docs_restore", first["id"], "--to", str(tmp_path / "r"))
    assert restored["status"] == "succeeded" and restored["files"] == 12
    assert not (tmp_path / "r" / "big.dat").exists() and not (tmp_path / "r" / "dir0" / "new.txt").exists()
    one = _cmd("docs_restore", second["id"], "--to", str(tmp_path / "one"), "--path", "dir0/new.txt")
    assert one["files"] == 1 and (tmp_path / "one" / "dir0" / "new.txt").read_bytes() == b"new"
    exported = _cmd("docs_export", second["id"], "--to", str(tmp_path / "v.tar.gz"))
    assert exported["files"] == 13
    assert _cmd("docs_verify", second["id"])["ok"] is True
    # A damaged pack: docs_verify exits non-zero naming the files.
    from apps.documents.models import DocumentPack

    for pack in DocumentPack.objects.all():
        (backup_root / pack.key).unlink()
    with pytest.raises(CommandError) as exc:
        call_command("docs_verify", second["id"], stdout=StringIO(), stderr=StringIO())
    assert exc.value.returncode == 1 and "missing" in str(exc.value)


def test_cli_failures_exit_non_zero(tmp_path):
    with pytest.raises(CommandError):
        call_command("docs_backup", "nope", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("docs_source_add", "bad", "--path", "relative/path", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("docs_restore", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--to", str(tmp_path), stdout=StringIO())
    DocumentSource.objects.create(name="gone", root_path=str(tmp_path / "missing"))
    with pytest.raises(CommandError) as exc:
        call_command("docs_backup", "gone", stdout=StringIO())
    assert "failed" in str(exc.value)


def test_cli_exit_status_and_last_line_in_a_real_process(tmp_path, tree):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
           "BACKUP_LOCAL_ROOT": str(tmp_path / "repo")}
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["migrate", "-v0"], env=env, check=True)
    subprocess.run(manage + ["docs_source_add", "real", "--path", str(tree)], env=env, check=True,
                   capture_output=True)
    ok = subprocess.run(manage + ["docs_backup", "real"], env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["status"] == "succeeded"
    bad = subprocess.run(manage + ["docs_verify", "01ARZ3NDEKTSV4RRFFQ69G5FAV"], env=env, capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 1 and "No document version" in bad.stderr


def test_schedule_backs_up_every_enabled_source(tree, tmp_path):
    from apps.documents.tasks import backup_all_sources
    from apps.jobs.schedules import SCHEDULES

    assert ("Full document backups", "apps.documents.tasks.backup_all_sources", "0 3 * * *") in SCHEDULES
    add_source("one", tree)
    add_source("two", tree)
    add_source("off", tree, enabled=False)
    jobs = backup_all_sources()
    assert len(jobs) == 2
    assert sorted(DocumentVersion.objects.values_list("source__name", flat=True)) == ["one", "two"]


def test_a_failed_document_backup_raises_the_backup_failed_alert(tmp_path, tree):
    """The monitoring rule reads failed `documents.backup` jobs by their `source` argument: a real failure of
    ours must be what it sees, and the next success clears it."""
    from apps.monitoring import engine
    from apps.monitoring.models import Alert

    source = add_source("contracts", tmp_path / "not-there-yet")
    assert backup(source).status == "failed"
    engine.evaluate(types=["backup_failed"])
    alert = Alert.objects.get(type="backup_failed", target="contracts")
    assert alert.status == "open" and "cannot be read" in alert.message
    source.root_path = str(tree)
    source.save()
    assert backup(source).status == "succeeded"
    engine.evaluate(types=["backup_failed"])
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_api_and_cli_object_sources_and_replica_locations(api_as, tree, tmp_path, cloud_location):
    bucket, spare = cloud_location("local", "bucket"), cloud_location("local", "spare")
    admin = api_as("admin")
    r = admin.post(f"{V1}/sources/", {"name": "objs", "object_location": "bucket", "prefix": "/inv/",
                                      "replica_locations": ["spare"]}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["prefix"] == "inv" and r.json()["replica_locations"] == ["spare"] and r.json()["root_path"] == ""
    both = admin.post(f"{V1}/sources/", {"name": "both", "root_path": str(tree), "object_location": "bucket"},
                      format="json")
    assert both.status_code == 400 and "not both" in json.dumps(both.json())
    neither = admin.post(f"{V1}/sources/", {"name": "neither"}, format="json")
    assert neither.status_code == 400
    bad = admin.post(f"{V1}/sources/", {"name": "dots", "object_location": "bucket", "prefix": "a/../b"},
                     format="json")
    assert bad.status_code == 400 and "prefix" in bad.json().get("errors", bad.json()).__str__()

    out = StringIO()
    call_command("docs_source_add", "tree", "--path", str(tree), "--replica", "spare", stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["replicas"] == ["spare"]
    with pytest.raises(CommandError, match="No storage location"):
        call_command("docs_source_add", "x", "--objects", "nowhere", stdout=StringIO())
    version = backup(DocumentSource.objects.get(name="tree"))  # replicated inline (Q_SYNC in tests)
    listed = api_as("viewer").get(f"{V1}/backups/{version.pk}").json()
    assert [(c["location"], c["status"]) for c in listed["replicas"]] == [("spare", "present")]
