"""A restore into a new directory is complete or absent: `manage.py docs_restore`, run as a real process with its
own catalog, is killed with SIGKILL in the middle of writing files (held there by a hook in the process, one
process or split over forked children): the destination does not exist, and the next restore into it succeeds
and removes what the killed one left. In-process: the staging directory of a running restore is left alone, a
destination made by someone else during the restore is restored into file by file, and a restore into an
existing directory still never overwrites."""
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from apps.documents import restore, staging
from apps.documents.restore import restore_version
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

ROOT = Path(__file__).resolve().parent.parent

# The killed process: docs_restore, whose file writer writes a few files, then says so and waits to be killed.
HOOK = """
import os, sys, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
import django
django.setup()
from apps.documents import restore
if os.environ["SPLIT"] == "1":
    restore.PARALLEL_MIN_FILES, restore.PARALLEL_MIN_BYTES = 1, 0
    os.cpu_count = lambda: 2
real, written = restore._write_file, []
def held(e, **kw):
    size = real(e, **kw)
    written.append(e["path"])
    if len(written) == 5:
        open(os.environ["MARKER"] + "." + str(os.getpid()), "w").close()
        time.sleep(600)
    return size
restore._write_file = held
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def site():
    """(environment of a separate app instance, version id, the backed-up tree, a scratch directory)."""
    var = Path(tempfile.mkdtemp(prefix="docs-restore-kill-"))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{var / 'catalog.sqlite3'}", "BACKUP_LOCAL_ROOT": str(var / "b")}
    manage("migrate", "--noinput", "-v0", env=env)
    tree = var / "tree"
    make_tree(tree, files=120)
    manage("docs_source_add", "docs", "--path", str(tree), env=env)
    version = json.loads(manage("docs_backup", "docs", env=env).stdout.strip().splitlines()[-1])["id"]
    yield env, version, tree, var
    subprocess.run(["rm", "-rf", str(var)], check=False)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever inherited it, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("split", ["0", "1"])
def test_a_restore_killed_midway_leaves_no_destination_and_the_next_one_succeeds(site, split):
    env, version, tree, var = site
    dest = var / f"out-{split}" / "restored"  # its parent does not exist either
    marker = var / f"held-{split}"
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", HOOK, "docs_restore", version, "--to", str(dest)], cwd=ROOT,
                                env={**env, "SPLIT": split, "MARKER": str(marker)}, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not list(var.glob(f"held-{split}.*")):
                assert proc.poll() is None, "the restore ended before the hook held it"
                assert time.monotonic() < deadline, "the hook never held the restore"
                time.sleep(0.02)
            writers = [int(p.name.rpartition(".")[2]) for p in var.glob(f"held-{split}.*")]
            assert (writers != [proc.pid]) == (split == "1")  # split: the files are written by forked children
            staged = list(dest.parent.glob(".restored.restore-*"))
            assert len(staged) == 1 and [p for p in staged[0].rglob("*") if p.is_file()]
            assert not dest.exists()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in writers if pid != proc.pid):  # the children die with their parent
        assert time.monotonic() < deadline, "a forked writer outlived its killed parent"
        time.sleep(0.05)
    assert not dest.exists() and not os.path.lexists(dest)
    assert len(list(dest.parent.glob(".restored.restore-*"))) == 1  # left by the killed restore: not a result

    out = json.loads(manage("docs_restore", version, "--to", str(dest), env=env).stdout.strip().splitlines()[-1])
    assert out["status"] == "succeeded" and out["files"] == 121
    assert snapshot(dest) == snapshot(tree)
    assert sorted(os.listdir(dest.parent)) == ["restored"]  # the killed restore's staging directory is gone


@pytest.mark.django_db
def test_a_restore_into_a_new_directory_leaves_nothing_beside_it_and_gets_the_usual_mode(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, files=10)
    version = backup(add_source("docs", tree))
    old = os.umask(0o027)
    try:
        result = restore_version(version=version, to=str(tmp_path / "new" / "out"))
    finally:
        os.umask(old)
    assert result.ok and snapshot(tmp_path / "new" / "out") == snapshot(tree)
    assert os.listdir(tmp_path / "new") == ["out"]
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "out").st_mode) == 0o750
    assert not [p for p in (tmp_path / "new").rglob("*") if restore.TMP_MARK in p.name]


@pytest.mark.django_db
def test_a_running_restores_staging_directory_is_left_alone_and_others_are_not_mistaken_for_it(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "a.txt", b"a")
    version = backup(add_source("docs", tree))
    dest = tmp_path / "out"
    running = staging.Staging.create(str(dest), umask=0o022)  # holds its lock, as a live restore does
    write(Path(running.path) / "partial.txt", b"half")
    lookalikes = [tmp_path / ".out.restore-notours", tmp_path / ".outer.restore-0123abcd"]
    for p in lookalikes:
        p.mkdir()
    try:
        assert restore_version(version=version, to=str(dest)).ok
        assert (dest / "a.txt").read_bytes() == b"a" and os.listdir(dest) == ["a.txt"]
        assert (Path(running.path) / "partial.txt").exists()
        assert all(p.is_dir() for p in lookalikes)
    finally:
        running.discard()
    assert not os.path.lexists(running.path)


@pytest.mark.django_db
def test_a_destination_made_during_the_restore_is_restored_into_without_overwriting(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    write(tree / "a.txt", b"from the backup")
    write(tree / "b.txt", b"b")
    version = backup(add_source("docs", tree))
    (tmp_path / "r").mkdir()
    dest = tmp_path / "r" / "out"
    real = restore.write_entries

    def racing(**kw):
        result = real(**kw)
        if kw.get("fresh"):  # someone makes the destination (with a file of theirs) before the rename
            write(dest / "a.txt", b"theirs")
        return result

    monkeypatch.setattr(restore, "write_entries", racing)
    result = restore_version(version=version, to=str(dest))
    assert result.skipped_existing == ["a.txt"] and result.files == 1 and result.ok
    assert (dest / "a.txt").read_bytes() == b"theirs" and (dest / "b.txt").read_bytes() == b"b"
    assert os.listdir(tmp_path / "r") == ["out"]


@pytest.mark.django_db
def test_a_failed_restore_into_a_new_directory_leaves_nothing(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    make_tree(tree, files=10)
    version = backup(add_source("docs", tree))

    def broken(**kw):
        raise RuntimeError("storage went away")

    monkeypatch.setattr(restore, "write_entries", broken)
    (tmp_path / "r").mkdir()
    with pytest.raises(RuntimeError):
        restore_version(version=version, to=str(tmp_path / "r" / "out"))
    assert os.listdir(tmp_path / "r") == []


def test_a_staged_tree_never_replaces_a_directory_even_an_empty_one(tmp_path):
    from apps.documents.renames import rename_dir_noreplace

    write(tmp_path / "staged" / "f.txt", b"restored")
    (tmp_path / "theirs").mkdir()  # os.rename would silently replace an empty directory
    with pytest.raises(FileExistsError):
        rename_dir_noreplace(str(tmp_path / "staged"), str(tmp_path / "theirs"))
    assert os.listdir(tmp_path / "theirs") == [] and (tmp_path / "staged" / "f.txt").exists()
    rename_dir_noreplace(str(tmp_path / "staged"), str(tmp_path / "new"))
    assert (tmp_path / "new" / "f.txt").read_bytes() == b"restored" and not (tmp_path / "staged").exists()
