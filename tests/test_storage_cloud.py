"""The cloud backends (s3, azure, gcs) behind the storage interface, through the real SDKs against emulators."""
import pytest

from apps.storage import backends
from apps.storage.backends import cloud
from apps.storage.backends.base import ObjectMissing, StorageError

pytestmark = pytest.mark.django_db

CLOUD = ["s3", "azure", "gcs"]


def payload(size: int, seed: int = 7) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def chunked(data: bytes, n: int = 1 << 20):
    for i in range(0, len(data), n):
        yield data[i:i + n]


@pytest.fixture
def small_parts(monkeypatch):
    """Small parts (S3's minimum is 5 MiB) so the multipart / block / resumable paths run on ~11 MB payloads."""
    monkeypatch.setattr("apps.storage.backends.s3.PART_SIZE", 5 << 20)
    for module in ("azure", "gcs"):
        monkeypatch.setattr(f"apps.storage.backends.{module}.PART_SIZE", 1 << 20)


@pytest.mark.parametrize("kind", CLOUD)
def test_put_get_stat_list_delete_under_a_prefix(cloud_location, kind):
    store = backends.for_location(cloud_location(kind, path="pre/fix"))
    data = payload(300_000)
    info = store.put_stream("a/b/c.bin", chunked(data, 70_000))
    assert info.size == len(data)
    assert b"".join(store.get_stream("a/b/c.bin")) == data
    st = store.stat("a/b/c.bin")
    assert st.size == len(data) and st.modified is not None
    assert store.stat("a/b/missing") is None
    store.put_bytes("a/other.json", b"{}")
    assert sorted(o.key for o in store.list("a/")) == ["a/b/c.bin", "a/other.json"]
    assert [o.key for o in store.list("a/b/")] == ["a/b/c.bin"]
    store.delete("a/b/c.bin")
    store.delete("a/b/c.bin")  # already gone: not an error
    assert store.stat("a/b/c.bin") is None
    with pytest.raises(ObjectMissing):
        store.get_bytes("a/b/c.bin")


@pytest.mark.parametrize("kind", CLOUD)
def test_multipart_upload_round_trips_and_a_failed_stream_leaves_nothing(cloud_location, kind, small_parts):
    store = backends.for_location(cloud_location(kind))
    data = payload(11_000_000)  # 3 parts on S3, 11 elsewhere
    assert store.put_stream("big.bin", chunked(data, 100_000)).size == len(data)
    assert store.sha256("big.bin") == (__import__("hashlib").sha256(data).hexdigest(), len(data))

    def broken():
        yield data[:10_600_000]
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError, match="source died"):
        store.put_stream("half.bin", broken())
    assert store.stat("half.bin") is None
    assert [o.key for o in store.list()] == ["big.bin"]
    if kind == "s3":  # the multipart upload was aborted, not left to linger
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_s3_multipart_declares_crc32_and_lists_part_checksums(cloud_location, small_parts):
    """Like boto3's upload_file: CRC32 declared at CreateMultipartUpload, each part's CRC32 listed at Complete,
    so the store keeps a composite checksum of the parts it checked (not a full-object CRC64NVME of its own,
    which moto computes over a second copy of the whole object)."""
    store = backends.for_location(cloud_location("s3"))
    data = payload(11_000_000)  # 3 parts of 5 MiB
    store.put_stream("crc.bin", chunked(data))
    got = store.client.get_object_attributes(Bucket=store.bucket, Key="crc.bin", ObjectAttributes=["Checksum"])
    assert got["Checksum"].get("ChecksumType") == "COMPOSITE", got
    assert got["Checksum"].get("ChecksumCRC32"), got


def test_part_uploads_keep_bounded_memory():
    """Reading the source pauses while PARALLEL_PARTS parts are in flight."""
    import threading

    in_flight, peak, lock, gate = [0], [0], threading.Lock(), threading.Event()
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield bytes([i]) * 10

    def send(number, data):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0], len(produced) - number + 1)
        gate.wait(0.01)
        with lock:
            in_flight[0] -= 1
        return number

    assert cloud.upload_parts(source(), send, parallel=3) == list(range(1, 21))
    assert peak[0] <= 3 + 1


