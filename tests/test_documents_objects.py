"""Object-store document sources: the objects under a prefix of an S3 (moto) / Azure (Azurite) / GCS location
are backed up in versions, an object changed since the parent is read again (size, time, ETag), the others are
not, include/exclude globs apply to keys, and each version restores byte-identical."""
import hashlib
import random

import pytest

from apps.core.errors import UserError
from apps.core.services import SYSTEM
from apps.documents.models import DocumentSource, VersionStatus
from apps.documents.restore import restore_version
from apps.documents.services import save_source
from apps.storage import backends
from tests.docs_helpers import backup, snapshot

pytestmark = pytest.mark.django_db


def put_objects(backend, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        backend.put_bytes(key, data)


def expected(objects: dict[str, bytes], prefix: str, skip=()) -> dict[str, str]:
    """What a restore of the objects under `prefix` holds: files and their parent directories."""
    out = {}
    for key, data in objects.items():
        if not key.startswith(prefix) or any(s in key for s in skip):
            continue
        rel = key[len(prefix):]
        out[rel] = hashlib.sha256(data).hexdigest()
        parts = rel.split("/")
        for i in range(1, len(parts)):
            out["/".join(parts[:i])] = "dir"
    return out


def object_source(name: str, location, prefix: str, **fields) -> DocumentSource:
    return save_source(source=DocumentSource(name=name, object_location=location, prefix=prefix, **fields),
                       actor=SYSTEM)


def test_s3_prefix_versions_restore_byte_identical(cloud_location, tmp_path):
    bucket = cloud_location("s3")
    store = backends.for_location(bucket)
    rnd = random.Random(3)
    objects = {
        "docs/a.txt": b"first document " * 500,
        "docs/sub/b.bin": rnd.randbytes(2 << 20),  # several chunks
        "docs/sub/deeper/c.pdf": rnd.randbytes(40_000),
        "docs/tmp/scratch.txt": b"not wanted",
        "other/outside.txt": b"outside the prefix",
    }
    put_objects(store, objects)
    source = object_source("bucket-docs", bucket, "docs/", exclude=["tmp"])
    assert source.prefix == "docs"

    first = backup(source)
    assert first.status == VersionStatus.SUCCEEDED, first.error
    assert first.files == 3 and first.files_new == 3

    # Change one object (same size: only its time / ETag tell), add one, remove one.
    objects["docs/a.txt"] = b"FIRST document " + b"first document " * 499
    objects["docs/new.txt"] = b"added later"
    put_objects(store, {k: objects[k] for k in ("docs/a.txt", "docs/new.txt")})
    store.delete("docs/sub/deeper/c.pdf")
    del objects["docs/sub/deeper/c.pdf"]
    second = backup(source)
    assert second.status == VersionStatus.SUCCEEDED, second.error
    assert (second.files, second.files_new, second.files_changed, second.files_removed) == (3, 1, 1, 1)
    assert second.bytes_added < 100_000  # the 2 MiB object was not stored again

    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    assert restore_version(version=second, to=str(out2)).ok
    assert snapshot(out2) == expected(objects, "docs/", skip=("/tmp/",))
    assert restore_version(version=first, to=str(out1)).ok
    first_state = snapshot(out1)
    assert first_state["a.txt"] == hashlib.sha256(b"first document " * 500).hexdigest()
    assert "sub/deeper/c.pdf" in first_state and "new.txt" not in first_state


def test_unchanged_objects_are_not_read_again(cloud_location):
    bucket = cloud_location("s3")
    store = backends.for_location(bucket)
    put_objects(store, {f"p/f{i}.txt": f"object {i} ".encode() * 100 for i in range(5)})
    source = object_source("unchanged", bucket, "p", include=["*.txt"])
    backup(source)
    # An object that vanishes after the listing would be a problem if it were read: it is not read at all.
    second = backup(source)
    assert second.status == VersionStatus.SUCCEEDED
    assert (second.files, second.files_new, second.files_changed) == (5, 0, 0)
    assert second.bytes_added < 5_000


@pytest.mark.parametrize("kind", ["azure", "gcs"])
def test_azure_and_gcs_prefixes_back_up_through_the_same_interface(cloud_location, tmp_path, kind):
    loc = cloud_location(kind)
    store = backends.for_location(loc)
    objects = {"in/x.txt": b"x" * 1000, "in/y/z.bin": random.Random(1).randbytes(70_000)}
    put_objects(store, objects)
    version = backup(object_source(f"{kind}-docs", loc, "in"))
    assert version.status == VersionStatus.SUCCEEDED, version.error
    assert restore_version(version=version, to=str(tmp_path / "out")).ok
    assert snapshot(tmp_path / "out") == expected(objects, "in/")


def test_a_source_is_a_directory_or_objects_not_both(cloud_location, tmp_path):
    bucket = cloud_location("local")
    with pytest.raises(UserError, match="not both"):
        object_source("both", bucket, "x", root_path=str(tmp_path))
    with pytest.raises(UserError, match="prefix must be"):
        object_source("dotdot", bucket, "a/../b")
    with pytest.raises(UserError, match="needs object_location"):
        save_source(source=DocumentSource(name="noloc", root_path=str(tmp_path), prefix="a"), actor=SYSTEM)
