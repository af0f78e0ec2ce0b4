"""The local backend behind the storage interface: atomic commits, safe keys, listing."""
import pytest

from apps.storage import backends
from apps.storage.backends.base import StorageError
from apps.storage.models import StorageLocation


@pytest.fixture
def backend(tmp_path):
    return backends.for_location(StorageLocation(name="t", kind="local", path=str(tmp_path)))


def test_registry_knows_local_and_refuses_unknown():
    assert backends.get("local").kind == "local"
    with pytest.raises(StorageError, match="No storage backend for kind 'ftp'"):
        backends.get("ftp")


def test_put_get_stat_list_delete(backend, tmp_path):
    info = backend.put_stream("a/b/c.bin", [b"hello ", b"world"])
    assert info.size == 11
    assert b"".join(backend.get_stream("a/b/c.bin", chunk_size=3)) == b"hello world"
    assert backend.stat("a/b/c.bin").size == 11
    assert backend.stat("a/b/missing") is None
    assert [o.key for o in backend.list("a")] == ["a/b/c.bin"]
    backend.delete("a/b/c.bin")
    assert backend.stat("a/b/c.bin") is None
    assert list(tmp_path.iterdir()) == []  # empty directories pruned


def test_failed_stream_leaves_nothing(backend, tmp_path):
    def broken():
        yield b"partial data"
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        backend.put_stream("x/y.bin", broken())
    assert backend.stat("x/y.bin") is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_failed_overwrite_keeps_the_old_object(backend):
    backend.put_bytes("k.bin", b"old")

    def broken():
        yield b"new"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        backend.put_stream("k.bin", broken())
    assert backend.get_bytes("k.bin") == b"old"


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "", "a//b", "./a"])
def test_unsafe_keys_are_refused(backend, key):
    with pytest.raises(StorageError):
        backend.put_bytes(key, b"x")


def test_missing_object_raises(backend):
    with pytest.raises(backends.ObjectMissing):
        backend.get_bytes("nope")


def test_partial_files_carry_the_job_and_only_a_dead_jobs_are_removed(backend, tmp_path):
    from apps.jobs import liveness

    def held(seen: list):
        yield b"first"
        seen.extend(p.name for p in tmp_path.rglob("*.partial-*"))
        raise RuntimeError("stop here")

    seen: list = []
    with liveness.running_job("01JOBAAAA"), pytest.raises(RuntimeError):
        backend.put_stream("k/a.bin", held(seen))
    assert len(seen) == 1 and seen[0].startswith("a.bin.partial-01JOBAAAA-"), seen
    with pytest.raises(RuntimeError):  # outside a job
        backend.put_stream("k/b.bin", held(seen := []))
    assert seen[0].startswith("b.bin.partial-nojob-"), seen
    (tmp_path / "k").mkdir(exist_ok=True)
    for name in ("a.bin.partial-01JOBAAAA-1", "b.bin.partial-01JOBAAAAB-2", "c.bin.partial-nojob-3", "d.bin"):
        (tmp_path / "k" / name).write_bytes(b"x")
    assert backend.remove_partials("01JOBAAAA") == ["k/a.bin.partial-01JOBAAAA-1"]
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [
        "b.bin.partial-01JOBAAAAB-2", "c.bin.partial-nojob-3", "d.bin"]
    assert backend.remove_partials("") == []


@pytest.mark.pgmeta
def test_settling_a_dead_job_removes_its_partial_files_in_every_local_location(db, tmp_path):
    """jobs.services.reap_dead_jobs -> job_abandoned -> the storage app removes the dead job's partial files."""
    import socket
    import subprocess

    from django.utils import timezone

    from apps.jobs import liveness
    from apps.jobs.models import Job, JobStatus
    from apps.jobs.services import reap_dead_jobs

    gone = subprocess.Popen(["true"])
    gone.wait()
    now = timezone.now()
    dead = Job.objects.create(type="backup.database", status=JobStatus.RUNNING, heartbeat_at=now,
                              worker=f"{socket.gethostname()}:{gone.pid}:1:{liveness._pid_namespace()}")
    live = Job.objects.create(type="backup.database", status=JobStatus.RUNNING, heartbeat_at=now,
                              worker=liveness.this_process())
    files = []
    for n in (1, 2):
        StorageLocation.objects.create(name=f"l{n}", kind="local", path=str(tmp_path / f"l{n}"))
        for job in (dead, live):
            f = tmp_path / f"l{n}" / "targets" / "t" / "backups" / f"b{n}" / f"dump.pgc.partial-{job.pk}-ab"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x")
            files.append((job, f))
    assert reap_dead_jobs() == 1
    assert Job.objects.get(pk=dead.pk).status == JobStatus.FAILED
    assert [f.exists() for job, f in files] == [job == live for job, f in files]
