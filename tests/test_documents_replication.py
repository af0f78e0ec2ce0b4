"""Document versions replicated to a source's replica locations (a second local directory, an S3 bucket on
moto): a later version copies only its new packs, and a version whose own copy is lost or damaged still
restores and verifies from a replica; a corrupt copy is never replicated."""
import hashlib

import pytest

from apps.core.errors import UserError
from apps.core.services import SYSTEM
from apps.documents import replication
from apps.documents.models import DocumentChunk, DocumentPack, DocumentReplica
from apps.documents.restore import restore_version
from apps.documents.services import save_source
from apps.documents.verify import verify_version
from apps.storage import backends
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_retries(settings):
    settings.REPLICATION_ATTEMPTS = 2
    settings.REPLICATION_BACKOFF_SECONDS = 0.01
    settings.REPLICATION_BACKOFF_MAX_SECONDS = 0.02
    settings.STORAGE_SDK_ATTEMPTS = 1


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_versions_replicate_to_local_and_s3_and_restore_from_a_replica(tmp_path, backup_root, cloud_location,
                                                                      fast_retries):
    tree = tmp_path / "tree"
    make_tree(tree, files=30)
    second_disk, bucket = cloud_location("local", "second-disk"), cloud_location("s3", "offsite")
    source = add_source("docs", tree)
    save_source(source=source, actor=SYSTEM, replica_locations=[second_disk, bucket])

    # The backup job enqueues one replication job per replica location (inline under Q_SYNC in tests).
    first = backup(source)
    replicas = {r.location.name: r for r in DocumentReplica.objects.filter(version=first).select_related("location")}
    assert {n: r.status for n, r in replicas.items()} == {"second-disk": "present", "offsite": "present"}
    own_packs = DocumentPack.objects.filter(location=first.storage_location).count()
    assert replicas["offsite"].packs_copied == own_packs > 0
    s3 = backends.for_location(bucket)
    assert s3.stat(first.manifest_key) is not None

    # A second version: only its new packs are copied.
    write(tree / "dir1" / "new.bin", b"new bytes " * 20_000)
    state2 = snapshot(tree)
    second = backup(source)
    copy = DocumentReplica.objects.get(version=second, location=bucket)
    new_packs = DocumentPack.objects.filter(location=second.storage_location, version=second).count()
    assert copy.status == "present" and copy.packs_copied == new_packs >= 1

    # The version's own copy is lost (every pack and the manifest): it restores from a replica.
    for pack in DocumentPack.objects.filter(location=second.storage_location):
        (backup_root / pack.key).unlink()
    (backup_root / second.manifest_key).unlink()
    out = tmp_path / "out"
    result = restore_version(version=second, to=str(out))
    assert result.ok and result.recovered, result.as_dict()
    assert snapshot(out) == state2
    verified = verify_version(version=second)
    assert verified["ok"] and verified["damaged_packs"] and len(verified["recovered_from_replicas"]) == len(
        verified["damaged_packs"])

    # Without any intact copy left, verify names the files and restore fails (the failure path).
    for loc in (second_disk, bucket):
        DocumentReplica.objects.filter(location=loc).update(status="failed")
    with pytest.raises(UserError, match="manifest of version .* is missing"):
        verify_version(version=second)
    with pytest.raises(UserError, match="manifest"):
        restore_version(version=second, to=str(tmp_path / "out2"))


def test_a_damaged_pack_is_read_from_the_replica_and_a_corrupt_one_never_copied(tmp_path, backup_root,
                                                                                cloud_location, fast_retries):
    tree = tmp_path / "tree"
    make_tree(tree, files=20)
    write(tree / "reports" / "q3.pdf", bytes(range(256)) * 400)
    source = add_source("docs", tree)
    version = backup(source)
    sha = hashlib.sha256((tree / "reports" / "q3.pdf").read_bytes()).hexdigest()
    pack = DocumentChunk.objects.get(sha256=sha, location=version.storage_location).pack

    # Damaged before any replica exists: replicating refuses to copy it, the row ends failed with the reason.
    _flip(backup_root / pack.key, pack.size_stored // 2)
    spare = cloud_location("local", "spare")
    with pytest.raises(backends.StorageError, match="SHA-256"):
        replication.replicate(version=version, location=spare)
    row = DocumentReplica.objects.get(version=version, location=spare)
    assert row.status == "failed" and "SHA-256" in row.last_error
    assert backends.for_location(spare).stat(pack.key) is None
    assert backends.for_location(spare).stat(version.manifest_key) is None  # no manifest without its packs

    # Repaired, replicated, damaged again: verify and restore use the replica's copy.
    _flip(backup_root / pack.key, pack.size_stored // 2)
    assert replication.replicate(version=version, location=spare).status == "present"
    _flip(backup_root / pack.key, pack.size_stored // 2)
    result = verify_version(version=version)
    assert result["ok"] and result["damaged_packs"] == [pack.key] and result["corrupt"] == []
    assert result["recovered_from_replicas"] == [{"pack": pack.key, "from": "spare"}]
    out = tmp_path / "out"
    restored = restore_version(version=version, to=str(out), path="reports/q3.pdf")
    assert restored.ok and (out / "reports" / "q3.pdf").read_bytes() == (tree / "reports" / "q3.pdf").read_bytes()


def test_replica_locations_are_checked(tmp_path, cloud_location):
    tree = tmp_path / "tree"
    tree.mkdir()
    own = cloud_location("local", "own")
    source = add_source("docs", tree, storage_location=own)
    with pytest.raises(UserError, match="differ"):
        save_source(source=source, actor=SYSTEM, replica_locations=[own])


def test_a_replica_whose_job_cannot_be_enqueued_is_recorded_failed(tmp_path, backup_root, cloud_location,
                                                                   fast_retries):
    """The other replica is still copied and the version stays succeeded (the shared enqueue_each)."""
    from apps.storage.models import StorageLocation

    tree = tmp_path / "tree"
    make_tree(tree, files=5)
    good, broken = cloud_location("local", "good-disk"), cloud_location("local", "broken-disk")
    source = add_source("docs", tree)
    save_source(source=source, actor=SYSTEM, replica_locations=[good, broken])
    StorageLocation.objects.filter(pk=broken.pk).update(kind="no-such-kind")  # e.g. a backend since removed
    version = backup(source)
    assert version.status == "succeeded"
    rows = {r.location.name: r for r in DocumentReplica.objects.filter(version=version).select_related("location")}
    assert rows["good-disk"].status == "present"
    assert rows["broken-disk"].status == "failed" and rows["broken-disk"].last_error.startswith("not enqueued")
