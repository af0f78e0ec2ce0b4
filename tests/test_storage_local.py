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
