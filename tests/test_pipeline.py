"""The artifact format: round trips, tamper evidence, keys, bounded memory."""
import hashlib
import random
import struct
import tracemalloc

import pytest

from apps.pipeline import compression
from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import KeyError_, Keyring, generate_spec

KEYRING = Keyring.parse(generate_spec("a") + "," + generate_spec("b"))


def chunks(total: int, size: int = 100_000):
    for i in range(0, total, size):
        rnd = random.Random(i).randbytes(size // 4)
        # Half random, half repetitive: both compressible and not.
        yield (rnd + b"x" * (size - len(rnd)))[: min(size, total - i)]


def encode(data_chunks, **kw):
    enc = Encoder(**kw)
    return enc, b"".join(enc.encode(data_chunks))


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("keyring", [KEYRING, None], ids=["encrypted", "plain"])
def test_round_trip_and_hashes(compression, keyring):
    raw = b"".join(chunks(2_500_000))
    enc, stored = encode(chunks(2_500_000), compression_name=compression, keyring=keyring, frame_size=64 * 1024)
    assert enc.stats.sha256_raw == hashlib.sha256(raw).hexdigest()
    assert enc.stats.sha256_stored == hashlib.sha256(stored).hexdigest()
    assert enc.stats.size_stored == len(stored) and enc.stats.size_raw == len(raw)
    assert enc.stats.frames > 1
    dec = Decoder(keyring=keyring, expected_sha256_stored=enc.stats.sha256_stored)
    pieces = [stored[i : i + 9999] for i in range(0, len(stored), 9999)]
    assert b"".join(dec.decode(pieces)) == raw
    assert dec.stats.sha256_raw == enc.stats.sha256_raw


@pytest.mark.parametrize("keyring", [KEYRING, None], ids=["encrypted", "plain"])
def test_stored_chunks_of_any_size_and_kind_decode_the_same(keyring):
    """Frames are read as views of the stored chunks where they fit in one, joined where they span several:
    chunks of one byte, of odd sizes, empty ones, larger than a frame, and a producer that reuses one bytearray
    for every chunk (a view of it would be overwritten) all decode to the same bytes, hashes checked."""
    raw = b"".join(chunks(700_000))
    enc, stored = encode(chunks(700_000), keyring=keyring, frame_size=16 * 1024)

    def cut(sizes):
        pos, i = 0, 0
        while pos < len(stored):
            n = sizes[i % len(sizes)]
            i += 1
            yield stored[pos:pos + n]
            pos += n

    def reused(size):
        buf = bytearray(size)
        for pos in range(0, len(stored), size):
            piece = stored[pos:pos + size]
            buf[:len(piece)] = piece
            yield buf if len(piece) == size else bytearray(piece)
            buf[:] = bytes(size)  # the producer overwrites its buffer before the next chunk

    feeds = [cut([1]), cut([0, 5, 16 * 1024 + 21, 7, 0, 3 * 16 * 1024]), cut([1 << 20]), reused(4093)]
    for feed in feeds:
        dec = Decoder(keyring=keyring, expected_sha256_stored=enc.stats.sha256_stored,
                      expected_sha256_raw=enc.stats.sha256_raw)
        assert b"".join(dec.decode(feed)) == raw
        assert dec.stats.size_stored == len(stored) and dec.stats.sha256_stored == enc.stats.sha256_stored


def test_empty_stream_round_trips():
    enc, stored = encode([], keyring=KEYRING)
    assert b"".join(Decoder(keyring=KEYRING).decode([stored])) == b""


def test_any_flipped_byte_is_detected_when_encrypted():
    enc, stored = encode(chunks(300_000), keyring=KEYRING, frame_size=32 * 1024)
    for pos in range(0, len(stored), max(1, len(stored) // 40)):
        bad = bytearray(stored)
        bad[pos] ^= 0x80
        with pytest.raises((ArtifactError, KeyError_)):
            b"".join(Decoder(keyring=KEYRING).decode([bytes(bad)]))


def test_truncation_and_trailing_bytes_are_detected():
    enc, stored = encode(chunks(300_000), keyring=KEYRING, frame_size=32 * 1024)
    # Cut exactly at a frame boundary: only the missing final frame gives it away.
    first_frame_end = stored.index(b"PGBRART1") + 8 + 4 + struct.unpack(">I", stored[8:12])[0]
    flag, length = struct.unpack(">BI", stored[first_frame_end : first_frame_end + 5])
    cut = first_frame_end + 5 + length
    with pytest.raises(ArtifactError, match="final frame is missing"):
        b"".join(Decoder(keyring=KEYRING).decode([stored[:cut]]))
    with pytest.raises(ArtifactError, match="after the final frame"):
        b"".join(Decoder(keyring=KEYRING).decode([stored + b"junk"]))


def test_swapped_frames_fail_authentication():
    enc, stored = encode(chunks(300_000), compression_name="none", keyring=KEYRING, frame_size=32 * 1024)
    head_len = 12 + struct.unpack(">I", stored[8:12])[0]
    frame = 5 + 32 * 1024 + 16
    a, b = stored[head_len : head_len + frame], stored[head_len + frame : head_len + 2 * frame]
    swapped = stored[:head_len] + b + a + stored[head_len + 2 * frame :]
    with pytest.raises(ArtifactError, match="Frame 0 fails authentication"):
        b"".join(Decoder(keyring=KEYRING).decode([swapped]))


def test_unencrypted_corruption_caught_by_checksum():
    enc, stored = encode(chunks(200_000), compression_name="none", keyring=None)
    bad = bytearray(stored)
    bad[-10] ^= 1
    with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
        b"".join(Decoder(keyring=None, expected_sha256_stored=enc.stats.sha256_stored).decode([bytes(bad)]))


def test_encrypted_artifact_needs_its_key():
    enc, stored = encode([b"hello"], keyring=KEYRING)
    with pytest.raises(KeyError_, match="no BACKUP_ENCRYPTION_KEYS"):
        b"".join(Decoder(keyring=None).decode([stored]))
    other = Keyring.parse(generate_spec("a"))  # same id, different key material
    with pytest.raises(KeyError_, match="does not unwrap"):
        b"".join(Decoder(keyring=other).decode([stored]))


def test_not_an_artifact():
    with pytest.raises(ArtifactError, match="bad magic"):
        b"".join(Decoder(keyring=None).decode([b"PGDMP this is a raw dump"]))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nocolon", "comma list"),
        ("k1:not-base64!", "not valid base64"),
        ("k1:" + "QUJD", "32 bytes"),
        (generate_spec("k1") + "," + generate_spec("k1"), "listed twice"),
    ],
)
def test_bad_key_specs_are_refused(spec, message):
    with pytest.raises(KeyError_, match=message):
        Keyring.parse(spec)


def test_first_key_is_current():
    assert KEYRING.current_id == "a" and Keyring.parse("") is None


def test_memory_stays_flat_whatever_the_size():
    """Encoding then decoding 64 MB keeps under a few MB of Python allocations: nothing is buffered whole."""

    def run(total):
        tracemalloc.start()
        enc = Encoder(keyring=KEYRING)
        dec = Decoder(keyring=KEYRING)
        size = sum(len(c) for c in dec.decode(enc.encode(chunks(total, 1 << 20))))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert size == total
        return peak

    # zstd's worker threads hand back up to a few MiB at once (jobs of compression.ZSTD_JOB_SIZE; how many
    # depends on thread timing), so the bound is absolute plus flat: twice the data must not need more memory
    # than a couple of jobs' output more.
    small, large, larger = run(8 << 20), run(64 << 20), run(128 << 20)
    assert large < 32 << 20 and larger < 32 << 20
    assert larger < large * 1.1 + 2 * compression.ZSTD_JOB_SIZE
    assert small < 32 << 20


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_decoded_chunks_stay_small_even_for_huge_ratios(compression):
    """64 MB of zeros compresses to a few KB in one frame; decoding must still hand them out in 1 MB chunks."""
    zeros = (bytes(1 << 20) for _ in range(64))
    enc, stored = encode(zeros, compression_name=compression, keyring=KEYRING)
    biggest = total = 0
    for raw in Decoder(keyring=KEYRING).decode([stored]):
        biggest, total = max(biggest, len(raw)), total + len(raw)
    assert total == 64 << 20 and biggest <= 1 << 20


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_compressed_stream_cut_inside_the_final_frame_is_refused(compression):
    """Re-frame a truncated compressed stream validly (unencrypted): the raw checksum or end marker catches it."""
    from apps.pipeline import compression as comp

    raw = b"".join(chunks(500_000))
    c = comp.compressor(compression)
    body = c.compress(raw) + c.flush()
    enc = Encoder(compression_name=compression, keyring=None)
    header = next(enc._frames([]))
    forged = header + enc._frame(body[:-20], 1)
    with pytest.raises(ArtifactError):
        b"".join(Decoder(keyring=None, expected_sha256_raw=hashlib.sha256(raw).hexdigest()).decode([forged]))


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"format": 1, "compression": "lz4"}',
                                    b'{"format": 1, "cipher": "aes-256-gcm", "key_id": "a", "wrapped_key": "!!"}'])
