"""Azure Blob Storage through azure-storage-blob (Azurite in the tests).

Uploads stage blocks (PART_SIZE each, a few in flight) and commit the block list at the end: staged blocks
are invisible until the commit, and Azure discards uncommitted ones, so a failed stream leaves nothing under
the name. A write-once location sends a version-level immutability policy (until-date and mode) with the
commit. Credentials: `credentials_ref` pointing at a connection string; without one,
AZURE_STORAGE_CONNECTION_STRING (the variable the Azure tools use).
"""
import base64
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from apps.storage.backends import register
from apps.storage.backends.base import CHUNK_SIZE, ObjectInfo, ObjectMissing, StorageError
from apps.storage.backends.cloud import PART_SIZE, CloudBackend, parts, read_credentials, upload_parts

TIERS = {"hot": "Hot", "cool": "Cool", "cold": "Cold", "archive": "Archive"}
ENV_CONNECTION = "AZURE_STORAGE_CONNECTION_STRING"


@register
class AzureBackend(CloudBackend):
    kind = "azure"
    label = "Azure Blob Storage"
    container_word = "container"

    def __init__(self, location):
        super().__init__(location)
        self._container = None
        self.client_options: dict = {}  # extra SDK client options (the tests add a request hook)

    @property
    def container(self):
        if self._container is None:
            from azure.storage.blob import BlobServiceClient  # heavy: only when a location of this kind is used

            conn = read_credentials(self.location.credentials_ref) or os.environ.get(ENV_CONNECTION)
            if not conn:
                raise StorageError(f"Location {self.location.name} has no Azure credentials: set credentials_ref "
                                   f"(a connection string) or {ENV_CONNECTION}.")
            try:
                service = BlobServiceClient.from_connection_string(conn, **self.client_options)
            except ValueError:
                raise StorageError("The Azure connection string is malformed.") from None  # not quoted: a secret
            if self.location.endpoint_url:  # same account and key, another endpoint (an emulator, a private link)
                service = BlobServiceClient(self.location.endpoint_url, credential=service.credential,
                                            **self.client_options)
            self._container = service.get_container_client(self.location.bucket)
        return self._container

    def _blob(self, key: str):
        return self.container.get_blob_client(self._name(key))

    def _errors(self, action: str, key: str = ""):
        return _AzureErrors(self, action, key)

    def upload(self, key: str, chunks: Iterable[bytes], *, retain_until: datetime | None) -> ObjectInfo:
        blob = self._blob(key)
        size = 0

        def send(number: int, data: bytes) -> str:
            block_id = base64.b64encode(f"{number:08d}".encode()).decode()
            blob.stage_block(block_id=block_id, data=data, length=len(data))
            return block_id

        def counted():
            nonlocal size
            for data in parts(chunks, PART_SIZE):
                size += len(data)
                yield data

        extra = {}
        if retain_until is not None:
            from azure.storage.blob import BlobImmutabilityPolicyMode, ImmutabilityPolicy

            mode = BlobImmutabilityPolicyMode.LOCKED if self.location.immutability == "compliance" \
                else BlobImmutabilityPolicyMode.UNLOCKED
            extra["immutability_policy"] = ImmutabilityPolicy(expiry_time=retain_until, policy_mode=mode)
        if self.location.storage_class:
            extra["standard_blob_tier"] = _tier(self.location.storage_class)
        with self._errors("upload", key):
            from azure.storage.blob import BlobBlock

            ids = upload_parts(counted(), send)
            # The commit is the one moment the blob appears, complete.
            blob.commit_block_list([BlobBlock(block_id=i) for i in ids], **extra)
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC), tier=self.location.storage_class)

    def get_stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self._errors("read", key):
            download = self._blob(key).download_blob(max_concurrency=1)
            yield from download.chunks()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors("stat", key):
                props = self._blob(key).get_blob_properties()
        except ObjectMissing:
            return None
        return ObjectInfo(key=key, size=props.size, modified=props.last_modified, tier=str(props.blob_tier or ""))

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            with self._errors("delete", key):
                if self.location.immutability:
                    policy = blob.get_blob_properties().immutability_policy
                    until = getattr(policy, "expiry_time", None)
                    if until is not None and until > datetime.now(UTC):
                        raise StorageError(f"{key} in {self.location.name} is write-once until "
                                           f"{until:%Y-%m-%d %H:%M} UTC; it cannot be deleted before then.")
                blob.delete_blob(delete_snapshots="include")
        except ObjectMissing:
            pass

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._errors("list"):
            for props in self.container.list_blobs(name_starts_with=self._list_prefix(prefix) or None):
                yield ObjectInfo(key=self._key(props.name), size=props.size, modified=props.last_modified,
                                 tier=str(props.blob_tier or ""), etag=str(props.etag or "").strip('"'))

    def set_tier(self, key: str, tier: str) -> None:
        with self._errors("change the access tier of", key):
            self._blob(key).set_standard_blob_tier(_tier(tier))

    def check(self) -> None:
        with self._errors("reach the container of"):
            self.container.get_container_properties()

    def immutability_enforced(self, key: str) -> tuple[bool, str]:
        blob = self._blob(key)
        try:
            blob.delete_blob()
        except Exception as exc:
            code = getattr(exc, "error_code", "") or type(exc).__name__
            return True, f"Azure refused to delete a blob under an immutability policy ({code})"
        return False, "Azure deleted a fresh blob that should have been immutable (is version-level " \
                      "immutability enabled on the container?)"


def _tier(tier: str) -> str:
    try:
        return TIERS[tier.lower()]
    except KeyError:
        raise StorageError(f"Unknown Azure access tier {tier!r} (known: {', '.join(TIERS.values())}).") from None


class _AzureErrors:
    def __init__(self, backend: AzureBackend, action: str, key: str):
        self.backend, self.action, self.key = backend, action, key

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        if exc is None or isinstance(exc, StorageError) or not isinstance(exc, AzureError):
            return False
        where = f"{self.key} in {self.backend.location.name}" if self.key else self.backend.location.name
        code = getattr(exc, "error_code", None) or ""
        if code == "ContainerNotFound":
            raise StorageError(f"Cannot {self.action} {where}: container {self.backend.location.bucket} does not "
                               "exist.") from None
        if isinstance(exc, ResourceNotFoundError):
            raise ObjectMissing(f"{where} is missing.") from None
        if code == "BlobArchived":
            raise StorageError(f"{where} is in the Archive access tier and must be rehydrated (set its tier to Hot "
                               "or Cool, which takes hours on Azure) before it can be read.") from None
        message = (getattr(exc, "message", None) or str(exc)).splitlines()[0][:300]
        raise StorageError(f"Cannot {self.action} {where}: {code or type(exc).__name__}: {message}") from None
