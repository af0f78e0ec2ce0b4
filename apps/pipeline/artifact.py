"""The artifact format: header, authenticated frames, nothing after the final frame.

See docs/FORMAT.md. Encoding and decoding are generators over chunks, so memory
stays bounded by the frame size whatever the size of the backup.
"""
import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.pipeline import compression
from apps.pipeline.keys import Keyring, KeyError_

MAGIC = b"PGBRART1"
FORMAT_VERSION = 1
FRAME_SIZE = 1 << 20
MAX_FRAME = 64 << 20
TAG_LEN = 16
FLAG_MORE, FLAG_FINAL = 0, 1
_FRAME_HEAD = struct.Struct(">BI")


class ArtifactError(Exception):
    """The stored bytes are not a valid, intact artifact."""


@dataclass
class ArtifactStats:
    """Numbers known once a stream has been fully encoded or decoded."""

    compression: str = "none"
    cipher: str = "none"
    key_id: str = ""
    wrapped_key: str = ""
    size_raw: int = 0
    size_stored: int = 0
    sha256_raw: str = ""
    sha256_stored: str = ""
    frames: int = 0
    header: dict = field(default_factory=dict)
    # SHA-256 of the header's bytes (magic, length, JSON), which every frame's AAD holds: with the random data key
    # the header wraps, it names this artifact's content (Decoder `expected_header`)
    header_sha256: str = ""

    def as_manifest(self) -> dict:
        return {
            "compression": self.compression,
            "cipher": self.cipher,
            "key_id": self.key_id,
            "wrapped_key": self.wrapped_key,
            "size_raw": self.size_raw,
            "size_stored": self.size_stored,
            "sha256_raw": self.sha256_raw,
            "sha256_stored": self.sha256_stored,
        }


def _nonce(prefix: bytes, counter: int) -> bytes:
    return prefix + counter.to_bytes(8, "big")


def _aad(header_digest: bytes, counter: int, flag: int) -> bytes:
    return header_digest + counter.to_bytes(8, "big") + bytes([flag])


