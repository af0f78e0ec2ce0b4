"""Document backups: versions restore byte-identical, unchanged data is not stored twice, files that change
while being read are recorded."""
import os
import time

import pytest

from apps.documents.models import DocumentChunk, DocumentPack, VersionStatus
from apps.documents.restore import restore_version
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

pytestmark = pytest.mark.django_db


def test_three_versions_restore_byte_identical_to_each_state(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "link").symlink_to("dir0/deep/file0.bin")
    source = add_source("docs", tree)
    states, versions = [], []
    states.append(snapshot(tree))
    versions.append(backup(source))
    # State 2: one file changed, one removed, one added, a byte in the middle of the big file changed.
    write(tree / "dir1" / "file1.bin", b"changed contents")
    os.unlink(tree / "dir2" / "file2.bin")
    write(tree / "new" / "added.txt", b"a new file")
    with open(tree / "big.dat", "r+b") as fh:
        fh.seek(1 << 20)
        fh.write(b"X")
    states.append(snapshot(tree))
    versions.append(backup(source))
    # State 3: the directory of state 2's new file goes, another file is truncated to nothing.
    (tree / "new" / "added.txt").unlink()
    (tree / "new").rmdir()
    write(tree / "dir3" / "deep" / "file3.bin", b"")
    states.append(snapshot(tree))
    versions.append(backup(source))

    assert [v.status for v in versions] == [VersionStatus.SUCCEEDED] * 3
    assert versions[1].parent_id == versions[0].pk and versions[2].parent_id == versions[1].pk
    assert versions[1].files_new == 1 and versions[1].files_changed == 2 and versions[1].files_removed == 1
    assert versions[2].files_removed == 1 and versions[2].files_changed == 1
    for i, (state, version) in enumerate(zip(states, versions)):
        out = tmp_path / f"restore{i}"
        result = restore_version(version=version, to=str(out))
        assert result.ok and not result.refused
        assert snapshot(out) == state, f"version {i + 1} does not restore to its state"


def test_unchanged_tree_second_version_stores_almost_nothing(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, files=60)
    source = add_source("docs", tree)
    first = backup(source)
    packs_before = DocumentPack.objects.count()
    second = backup(source)
    assert first.bytes_added > 3 << 20  # the big random file at least
    assert second.status == VersionStatus.SUCCEEDED
    assert DocumentPack.objects.count() == packs_before  # no new pack: only the manifest was written
    assert second.bytes_added < 20_000, second.bytes_added
    assert second.files == first.files and second.files_new == second.files_changed == second.files_removed == 0
    assert second.bytes_stored >= first.bytes_stored - 20_000


def test_same_content_in_another_source_is_not_stored_again(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a, seed=5)
    make_tree(b, seed=5)  # the same bytes, other inodes and times
    first = backup(add_source("a", a))
    chunks = DocumentChunk.objects.count()
    second = backup(add_source("b", b))
    assert DocumentChunk.objects.count() == chunks
    assert second.bytes_added < first.bytes_added / 20


def test_changed_part_of_a_large_file_stores_about_one_chunk(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "large.bin", os.urandom(24 << 20))
    source = add_source("docs", tree)
    first = backup(source)
    with open(tree / "large.bin", "r+b") as fh:
        fh.seek(12 << 20)
        fh.write(b"inserted bytes")
    second = backup(source)
    assert second.files_changed == 1
    assert second.bytes_added < 4 * (8 << 20) and second.bytes_added < first.bytes_added / 2