def test_malformed_headers_are_artifact_errors(header):
    blob = b"PGBRART1" + struct.pack(">I", len(header)) + header
    with pytest.raises(ArtifactError):
        b"".join(Decoder(keyring=KEYRING).decode([blob]))


def test_frame_size_must_fit_the_format():
    with pytest.raises(ValueError):
        Encoder(frame_size=64 << 20, keyring=KEYRING)


@pytest.mark.parametrize("threads", [0, 2])
def test_zstd_worker_threads_write_one_standard_frame(threads, tmp_path):
    """With zstd worker threads (the default on 2+ CPUs) the payload is still one standard zstd frame:
    our Decoder and the zstd program both read it, and it decodes to the same bytes as without them."""
    import shutil
    import subprocess

    import zstandard

    raw = b"".join(chunks(6_000_000, 1 << 20))
    enc, stored = encode(chunks(6_000_000, 1 << 20), compression_name="zstd", keyring=None,
                         compression_threads=threads)
    assert b"".join(Decoder(keyring=None, expected_sha256_raw=enc.stats.sha256_raw).decode([stored])) == raw
    # Unencrypted: the payloads of the frames, concatenated, are the zstd stream itself.
    payload = bytearray()
    pos = 8 + 4 + struct.unpack(">I", stored[8:12])[0]
    while pos < len(stored):
        flag, length = struct.unpack(">BI", stored[pos:pos + 5])
        payload += stored[pos + 5:pos + 5 + length]
        pos += 5 + length
    assert zstandard.get_frame_parameters(bytes(payload)).has_checksum
    if shutil.which("zstd"):
        (tmp_path / "p.zst").write_bytes(payload)
        out = subprocess.run(["zstd", "-d", "-c", str(tmp_path / "p.zst")], capture_output=True, check=True).stdout
        assert out == raw