class Encoder:
    """Raw chunks in, stored chunks out; `stats` is complete once the output is exhausted."""

    def __init__(
        self,
        *,
        compression_name: str = "zstd",
        keyring: Keyring | None = None,
        frame_size: int = FRAME_SIZE,
        compression_threads: int | None = None,
        compression_level: int | None = None,
        raw_hash: str = "inline",
    ):
        """`raw_hash` (a key of _RAW_HASHES): how the raw stream's SHA-256 (`sha256_raw`) is taken. "inline"
        before the compression; "thread" in a thread of its own (hashlib releases the GIL), beside the
        compression: the same digest, off the caller's critical path; "off": not taken, `sha256_raw` stays empty.
        Nothing about the stored bytes' integrity rests on it (the AEAD tags and `sha256_stored` cover them); what
        it adds is a check of the compression round trip, which zstd's content checksum and gzip's CRC-32 make
        too. It is kept where something reads it (a WAL segment's push compares it to tell a retry from a
        conflict; logical restores recompute it); a physical backup's tars turn it off: at 244-390 MB/s without
        SHA extensions, it was a third of a full's CPU (docs/DECISIONS.md)."""
        if raw_hash not in _RAW_HASHES:
            raise ValueError(f"raw_hash must be one of {', '.join(_RAW_HASHES)}.")
        if not 0 < frame_size <= MAX_FRAME - TAG_LEN:
            raise ValueError(f"frame_size must be between 1 and {MAX_FRAME - TAG_LEN} bytes.")
        self.stats = ArtifactStats(compression=compression_name)
        self._compressor = compression.compressor(compression_name, level=compression_level,
                                                  threads=compression_threads)
        self._frame_size = frame_size
        self._raw_hash = raw_hash
        self._aead = None
        header = {"format": FORMAT_VERSION, "compression": compression_name, "cipher": "none", "frame_size": frame_size}
        if keyring is not None:
            data_key, key_id, wrapped = keyring.new_data_key()
            self._aead = AESGCM(data_key)
            self._nonce_prefix = os.urandom(4)
            self.stats.cipher = "aes-256-gcm"
            self.stats.key_id = key_id
            self.stats.wrapped_key = base64.b64encode(wrapped).decode()
            header.update(
                cipher="aes-256-gcm",
                key_id=key_id,
                wrapped_key=self.stats.wrapped_key,
                nonce_prefix=base64.b64encode(self._nonce_prefix).decode(),
            )
        self.stats.header = header
        body = json.dumps(header, sort_keys=True).encode()
        self._header_bytes = MAGIC + struct.pack(">I", len(body)) + body
        self._header_digest = hashlib.sha256(self._header_bytes).digest()
        self.stats.header_sha256 = self._header_digest.hex()
        self._counter = 0

    def _frame(self, payload, flag: int) -> bytes:
        return b"".join(self._frame_pieces(payload, flag))

    def _frame_pieces(self, payload, flag: int) -> Iterator[bytes]:
        """One frame as two pieces, header then payload (no concatenated copy of the payload)."""
        if self._aead is not None:
            payload = self._aead.encrypt(
                _nonce(self._nonce_prefix, self._counter), payload, _aad(self._header_digest, self._counter, flag)
            )
        elif not isinstance(payload, bytes):
            payload = bytes(payload)
        self._counter += 1
        yield _FRAME_HEAD.pack(flag, len(payload))
        if payload:
            yield payload

    def _frames(self, raw_chunks: Iterable[bytes]) -> Iterator[bytes]:
        yield self._header_bytes
        raw_hash = _RAW_HASHES[self._raw_hash]()
        try:
            compress = self._compressor.compress
            size = self._frame_size
            pending: list[bytes] = []  # compressed output not yet framed
            pending_len = 0
            for chunk in raw_chunks:
                if not chunk:
                    continue
                raw_hash.update(chunk)
                self.stats.size_raw += len(chunk)
                out = compress(chunk)
                if out:
                    pending.append(out)
                    pending_len += len(out)
                if pending_len >= size:
                    rest = yield from self._more_frames(pending, size, keep=size - 1)
                    pending, pending_len = ([rest], len(rest)) if rest else ([], 0)
            out = self._compressor.flush()
            if out:
                pending.append(out)
            # The final frame holds 1 to frame_size bytes (0 only for an empty stream).
            rest = yield from self._more_frames(pending, size, keep=size)
            yield from self._frame_pieces(rest, FLAG_FINAL)
            self.stats.sha256_raw = raw_hash.hexdigest()  # "" when off
        finally:
            if isinstance(raw_hash, _ThreadedHash):
                raw_hash.close()  # also when the consumer stopped early: no idle thread left behind

    def _more_frames(self, pending: list[bytes], size: int, *, keep: int):
        """Frame frame_size slices of the pending output while more than `keep` bytes remain; return the rest."""
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        view = memoryview(data)
        off = 0
        while len(data) - off > keep:
            yield from self._frame_pieces(view[off:off + size], FLAG_MORE)
            off += size
        return data[off:] if off < len(data) else b""

    def encode(self, raw_chunks: Iterable[bytes]) -> Iterator[bytes]:
        stored_hash = hashlib.sha256()
        for piece in self._frames(raw_chunks):
            stored_hash.update(piece)
            self.stats.size_stored += len(piece)
            yield piece
        self.stats.frames = self._counter
        self.stats.sha256_stored = stored_hash.hexdigest()


class _NoHash:
    """raw_hash="off": takes nothing, says nothing."""

    def update(self, chunk) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class _ThreadedHash:
    """SHA-256 of chunks handed over one by one, computed in order by one worker thread, a few chunks behind.

    `update` only queues the chunk (it must not be modified afterwards: bytes are not); `hexdigest` waits for
    the rest. At most `depth` chunks are queued, so memory stays bounded.
    """

    def __init__(self, depth: int = 8):
        import collections
        from concurrent.futures import ThreadPoolExecutor

        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256-raw")
        self._pending: collections.deque = collections.deque()
        self._depth = depth

    def update(self, chunk) -> None:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # a reusable buffer could change before the worker reads it
        self._pending.append(self._pool.submit(self._hash.update, chunk))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        try:
            while self._pending:
                self._pending.popleft().result()
            return self._hash.hexdigest()
        finally:
            self.close()

    def close(self) -> None:
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


