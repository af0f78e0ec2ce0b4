"""Read-ahead threads: order, errors carried to the consumer, producers stopped early; the threaded decoder
still refuses what the plain one refuses, and yields nothing past a frame that fails authentication."""
import hashlib
import random
import threading
import time

import pytest

from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import Keyring, generate_spec
from apps.pipeline.readahead import read_ahead

KEYRING = Keyring.parse(generate_spec("a"))


def test_chunks_arrive_in_order_and_the_thread_ends():
    before = threading.active_count()
    assert list(read_ahead(iter([b"a", b"b", b"c"] * 100), depth=2)) == [b"a", b"b", b"c"] * 100
    assert threading.active_count() == before


def test_an_error_in_the_producer_is_raised_in_the_consumer_after_what_came_before():
    def source():
        yield b"one"
        yield b"two"
        raise ValueError("storage went away")

    got = []
    with pytest.raises(ValueError, match="storage went away"):
        got.extend(read_ahead(source()))
    assert got == [b"one", b"two"]


def test_a_consumer_that_stops_early_stops_the_producer_and_runs_its_clean_up():
    produced, cleaned = [], []

    def source():
        try:
            for i in range(10_000):
                produced.append(i)
                yield b"x"
        finally:
            cleaned.append(True)

    ahead = read_ahead(source(), depth=4)
    assert next(ahead) == b"x"
    ahead.close()
    time.sleep(0.05)
    assert cleaned == [True] and len(produced) < 20  # bounded: never ran far ahead, and it stopped


def _encoded(total=3_000_000):
    raw = b"".join(random.Random(i).randbytes(25_000) + b"y" * 75_000 for i in range(total // 100_000))
    enc = Encoder(compression_name="zstd", keyring=KEYRING, frame_size=64 * 1024, compression_threads=0)
    return raw, enc, b"".join(enc.encode([raw[i:i + 100_000] for i in range(0, len(raw), 100_000)]))


def test_the_threaded_decoder_round_trips_without_the_raw_hash():
    _raw, enc, stored = _encoded()
    dec = Decoder.for_record(_Record(enc), keyring=KEYRING, hash_raw=False, threaded=True)
    out = b"".join(dec.decode([stored[i:i + 7777] for i in range(0, len(stored), 7777)]))
    assert hashlib.sha256(out).hexdigest() == enc.stats.sha256_raw
    assert dec.stats.sha256_stored == enc.stats.sha256_stored and dec.stats.sha256_raw == ""


def test_the_threaded_decoder_yields_nothing_past_a_frame_that_fails_authentication():
    raw, enc, stored = _encoded()
    bad = bytearray(stored)
    bad[len(stored) // 2] ^= 1
    dec = Decoder.for_record(_Record(enc), keyring=KEYRING, hash_raw=False, threaded=True)
    got = bytearray()
    with pytest.raises(ArtifactError, match="fails authentication"):
        for piece in dec.decode([bytes(bad)]):
            got += piece
    assert raw.startswith(got) and len(got) < len(raw)


def test_the_threaded_decoder_still_checks_the_stored_hash_against_the_catalog():
    _raw, enc, stored = _encoded(500_000)
    record = _Record(enc)
    record.sha256_stored = "0" * 64  # the catalog says other bytes were stored
    with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
        b"".join(Decoder.for_record(record, keyring=KEYRING, hash_raw=False, threaded=True).decode([stored]))


class _Record:
    def __init__(self, enc):
        st = enc.stats
        self.sha256_stored, self.sha256_raw, self.cipher = st.sha256_stored, st.sha256_raw, st.cipher
        self.key_id, self.compression = st.key_id, st.compression
