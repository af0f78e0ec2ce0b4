"""The physical path's speed-ups keep their guarantees: the raw SHA-256 taken in a worker thread is the same
digest, an abandoned stream leaves no thread behind, and the restore's deferred fsync pass writes everything."""
import hashlib
import io
import os
import tarfile
import threading
from pathlib import PurePosixPath

import pytest

from apps.databases.engines import tarstream
from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import Keyring, generate_spec

_RANDOM = os.urandom(1 << 16)


def _chunks():
    return [_RANDOM * 3 + bytes(1000 * i) for i in range(40)] + [bytearray(b"reused buffer" * 100)]


@pytest.mark.parametrize("keyed", [False, True])
def test_the_raw_sha256_taken_in_a_thread_is_the_plain_one_and_decodes(keyed):
    keyring = Keyring.parse(generate_spec("k1")) if keyed else None
    raw = b"".join(bytes(c) for c in _chunks())
    plain = Encoder(keyring=keyring, compression_level=1)
    stored_plain = b"".join(plain.encode(_chunks()))
    threaded = Encoder(keyring=keyring, compression_level=1, raw_hash="thread")
    stored = b"".join(threaded.encode(_chunks()))
    assert threaded.stats.sha256_raw == plain.stats.sha256_raw == hashlib.sha256(raw).hexdigest()
    assert threaded.stats.size_raw == len(raw)
    assert threaded.stats.sha256_stored == hashlib.sha256(stored).hexdigest()
    if not keyed:
        assert stored == stored_plain  # same bytes: only where the hash is computed changed
    decoder = Decoder(keyring=keyring, expected_sha256_raw=threaded.stats.sha256_raw,
                      expected_sha256_stored=threaded.stats.sha256_stored)
    assert b"".join(decoder.decode([stored])) == raw
    # A wrong raw digest is still caught.
    bad = Decoder(keyring=keyring, expected_sha256_raw="0" * 64)
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        b"".join(bad.decode([stored]))


@pytest.mark.parametrize("keyed", [False, True])
def test_with_the_raw_hash_off_nothing_is_recorded_and_the_stream_still_decodes_and_is_checked(keyed):
    keyring = Keyring.parse(generate_spec("k1")) if keyed else None
    raw = b"".join(bytes(c) for c in _chunks())
    encoder = Encoder(keyring=keyring, compression_level=1, raw_hash="off")
    stored = b"".join(encoder.encode(_chunks()))
    assert encoder.stats.sha256_raw == ""
    assert encoder.stats.size_raw == len(raw)
    assert encoder.stats.sha256_stored == hashlib.sha256(stored).hexdigest()
    decoder = Decoder(keyring=keyring, expected_sha256_raw="", expected_sha256_stored=encoder.stats.sha256_stored)
    assert b"".join(decoder.decode([stored])) == raw
    with pytest.raises(ValueError, match="raw_hash must be one of"):
        Encoder(raw_hash="sha1")


def test_zstd_content_checksum_catches_a_round_trip_that_changed_the_content():
    """What stands in for the raw SHA-256 when it is off: the zstd frame's own XXH64 of the content, checked by
    the decompressor. A frame whose decoded content no longer matches that checksum is refused (here the
    checksum is the byte changed, so the frame still decodes: only the check can catch it)."""
    import zstandard

    from apps.pipeline import compression

    comp = compression.compressor("zstd", level=1, threads=0)
    frame = bytearray(comp.compress(b"abc" * 1000 + os.urandom(4000)) + comp.flush())
    assert zstandard.get_frame_parameters(bytes(frame)).has_checksum
    frame[-1] ^= 1  # the checksum itself: the content no longer matches it
    with pytest.raises(zstandard.ZstdError, match="checksum"):
        b"".join(compression.decompress_stream("zstd", [bytes(frame)]))


def test_an_abandoned_threaded_encode_leaves_no_hash_thread():
    before = {t.ident for t in threading.enumerate()}
    encoder = Encoder(raw_hash="thread")
    stream = encoder.encode(_chunks())
    next(stream)
    next(stream)
    stream.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("sha256-raw")]
    assert not left


def test_the_deferred_fsync_pass_leaves_every_file_complete(tmp_path):
    files = {f"base/1/{n}": os.urandom(5000 + n) for n in range(300)} | {"global/pg_control": b"x" * 8192}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    root = tmp_path / "pgdata.partial"
    root.mkdir()
    extractor = tarstream.Extractor(root, sync=True)
    tar = tarstream.StreamExtractor(extractor)
    for i in range(0, len(data), 70_000):
        tar.feed(data[i:i + 70_000])
    tar.close()
    extractor.sync_all()
    assert extractor.files == len(files)
    for name, content in files.items():
        assert (root / PurePosixPath(name)).read_bytes() == content
    assert not [t for t in threading.enumerate() if t.name.startswith("restore-fsync")]


def test_the_byte_ranges_of_a_listed_tar_concatenate_to_the_whole_tar(tmp_path):
    """A full written by several processes: each writes a byte range of one tar laid out from the listing, cut
    anywhere (inside a header, inside a file). Concatenated they are that tar, each file at its listed size:
    a file that shrank since is zero-padded, one that grew is cut, one removed is zeros."""
    from apps.databases.engines.incremental import TarLayout

    root = tmp_path / "data"
    (root / "base" / "1").mkdir(parents=True)
    contents = {f"base/1/{n}": os.urandom(n * 997 + 1) for n in range(1, 30)} | {"big": os.urandom(3 << 20)}
    for rel, data in contents.items():
        (root / rel).write_bytes(data)
    listed = [("dir", "base", (root / "base").stat()), ("dir", "base/1", (root / "base/1").stat())]
    listed += [("file", rel, (root / rel).stat()) for rel in contents]
    layout = TarLayout(root, listed)
    (root / "base/1/5").write_bytes(b"shrunk")
    (root / "base/1/6").write_bytes(contents["base/1/6"] + b"grown")
    (root / "base/1/7").unlink()
    expected = dict(contents)
    expected["base/1/5"] = b"shrunk" + bytes(len(contents["base/1/5"]) - 6)
    expected["base/1/7"] = bytes(len(contents["base/1/7"]))
    m = layout.members
    inside = [0, m[5][0] + 100, m[10][0] + m[10][1] + 3, m[12][0] + m[12][1] + m[12][3] + 1, layout.size]
    balanced = [layout.balanced_cuts(n, every=4096, sample=1024) for n in (2, 3)]  # by estimated work
    assert all(c[0] == 0 and c[-1] == layout.size and c == sorted(c) and len(c) == len(set(c)) for c in balanced)
    for cuts in [layout.cuts(n) for n in (1, 2, 3, 7)] + [inside] + balanced:  # in a header, data, padding
        parts = [b"".join(layout.chunks(a, b)) for a, b in zip(cuts, cuts[1:])]
        assert [len(p) for p in parts] == [b - a for a, b in zip(cuts, cuts[1:])]
        whole = b"".join(parts) + tarstream.end_of_archive()
        assert len(whole) % 512 == 0
        with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == [e[1] for e in listed]
            got = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
        assert got == expected