# Encoder raw_hash: what takes the raw stream's SHA-256.
_RAW_HASHES = {"inline": hashlib.sha256, "thread": _ThreadedHash, "off": _NoHash}


class _Reader:
    """Exact-size reads over an iterator of chunks, hashing everything consumed.

    `view(n)` hands out a read that lies inside one chunk as a memoryview of it (no copy: a frame's payload
    goes straight to the cipher), and joins one that spans chunks once; `read(n)` is the same as bytes. A
    chunk that is not `bytes` (a buffer its producer might reuse) is copied once when it arrives.
    """

    def __init__(self, chunks: Iterable[bytes]):
        self._it = iter(chunks)
        self._chunk = memoryview(b"")  # the current chunk; its bytes before _pos are consumed
        self._pos = 0
        self.hash = hashlib.sha256()  # None once the caller decided not to hash (Decoder hash_stored=False)
        self.consumed = 0

    def _next(self) -> memoryview | None:
        while True:
            chunk = next(self._it, None)
            if chunk is None:
                return None
            if chunk:
                return memoryview(chunk if type(chunk) is bytes else bytes(chunk))

    def view(self, n: int) -> memoryview:
        chunk, pos = self._chunk, self._pos
        if len(chunk) - pos >= n:
            out = chunk[pos:pos + n]
            self._pos = pos + n
        else:
            parts, have = [chunk[pos:]], len(chunk) - pos
            self._chunk, self._pos = memoryview(b""), 0
            while have < n:
                nxt = self._next()
                if nxt is None:
                    break
                need = n - have
                if len(nxt) > need:
                    parts.append(nxt[:need])
                    self._chunk, self._pos = nxt, need
                    have = n
                else:
                    parts.append(nxt)
                    have += len(nxt)
            out = memoryview(b"".join(parts))
        if self.hash is not None:
            self.hash.update(out)
        self.consumed += len(out)
        return out

    def read(self, n: int) -> bytes:
        return self.view(n).tobytes()

    def at_end(self) -> bool:
        return not self.read_ahead()

    def read_ahead(self) -> bool:
        if len(self._chunk) > self._pos:
            return True
        nxt = self._next()
        if nxt is None:
            return False
        self._chunk, self._pos = nxt, 0
        return True


def read_header(reader: _Reader) -> tuple[dict, bytes]:
    magic = reader.read(len(MAGIC))
    if magic != MAGIC:
        raise ArtifactError("Not a backup artifact (bad magic bytes).")
    raw_len = reader.read(4)
    if len(raw_len) != 4:
        raise ArtifactError("Artifact header is truncated.")
    (length,) = struct.unpack(">I", raw_len)
    if length > 1 << 20:
        raise ArtifactError("Artifact header is implausibly large.")
    body = reader.read(length)
    if len(body) != length:
        raise ArtifactError("Artifact header is truncated.")
    try:
        header = json.loads(body)
    except ValueError:
        raise ArtifactError("Artifact header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise ArtifactError("Artifact header is not a JSON object.")
    if header.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"Unsupported artifact format {header.get('format')!r}.")
    return header, magic + raw_len + body


