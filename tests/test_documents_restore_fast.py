"""The restore's fast paths keep its rules: files split over forked processes restore byte-identical, keep
existing files, name damaged files and leave no partial file; modes and times come back whatever the umask;
a child process that dies has its files reported failed, never restored."""
import os
import stat
from pathlib import Path

import pytest

from apps.documents import forked, restore
from apps.documents.models import DocumentChunk
from apps.documents.restore import restore_version
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

pytestmark = pytest.mark.django_db


@pytest.fixture
def split_always(monkeypatch):
    """Every restore split over processes, however small (the threshold is for speed, not behaviour)."""
    monkeypatch.setattr(restore, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(restore, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    runs = []
    real = forked.run

    def counting(parts, work, **kw):
        runs.append(len(parts))
        return real(parts, work, **kw)

    monkeypatch.setattr(forked, "run", counting)
    return runs


def test_a_restore_split_over_processes_is_identical_and_keeps_existing_files(tmp_path, split_always):
    tree = tmp_path / "tree"
    make_tree(tree, files=60)
    source = add_source("docs", tree)
    first = backup(source)
    write(tree / "dir1" / "file1.bin", b"changed after the first version")
    second = backup(source)
    out = tmp_path / "out"
    result = restore_version(version=second, to=str(out))
    assert split_always == [2]
    assert result.ok and result.files == 61 and snapshot(out) == snapshot(tree)
    assert not list(out.rglob(".restore-*"))
    # Into a directory that has some of the files: those are kept, the others written.
    old = tmp_path / "old"
    write(old / "dir1" / "file1.bin", b"mine")
    result = restore_version(version=first, to=str(old))
    assert result.skipped_existing == ["dir1/file1.bin"] and result.files == 60
    assert (old / "dir1" / "file1.bin").read_bytes() == b"mine"


def test_a_damaged_pack_fails_its_files_by_path_in_a_split_restore(tmp_path, backup_root, split_always):
    tree = tmp_path / "tree"
    make_tree(tree, files=60)
    version = backup(add_source("docs", tree))
    chunk = DocumentChunk.objects.order_by("-length").first()  # a chunk of big.dat, the largest file
    path = backup_root / chunk.pack.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = restore_version(version=version, to=str(out))
    assert split_always == [2]
    failed = {f["path"] for f in result.failed}
    assert "big.dat" in failed and not (out / "big.dat").exists() and not result.ok
    assert not list(out.rglob(".restore-*"))
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written and not written & failed and len(written) + len(failed) == 61


def test_a_child_that_dies_has_its_files_reported_failed(tmp_path, monkeypatch, split_always):
    tree = tmp_path / "tree"
    make_tree(tree, files=60)
    version = backup(add_source("docs", tree))
    real = restore._write_file
    parent = os.getpid()

    def dying(e, **kw):
        if os.getpid() != parent and e["path"] == "dir1/file1.bin":
            os._exit(9)  # killed midway, as by the OOM killer
        return real(e, **kw)

    monkeypatch.setattr(restore, "_write_file", dying)
    result = restore_version(version=version, to=str(tmp_path / "out"))
    died = {f["path"] for f in result.failed if "died" in f["problem"]}
    assert "dir1/file1.bin" in died and not result.ok
    assert result.files + len(died) == 61


def test_forked_run_sums_progress_and_reports_a_dead_child_as_none():
    seen = []

    def work(part, report):
        if part == "die":
            os._exit(3)
        if part == "raise":
            raise RuntimeError("boom")
        report(part)
        report(part)
        return {"pid": os.getpid(), "part": part}

    got = forked.run([5, "die", 7, "raise"], work, on_progress=seen.append)
    assert got[1] is None and got[3] is None
    assert got[0]["part"] == 5 and got[2]["part"] == 7 and got[0]["pid"] != os.getpid() != got[2]["pid"]
    assert seen[-1] == 24 and sorted(seen) == seen


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_modes_and_times_come_back_whatever_the_umask(tmp_path, umask):
    tree = tmp_path / "tree"
    modes = {"private.txt": 0o600, "script.sh": 0o755, "readonly.txt": 0o444, "group.txt": 0o640,
             "setgid.bin": 0o2755}
    for name, mode in modes.items():
        write(tree / name, name.encode() * 100)
        os.chmod(tree / name, mode)
        os.utime(tree / name, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    version = backup(add_source("docs", tree))
    old = os.umask(umask)
    try:
        result = restore_version(version=version, to=str(tmp_path / "out"))
    finally:
        os.umask(old)
    assert result.ok and result.files == len(modes)
    for name, mode in modes.items():
        st = os.stat(tmp_path / "out" / name)
        assert stat.S_IMODE(st.st_mode) == mode, name
        assert st.st_mtime_ns == 1_600_000_000_123_456_789
        assert Path(tmp_path / "out" / name).read_bytes() == name.encode() * 100


def test_decoder_without_the_stored_hash_still_authenticates_and_still_hashes_plain_artifacts():
    """hash_stored=False (what a restore's packs are decoded with) drops only a redundant hash: an encrypted
    artifact's frames are authenticated, so any flipped byte fails; an unencrypted one is hashed anyway."""
    from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
    from apps.pipeline.keys import Keyring, generate_spec

    keyring = Keyring.parse(generate_spec("k1"))
    raw = os.urandom(200_000)
    for ring in (keyring, None):
        enc = Encoder(compression_name="none", keyring=ring, frame_size=32 * 1024)
        stored = b"".join(enc.encode([raw]))
        expected = enc.stats.sha256_stored
        dec = Decoder(keyring=ring, expected_sha256_stored=expected, hash_raw=False, hash_stored=False)
        assert b"".join(dec.decode([stored])) == raw
        assert dec.stats.sha256_stored == ("" if ring else expected)  # not computed only when encrypted
        for pos in (len(stored) // 3, len(stored) - 5):
            bad = bytearray(stored)
            bad[pos] ^= 1
            with pytest.raises(ArtifactError):
                b"".join(Decoder(keyring=ring, expected_sha256_stored=expected, hash_raw=False,
                                 hash_stored=False).decode([bytes(bad)]))



def test_while_a_restore_runs_freed_pack_buffers_are_reused_without_page_faults():
    """Three 16 MB buffers made, touched and freed, again and again, in a thread (as the pack reader does): with
    glibc's defaults each round faults their pages in anew (about 12,000 faults); during a restore only the first."""
    import resource
    import threading

    from apps.documents import heap

    def rounds() -> list[int]:
        out = []
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            bufs = [bytearray(16 << 20) for _ in range(3)]
            for buf in bufs:
                buf[::4096] = b"x" * len(buf[::4096])
            del bufs, buf
            out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return out

    got = []
    with heap.kept(), heap.kept():  # nested, as a restore inside another may be
        reader = threading.Thread(target=lambda: got.append(rounds()))
        reader.start()
        reader.join()
    assert got[0][1] < 1000 and got[0][2] < 1000, got
