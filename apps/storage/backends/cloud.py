"""What the cloud backends (s3, azure, gcs) share: credentials by reference, the key prefix, fixed-size parts,
bounded parallel part uploads, and write-once retention.

Credentials are never stored: `credentials_ref` names where they are (`env:VAR` or `file:/path`) and they are
read when a client is built. Without a reference, each SDK's usual environment variables / default chain apply.
Errors from here never quote the credential text.
"""
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from apps.storage.backends.base import StorageBackend, StorageError, clean_key

PART_SIZE = 8 << 20          # bytes per multipart part / staged block / resumable chunk (a multiple of 256 KiB)
PARALLEL_PARTS = 4           # parts in flight at once: memory stays under (PARALLEL_PARTS + 1) × PART_SIZE
PROBE_RETENTION = timedelta(days=1)  # the connection test's write-once probe object: locked, but not for years

CREDENTIALS_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)$")


def check_credentials_ref(ref: str) -> None:
    if ref and not CREDENTIALS_REF.match(ref):
        # Not echoed: a secret pasted here by mistake must not end up in an error message or a log.
        raise StorageError("credentials_ref must be env:VARIABLE or file:/absolute/path (a reference, never the "
                           "secret itself).")


def read_credentials(ref: str) -> str | None:
    """The secret text a reference points at (None without a reference: the SDK's own default chain)."""
    if not ref:
        return None
    check_credentials_ref(ref)
    scheme, _, where = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(where)
        if not value:
            raise StorageError(f"The credentials variable {where} is not set.")
        return value.strip()
    try:
        with open(where) as fh:
            return fh.read().strip()
    except OSError as exc:
        raise StorageError(f"Cannot read the credentials file {where}: {exc.strerror}.") from None


def parts(chunks: Iterable[bytes], size: int = PART_SIZE) -> Iterator[bytes]:
    """Regroup a stream into parts of exactly `size` bytes (the last may be shorter; none is empty)."""
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            data = b"".join(pending)  # one copy per part
            offset = 0
            while held - offset >= size:
                yield data[offset:offset + size]
                offset += size
            pending = [data[offset:]] if offset < held else []
            held -= offset
    if held:
        yield b"".join(pending)


def upload_parts(pieces: Iterator[bytes], send: Callable[[int, bytes], object],
                 parallel: int = PARALLEL_PARTS) -> list:
    """send(number, data) for each part (numbered from 1), at most `parallel` at once; their results in order.

    Reading the source stops while `parallel` parts are in flight, so memory stays bounded. The first failure
    is raised (after the parts in flight have settled), so the caller can abort the upload.
    """
    results: list = []
    inflight: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="upload-part") as pool:
        try:
            for number, data in enumerate(pieces, start=1):
                if len(inflight) >= parallel:
                    results.append(inflight.popleft().result())
                inflight.append(pool.submit(send, number, data))
            while inflight:
                results.append(inflight.popleft().result())
        except BaseException:
            for future in inflight:
                future.cancel()
            raise
    return results


class CloudBackend(StorageBackend):
    """Keys under the location's prefix (`path`), inside its bucket/container."""

    container_word = "bucket"

    def __init__(self, location):
        super().__init__(location)
        if not location.bucket:
            raise StorageError(f"Location {location.name} ({self.kind}) has no {self.container_word}.")
        self.prefix = (location.path or "").strip("/")

    def _name(self, key: str) -> str:
        key = clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def _list_prefix(self, prefix: str) -> str:
        if not prefix:
            return f"{self.prefix}/" if self.prefix else ""
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def retain_until(self) -> datetime | None:
        """Until when a new object is write-once (None when the location does not ask for it)."""
        if not self.location.immutability:
            return None
        if not self.location.retention_days:
            raise StorageError(f"Location {self.location.name} asks for write-once storage but has no "
                               "retention_days.")
        return datetime.now(UTC) + timedelta(days=self.location.retention_days)

    def put_stream(self, key: str, chunks: Iterable[bytes]):
        return self.upload(key, chunks, retain_until=self.retain_until())

    def upload(self, key: str, chunks: Iterable[bytes], *, retain_until: datetime | None):
        raise NotImplementedError

    def put_probe(self, key: str, data: bytes):
        """The connection test's object: write-once for a day only, when the location is write-once."""
        return self.upload(key, [data], retain_until=datetime.now(UTC) + PROBE_RETENTION
                           if self.location.immutability else None)