class Decoder:
    """Stored chunks in, raw chunks out; authenticates every frame and refuses truncation.

    Raw output comes in chunks of at most 1 MiB whatever the compression ratio.
    With `expected_sha256_stored` / `expected_sha256_raw` set, a mismatch raises
    at the end of the stream (before the generator finishes, so a consumer that
    commits only on a clean end never commits bad data).

    The header is checked before anything else: an unencrypted artifact is refused
    while keys are configured (nothing in it could be authenticated), and so is a
    header whose cipher, key id or compression differs from the `expected_*` given
    (what the catalog or manifest recorded). An encrypted header is authenticated by
    frame 0, so nothing is yielded before that frame has passed.
    """

    def __init__(
        self,
        *,
        keyring: Keyring | None,
        expected_sha256_stored: str | None = None,
        expected_sha256_raw: str | None = None,
        expected_cipher: str | None = None,
        expected_key_id: str | None = None,
        expected_compression: str | None = None,
        hash_raw: bool = True,
        threaded: bool = False,
        hash_stored: bool = True,
        expected_header: str | None = None,
    ):
        self._keyring = keyring
        self._expected_header_sha256 = expected_header
        self._hash_stored = hash_stored
        self._threaded = threaded
        self._expected = expected_sha256_stored
        self._hash_raw = hash_raw
        self._expected_raw = expected_sha256_raw if hash_raw else None
        self._expected_header = {"cipher": expected_cipher, "key id": expected_key_id,
                                 "compression": expected_compression}
        self.stats = ArtifactStats()

    @classmethod
    def for_record(cls, record, *, keyring: Keyring | None, hash_raw: bool = True, threaded: bool = False,
                   hash_stored: bool = True, expected_header: str | None = None) -> "Decoder":
        """A decoder holding the artifact to what `record` says of it (a BackupArtifact or a manifest entry).

        `hash_raw=False` skips the SHA-256 of the decompressed bytes (one hash pass over the raw size, the
        largest single cost of a restore after decompression) where the stored bytes are authenticated
        anyway: every frame by AES-GCM, the whole by the stored SHA-256 (and zstd's own content checksum).
        `threaded=True` reads and authenticates frames in a thread of its own, a few frames ahead of the
        decompression (apps/pipeline/readahead.py); frames are still authenticated before they are decompressed.
        `hash_stored=False` skips the SHA-256 of the stored bytes too, but only for an AES-GCM artifact (every
        frame, the header and the end authenticated by the key; an unencrypted one is still hashed and checked):
        for a caller that checks what it uses by its own SHA-256 anyway, since another intact artifact under
        the same key is then not told apart by its stored hash (document restores check every file's SHA-256).
        `expected_header`: the SHA-256 of the artifact's header as recorded somewhere authenticated (a physical
        backup's file index records its tars'): a header that differs is refused before any frame is read, and
        an AES-GCM artifact whose header matches is not hashed. Every frame's AAD holds the header's digest and
        the header the random data key wrapped for this artifact alone, so once each frame is authenticated,
        the final flag seen and nothing left after it, the bytes are the ones written: the stored SHA-256 would
        only say so again, at 244 MB/s of CPU on a machine without SHA extensions (docs/DECISIONS.md).
        """
        return cls(
            keyring=keyring, expected_sha256_stored=record.sha256_stored, expected_sha256_raw=record.sha256_raw,
            expected_cipher=record.cipher, expected_key_id=record.key_id or "",
            expected_compression=record.compression, hash_raw=hash_raw, threaded=threaded,
            hash_stored=hash_stored, expected_header=expected_header,
        )

    def _check_header(self) -> None:
        st = self.stats
        if st.cipher == "none" and self._keyring is not None:
            raise ArtifactError("Refusing an unencrypted artifact while encryption keys are configured: "
                                "nothing in it can be authenticated.")
        found = {"cipher": st.cipher, "key id": st.key_id, "compression": st.compression}
        for name, expected in self._expected_header.items():
            if expected is not None and found[name] != expected:
                raise ArtifactError(
                    f"The artifact header says {name} {found[name]!r} but the catalog records {expected!r}: "
                    "refusing a substituted or downgraded artifact."
                )

    def decode(self, stored_chunks: Iterable[bytes]) -> Iterator[bytes]:
        reader = _Reader(stored_chunks)
        header, header_bytes = read_header(reader)
        st = self.stats
        st.header = header
        st.header_sha256 = hashlib.sha256(header_bytes).hexdigest()
        if self._expected_header_sha256 is not None and st.header_sha256 != self._expected_header_sha256:
            raise ArtifactError("The artifact's header is not the one its backup recorded: refusing a substituted "
                                "artifact.")
        st.compression = header.get("compression", "none")
        st.cipher = header.get("cipher", "none")
        st.key_id = header.get("key_id", "")
        st.wrapped_key = header.get("wrapped_key", "")
        self._check_header()
        if st.compression not in compression.CHOICES:
            raise ArtifactError(f"Unknown compression {st.compression!r} in the artifact header.")
        aead = prefix = None
        if st.cipher == "aes-256-gcm":
            if self._keyring is None:
                raise KeyError_("This artifact is encrypted but no BACKUP_ENCRYPTION_KEYS are configured.")
            wrapped, prefix = _b64(st.wrapped_key, "wrapped_key"), _b64(header.get("nonce_prefix"), "nonce_prefix")
            if len(prefix) != 4 or len(wrapped) != 60:
                raise ArtifactError("The artifact header's key fields have the wrong length.")
            aead = AESGCM(self._keyring.unwrap(st.key_id, wrapped))
            if not self._hash_stored or self._expected_header_sha256 is not None:
                reader.hash = None
        elif st.cipher != "none":
            raise ArtifactError(f"Unknown cipher {st.cipher!r}.")
        payloads = self._payloads(reader, hashlib.sha256(header_bytes).digest(), aead, prefix)
        if self._threaded:
            from apps.pipeline.readahead import read_ahead

            payloads = read_ahead(payloads, depth=4, name="decode-frames")
        raw_hash = hashlib.sha256() if self._hash_raw else None
        try:
            for raw in compression.decompress_stream(st.compression, payloads):
                if raw_hash is not None:
                    raw_hash.update(raw)
                st.size_raw += len(raw)
                yield raw
            # The decompressor may stop at its end marker: read the frames to the end so the final-frame,
            # trailing-bytes and checksum checks still run, and refuse compressed data past the marker.
            if any(payloads):
                raise ArtifactError("Unexpected data after the end of the compressed stream.")
        except (ArtifactError, KeyError_):
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError, IncompleteStream
            raise ArtifactError(f"The compressed stream is corrupt: {exc}") from None
        st.sha256_raw = raw_hash.hexdigest() if raw_hash is not None else ""
        if self._expected and reader.hash is not None and st.sha256_stored != self._expected:
            raise ArtifactError(
                f"SHA-256 mismatch: stored bytes hash to {st.sha256_stored}, the catalog records {self._expected}."
            )
        if self._expected_raw and st.sha256_raw != self._expected_raw:
            raise ArtifactError("The decompressed data does not match the SHA-256 recorded at backup time.")

    def _payloads(self, reader: "_Reader", digest: bytes, aead, prefix) -> Iterator[bytes]:
        st = self.stats
        counter = 0
        while True:
            head = reader.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                raise ArtifactError("Artifact is truncated: the final frame is missing.")
            flag, length = _FRAME_HEAD.unpack(head)
            if flag not in (FLAG_MORE, FLAG_FINAL) or length > MAX_FRAME:
                raise ArtifactError(f"Frame {counter} has a corrupt header.")
            payload = reader.view(length)  # no copy: the cipher reads it where it arrived
            if len(payload) != length:
                raise ArtifactError("Artifact is truncated inside a frame.")
            if aead is not None:
                try:
                    payload = aead.decrypt(_nonce(prefix, counter), payload, _aad(digest, counter, flag))
                except InvalidTag:
                    raise ArtifactError(
                        f"Frame {counter} fails authentication: the artifact is corrupt or altered."
                    ) from None
            elif not isinstance(payload, bytes):
                payload = payload.tobytes()  # unencrypted: handed on as bytes, as before
            counter += 1
            if payload:
                yield payload
            if flag == FLAG_FINAL:
                break
        if not reader.at_end():
            raise ArtifactError("Unexpected bytes after the final frame.")
        st.frames = counter
        st.size_stored = reader.consumed
        st.sha256_stored = reader.hash.hexdigest() if reader.hash is not None else ""


def _b64(value, field_name: str) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (ValueError, TypeError):
        raise ArtifactError(f"The artifact header's {field_name} is not valid base64.") from None