@pytest.mark.parametrize("total", [0, 1, 65535, 65536, 65537, 3 * 65536])
def test_frames_are_full_until_the_final_one(total):
    """Every frame but the last carries exactly frame_size payload bytes, whatever the input."""
    data = random.Random(total).randbytes(total)
    enc, stored = encode([data[i:i + 7000] for i in range(0, total, 7000)], compression_name="none", keyring=None,
                         frame_size=65536)
    pos = 8 + 4 + struct.unpack(">I", stored[8:12])[0]
    sizes = []
    while pos < len(stored):
        flag, length = struct.unpack(">BI", stored[pos:pos + 5])
        sizes.append((flag, length))
        pos += 5 + length
    assert all(flag == 0 and length == 65536 for flag, length in sizes[:-1])
    assert sizes[-1][0] == 1 and sizes[-1][1] <= 65536 and len(sizes) == enc.stats.frames
    assert b"".join(Decoder(keyring=None).decode([stored])) == data


def test_a_header_recorded_elsewhere_binds_the_artifact_and_spares_the_stored_hash():
    """A physical backup's file index records each tar's header digest. Decoded against it: the artifact's own
    header passes, and an encrypted one is not hashed (every frame's AAD holds that digest, and the header
    wraps a data key of this artifact alone); another intact artifact under the same key, its stored hash
    matching the catalog's record of *it*, is refused at its header, before a byte is yielded; a frame altered
    behind the right header still fails authentication. for_record passes hash_stored and the header on."""
    raw_a, raw_b = bytes(random.Random(1).randbytes(300_000)), bytes(random.Random(2).randbytes(300_000))
    enc_a, enc_b = Encoder(keyring=KEYRING, frame_size=65536), Encoder(keyring=KEYRING, frame_size=65536)
    stored_a, stored_b = b"".join(enc_a.encode([raw_a])), b"".join(enc_b.encode([raw_b]))
    header_a = enc_a.stats.header_sha256
    assert len(header_a) == 64 and header_a != enc_b.stats.header_sha256
    dec = Decoder(keyring=KEYRING, expected_sha256_stored=enc_a.stats.sha256_stored, expected_header=header_a)
    assert b"".join(dec.decode([stored_a])) == raw_a
    assert dec.stats.header_sha256 == header_a and dec.stats.sha256_stored == ""  # not hashed
    substituted = Decoder(keyring=KEYRING, expected_sha256_stored=enc_b.stats.sha256_stored, expected_header=header_a)
    out = substituted.decode([stored_b])
    with pytest.raises(ArtifactError, match="not the one its backup recorded"):
        next(out)
    bad = bytearray(stored_a)
    bad[-100] ^= 1
    with pytest.raises(ArtifactError, match="fails authentication"):
        b"".join(Decoder(keyring=KEYRING, expected_header=header_a).decode([bytes(bad)]))

    class Record:
        key, sha256_stored, sha256_raw, cipher, compression = "k", enc_a.stats.sha256_stored, "", "aes-256-gcm", "zstd"
        key_id = enc_a.stats.key_id

    assert Decoder.for_record(Record, keyring=KEYRING, expected_header=header_a)._expected_header_sha256 == header_a
    assert Decoder.for_record(Record, keyring=KEYRING, hash_stored=False)._hash_stored is False
