"""The one interface every storage backend implements.

Keys are relative POSIX paths inside a location. `put_stream` is atomic: the
object becomes visible under its key only once the whole stream has been
written; a failing stream leaves nothing under the key.
"""
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

CHUNK_SIZE = 1 << 20


class StorageError(Exception):
    pass


class ObjectMissing(StorageError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None
    tier: str = ""
    etag: str = ""  # as listed (cloud kinds): changes whenever the content does


def clean_key(key: str) -> str:
    """Refuse keys that could escape the location (absolute, '..', empty parts)."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("..", ".", "") for part in key.split("/")):
        raise StorageError(f"Invalid storage key {key!r}.")
    return key


class StorageBackend(ABC):
    kind: str = ""
    label: str = ""  # shown in forms and the API schema

    def __init__(self, location):
        self.location = location

    @abstractmethod
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo: ...

    @abstractmethod
    def get_stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def remove_partials(self, job_id: str) -> "list[str]":  # (`list` is a method here)
        """Remove what an upload of job `job_id`, killed midway, left in the location; the keys removed.

        Only a local location has anything to remove: a cloud upload is invisible until completed, and an
        unfinished multipart upload is aborted by the uploader or expired by the bucket's lifecycle rule.
        """
        return []

    def set_tier(self, key: str, tier: str) -> None:
        raise StorageError(f"{self.kind} storage has no tiers.")

    # --- the connection test (apps/storage/probe.py) ----------------------------------------------

    def check(self) -> None:
        """Raise StorageError when the location cannot be reached (bucket missing, credentials refused...)."""

    def put_probe(self, key: str, data: bytes) -> ObjectInfo:
        """Write the connection test's object (cloud kinds lock it for a short time only)."""
        return self.put_bytes(key, data)

    def immutability_enforced(self, key: str) -> tuple[bool, str]:
        """Try to destroy the fresh object `key` behind our own guards; (True, why) only if the store refused."""
        return False, f"{self.label or self.kind} cannot enforce write-once storage"

    def sha256(self, key: str, on_progress=None) -> tuple[str, int]:
        """Read an object back: (hex SHA-256, bytes read). `on_progress(bytes_so_far)` is called per chunk."""
        digest, done = hashlib.sha256(), 0
        for chunk in self.get_stream(key):
            digest.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done)
        return digest.hexdigest(), done

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self.put_stream(key, [data])

    def get_bytes(self, key: str) -> bytes:
        # Only for small objects such as manifests.
        return b"".join(self.get_stream(key))