def test_single_file_restore_from_an_old_version(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    source = add_source("docs", tree)
    old_bytes = (tree / "dir1" / "file1.bin").read_bytes()
    old = backup(source)
    write(tree / "dir1" / "file1.bin", b"new contents")
    backup(source)
    out = tmp_path / "out"
    result = restore_version(version=old, to=str(out), path="dir1/file1.bin")
    assert result.files == 1
    assert (out / "dir1" / "file1.bin").read_bytes() == old_bytes
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["dir1", "dir1/file1.bin"]


def test_subtree_restore_and_existing_files_are_kept_unless_overwrite(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    version = backup(add_source("docs", tree))
    out = tmp_path / "out"
    write(out / "dir1" / "file1.bin", b"mine")
    result = restore_version(version=version, to=str(out), path="dir1/")
    assert "dir1/file1.bin" in result.skipped_existing
    assert (out / "dir1" / "file1.bin").read_bytes() == b"mine"
    assert not (out / "dir0").exists() and (out / "dir1" / "file5.bin").exists()
    result = restore_version(version=version, to=str(out), path="dir1", overwrite=True)
    assert (out / "dir1" / "file1.bin").read_bytes() == (tree / "dir1" / "file1.bin").read_bytes()
    assert not list(out.rglob("*.restore-*"))  # no temporary files left


def test_include_exclude_and_symlinks_not_followed(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "a.pdf", b"pdf")
    write(tree / "b.txt", b"txt")
    write(tree / "cache" / "c.pdf", b"cached")
    write(tree / "sub" / "d.pdf", b"deep")
    outside = tmp_path / "outside"
    write(outside / "secret.pdf", b"secret")
    (tree / "out-link").symlink_to(outside)
    version = backup(add_source("docs", tree, include=["*.pdf"], exclude=["cache"]))
    out = tmp_path / "out"
    restore_version(version=version, to=str(out))
    assert snapshot(out) == {"a.pdf": snapshot(tree)["a.pdf"], "sub": "dir", "sub/d.pdf": snapshot(tree)["sub/d.pdf"],
                             "out-link": f"-> {outside}"}
    followed = backup(add_source("docs2", tree, include=["*.pdf"], exclude=["cache"], follow_symlinks=True))
    out2 = tmp_path / "out2"
    restore_version(version=followed, to=str(out2))
    assert (out2 / "out-link" / "secret.pdf").read_bytes() == b"secret"


def test_file_that_vanishes_or_changes_while_read_is_recorded_not_fatal(tmp_path, monkeypatch):
    from apps.documents import backup as steps

    tree = tmp_path / "tree"
    make_tree(tree, files=10)
    real_read = steps.VersionWriter._read

    def racing_read(self, path, item):
        if path.endswith("file1.bin"):
            os.unlink(path)
        if path.endswith("file5.bin"):
            entry, _ = real_read(self, path, item)
            return entry, "changed while being read: stored as read"
        return real_read(self, path, item)

    monkeypatch.setattr(steps.VersionWriter, "_read", racing_read)
    version = backup(add_source("docs", tree))
    assert version.status == VersionStatus.SUCCEEDED
    problems = {p["path"]: p["problem"] for p in version.problems}
    assert problems["dir1/file1.bin"] == "vanished before it was read"
    assert "changed" in problems["dir1/file5.bin"]
    assert version.files == 10  # 11 files less the vanished one


def test_growing_file_is_stored_as_read_and_noted(tmp_path):
    """A real change during the read: the file grows between the stat of the walk and the read."""
    from apps.documents import backup as steps

    tree = tmp_path / "tree"
    write(tree / "log.txt", b"x" * 1000)
    real = steps.VersionWriter._read

    def grow_then_read(self, path, item):
        with open(path, "ab") as fh:
            fh.write(b"more")
        time.sleep(0.01)
        return real(self, path, item)

    steps.VersionWriter._read = grow_then_read
    try:
        version = backup(add_source("docs", tree))
    finally:
        steps.VersionWriter._read = real
    out = tmp_path / "out"
    restore_version(version=version, to=str(out))
    assert (out / "log.txt").read_bytes() == b"x" * 1000 + b"more"


def test_missing_source_directory_fails_the_version_and_the_job(tmp_path):
    from apps.jobs.models import Job

    version = backup(add_source("docs", tmp_path / "nowhere"))
    assert version.status == VersionStatus.FAILED
    assert "cannot be read" in version.error
    job = Job.objects.get(pk=version.job_id)
    assert job.type == "documents.backup" and job.status == "failed"


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_versions_in_a_cloud_location_restore_and_verify(kind, cloud_location, tmp_path):
    """The same packs and manifests through the cloud backends (real SDKs against their emulators)."""
    from apps.documents.verify import verify_version

    tree = tmp_path / "tree"
    make_tree(tree, files=12)
    location = cloud_location(kind, path="repo")
    source = add_source("cloud", tree, storage_location=location)
    first = backup(source)
    write(tree / "dir0" / "changed.txt", b"changed")
    second = backup(source)
    assert first.status == second.status == VersionStatus.SUCCEEDED, (first.error, second.error)
    assert second.storage_location == location and second.bytes_added < first.bytes_added / 10
    assert verify_version(version=second)["ok"]
    out = tmp_path / "out"
    assert restore_version(version=second, to=str(out)).ok
    assert snapshot(out) == snapshot(tree)


def test_a_file_rewritten_in_place_with_its_old_mtime_is_read_again(tmp_path):
    """Size, mtime and inode unchanged, content changed (an editor or tool that restores the mtime): the
    changed ctime still sends the file to be read, as restic decides."""
    tree = tmp_path / "tree"
    write(tree / "a.txt", b"version one")
    write(tree / "b.txt", b"untouched")
    source = add_source("docs", tree)
    backup(source)
    st = os.stat(tree / "a.txt")
    time.sleep(0.01)
    with open(tree / "a.txt", "r+b") as fh:  # same inode, same size
        fh.write(b"VERSION TWO")
    os.utime(tree / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(tree / "a.txt")
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    second = backup(source)
    assert (second.files_changed, second.files_new) == (1, 0)
    out = tmp_path / "out"
    assert restore_version(version=second, to=str(out)).ok
    assert (out / "a.txt").read_bytes() == b"VERSION TWO"


@pytest.mark.parametrize("hint", [None, 0, 1000, 3 << 20, (3 << 20) + 5000])
def test_chunking_with_a_stale_size_hint_reads_the_whole_file(hint):
    """The first read asks for the size seen at open plus one; a file that grew (hint too small) or shrank
    is still read to its end, cut and hashed exactly as without a hint."""
    import hashlib
    import io

    from apps.documents import chunking

    data = os.urandom(3 << 20) + b"tail" * 1000
    got_chunks = []
    got = chunking.chunks_of(io.BytesIO(data), lambda sha, piece: got_chunks.append(bytes(piece)), size_hint=hint)
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(got_chunks) == data and len(got.chunks) > 1
    assert got.chunks == chunking.chunks_of(io.BytesIO(data), lambda *_: None).chunks
