"""Google Cloud Storage through google-cloud-storage (gcp-storage-emulator in the tests).

Uploads are resumable uploads of unknown size, sent PART_SIZE at a time: GCS creates the object only when the
final chunk arrives, which happens only once the stream has ended, so a failing stream leaves nothing under
the name. A write-once location sends an object retention (mode, retain-until time) with every upload and
refuses to replace an object (if_generation_match=0). Credentials: `credentials_ref` pointing at a service
account key (JSON); without one, Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS...), or no
credentials at all when an endpoint URL (an emulator) is set.
"""
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from apps.storage.backends import register
from apps.storage.backends.base import CHUNK_SIZE, ObjectInfo, ObjectMissing, StorageError
from apps.storage.backends.cloud import PART_SIZE, CloudBackend, read_credentials

TIERS = ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]


class _StreamReader(io.RawIOBase):
    """A read-only file over an iterator of chunks; `read(n)` returns n bytes unless the stream has ended
    (a short read is how the resumable upload learns that the object is complete)."""

    def __init__(self, chunks: Iterable[bytes]):
        super().__init__()
        self._it = iter(chunks)
        self._buf = bytearray()
        self._pos = 0
        self.size = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        n = len(self._buf) if n < 0 else n
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self._pos += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


@register
class GcsBackend(CloudBackend):
    kind = "gcs"
    label = "Google Cloud Storage"
    http = None  # a requests.Session to send through (the tests record requests with it)

    def __init__(self, location):
        super().__init__(location)
        self._bucket = None

    @property
    def bucket(self):
        if self._bucket is None:
            from google.cloud import storage  # heavy: only when a location of this kind is used

            text = read_credentials(self.location.credentials_ref)
            options = {"api_endpoint": self.location.endpoint_url} if self.location.endpoint_url else None
            kwargs = {"client_options": options, "_http": self.http}
            if text is not None:
                from google.oauth2 import service_account

                try:
                    info = json.loads(text)
                    credentials = service_account.Credentials.from_service_account_info(info)
                except (ValueError, KeyError):
                    raise StorageError("The GCS credentials are not a service account key (JSON).") from None
                client = storage.Client(project=info.get("project_id"), credentials=credentials, **kwargs)
            elif self.location.endpoint_url:
                from google.auth.credentials import AnonymousCredentials

                client = storage.Client(project="emulator", credentials=AnonymousCredentials(), **kwargs)
            else:
                client = storage.Client(**kwargs)
            self._bucket = client.bucket(self.location.bucket)
        return self._bucket

    def _errors(self, action: str, key: str = ""):
        return _GcsErrors(self, action, key)

    def upload(self, key: str, chunks: Iterable[bytes], *, retain_until: datetime | None) -> ObjectInfo:
        blob = self.bucket.blob(self._name(key), chunk_size=PART_SIZE)
        condition = {}
        if retain_until is not None:
            blob.retention.mode = "Locked" if self.location.immutability == "compliance" else "Unlocked"
            blob.retention.retain_until_time = retain_until
            condition["if_generation_match"] = 0  # write-once: never replace an existing object
        if self.location.storage_class:
            blob.storage_class = self.location.storage_class.upper()
        reader = _StreamReader(chunks)
        with self._errors("upload", key):
            # size=None: a resumable upload, PART_SIZE per request, finalised by the short last read only.
            blob.upload_from_file(reader, size=None, content_type="application/octet-stream", **condition)
        return ObjectInfo(key=key, size=reader.tell(), modified=datetime.now(UTC), tier=blob.storage_class or "")

    def get_stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self._errors("read", key):
            # The reader pins the generation it found first: a concurrent replacement cannot splice two objects.
            with self.bucket.blob(self._name(key)).open("rb", chunk_size=max(chunk_size, 256 << 10)) as fh:
                while chunk := fh.read(chunk_size):
                    yield chunk

    def stat(self, key: str) -> ObjectInfo | None:
        with self._errors("stat", key):
            blob = self.bucket.get_blob(self._name(key))
        if blob is None:
            return None
        return ObjectInfo(key=key, size=blob.size, modified=blob.updated, tier=blob.storage_class or "STANDARD")

    def delete(self, key: str) -> None:
        try:
            with self._errors("delete", key):
                blob = self.bucket.blob(self._name(key))
                if self.location.immutability:
                    blob = self.bucket.get_blob(self._name(key))
                    if blob is None:
                        return
                    until = blob.retention.retain_until_time or blob.retention_expiration_time
                    if until is not None and until > datetime.now(UTC):
                        raise StorageError(f"{key} in {self.location.name} is write-once until "
                                           f"{until:%Y-%m-%d %H:%M} UTC; it cannot be deleted before then.")
                blob.delete()
        except ObjectMissing:
            pass

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._errors("list"):
            for blob in self.bucket.client.list_blobs(self.bucket, prefix=self._list_prefix(prefix) or None):
                yield ObjectInfo(key=self._key(blob.name), size=blob.size, modified=blob.updated,
                                 tier=blob.storage_class or "STANDARD", etag=blob.etag or blob.md5_hash or "")

    def set_tier(self, key: str, tier: str) -> None:
        tier = tier.upper()
        if tier not in TIERS:
            raise StorageError(f"Unknown GCS storage class {tier!r} (known: {', '.join(TIERS)}).")
        with self._errors("change the storage class of", key):
            blob = self.bucket.get_blob(self._name(key))
            if blob is None:
                raise ObjectMissing(f"{key} in {self.location.name} is missing.")
            blob.update_storage_class(tier)  # a rewrite onto itself (chunked by the client for large objects)

    def check(self) -> None:
        with self._errors("reach the bucket of"):
            self.bucket.reload()

    def immutability_enforced(self, key: str) -> tuple[bool, str]:
        try:
            self.bucket.blob(self._name(key)).delete()
        except Exception as exc:
            return True, f"GCS refused to delete an object under retention ({type(exc).__name__})"
        return False, "GCS deleted a fresh object that should have been retained (does the bucket enable " \
                      "object retention, or have a retention policy?)"


class _GcsErrors:
    def __init__(self, backend: GcsBackend, action: str, key: str):
        self.backend, self.action, self.key = backend, action, key

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError

        if exc is None or isinstance(exc, StorageError):
            return False
        if not isinstance(exc, (gexc.GoogleAPIError, GoogleAuthError)):
            return False
        where = f"{self.key} in {self.backend.location.name}" if self.key else self.backend.location.name
        if isinstance(exc, gexc.NotFound):
            if self.key:
                raise ObjectMissing(f"{where} is missing.") from None
            raise StorageError(f"Cannot {self.action} {where}: bucket {self.backend.location.bucket} does not "
                               "exist.") from None
        if isinstance(exc, gexc.PreconditionFailed):
            raise StorageError(f"{where} already exists and the location is write-once: not overwritten.") from None
        message = (getattr(exc, "message", None) or str(exc)).splitlines()[0][:300]
        raise StorageError(f"Cannot {self.action} {where}: {type(exc).__name__}: {message}") from None