@pytest.mark.parametrize("kind,tier,expected", [("s3", "STANDARD_IA", "STANDARD_IA"), ("azure", "Cool", "Cool")])
def test_set_tier_is_read_back(cloud_location, kind, tier, expected):
    store = backends.for_location(cloud_location(kind))
    store.put_bytes("t.bin", b"x" * 1000)
    store.set_tier("t.bin", tier)
    assert store.stat("t.bin").tier == expected
    assert [o.tier for o in store.list()] == [expected]
    assert store.get_bytes("t.bin") == b"x" * 1000
    with pytest.raises(StorageError, match="Unknown"):
        store.set_tier("t.bin", "FROZEN")


def test_gcs_set_tier_sends_a_rewrite_with_the_class(cloud_location):
    """The GCS emulators ignore class rewrites (ENVIRONMENT-RECIPES §3): assert on the request sent."""
    import json

    import requests

    store = backends.for_location(cloud_location("gcs"))
    store.put_bytes("t.bin", b"x" * 1000)
    sent = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    store.http, store._bucket = session, None
    store.set_tier("t.bin", "nearline")
    rewrites = [r for r in sent if "/rewriteTo/" in r.url]
    assert len(rewrites) == 1 and json.loads(rewrites[0].body)["storageClass"] == "NEARLINE"
    with pytest.raises(StorageError, match="Unknown GCS storage class"):
        store.set_tier("t.bin", "GLACIER")


@pytest.mark.parametrize("kind,tier", [("s3", "GLACIER"), ("azure", "Archive")])
def test_reading_an_archived_object_says_it_needs_rehydration(cloud_location, kind, tier):
    store = backends.for_location(cloud_location(kind))
    store.put_bytes("cold.bin", b"x" * 100)
    store.set_tier("cold.bin", tier)
    with pytest.raises(StorageError, match="rehydrat") as err:
        store.get_bytes("cold.bin")
    assert not isinstance(err.value, ObjectMissing)


@pytest.mark.parametrize("kind", CLOUD)
def test_missing_bucket_is_a_clear_error(cloud_location, kind):
    location = cloud_location(kind)
    location.bucket = "no-such-bucket-here"
    store = backends.for_location(location)
    with pytest.raises(StorageError, match="does not exist|missing|NotFound"):
        store.check()


def test_credentials_reference_is_checked_and_never_echoed(cloud_location, tmp_path, monkeypatch):
    location = cloud_location("s3")
    location.credentials_ref = "AKIASECRETVALUE123"
    with pytest.raises(StorageError) as err:
        backends.for_location(location).stat("x")
    assert "AKIASECRETVALUE123" not in str(err.value)
    bad = tmp_path / "creds"
    bad.write_text("[default]\naws_access_key_id = AKIASECRETVALUE123\n")
    location.credentials_ref = f"file:{bad}"
    with pytest.raises(StorageError, match="lack") as err:
        backends.for_location(location).stat("x")
    assert "AKIASECRETVALUE123" not in str(err.value)
    monkeypatch.delenv("S3_CREDS_TEST", raising=False)
    location.credentials_ref = "env:S3_CREDS_TEST"
    with pytest.raises(StorageError, match="S3_CREDS_TEST is not set"):
        backends.for_location(location).stat("x")


def test_s3_credentials_from_an_aws_ini_file_in_an_env_variable(cloud_location, monkeypatch):
    location = cloud_location("s3")
    monkeypatch.setenv("S3_CREDS_TEST", "[backup]\naws_access_key_id = a\naws_secret_access_key = b\n")
    location.credentials_ref = "env:S3_CREDS_TEST"
    store = backends.for_location(location)
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


@pytest.mark.parametrize("sizes", [[], [1], [3, 3, 3], [10], [4, 0, 4, 1], [7, 7]])
def test_parts_regroup_any_chunking_into_exact_parts(sizes):
    data = payload(sum(sizes), seed=3)
    chunks, at = [], 0
    for n in sizes:
        chunks.append(data[at:at + n])
        at += n
    out = list(cloud.parts(chunks, 4))
    assert b"".join(out) == data
    assert all(len(p) == 4 for p in out[:-1]) and all(0 < len(p) <= 4 for p in out)
