"""Amazon S3 (and S3-compatible stores: MinIO, moto) through boto3.

Uploads are multipart (PART_SIZE parts, a few in flight, each with its CRC32 declared and listed at Complete as
boto3's upload_file does), completed only after the last part: until then
nothing is visible under the key, and a failure aborts the upload. A write-once location (Object Lock)
sends the lock mode and retain-until date with every upload and refuses to overwrite (If-None-Match).
Credentials: `credentials_ref` pointing at an AWS credentials file (INI, [default] or the first profile) or
at JSON {"aws_access_key_id", "aws_secret_access_key"[, "aws_session_token"]}; without one, boto3's own
chain (AWS_ACCESS_KEY_ID..., ~/.aws, instance roles).
"""
import configparser
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from apps.storage.backends import register
from apps.storage.backends.base import CHUNK_SIZE, ObjectInfo, ObjectMissing, StorageError
from apps.storage.backends.cloud import PART_SIZE, CloudBackend, parts, read_credentials, upload_parts

TIERS = ["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]
NEEDS_RESTORE = {"GLACIER", "DEEP_ARCHIVE"}
MISSING = {"404", "NoSuchKey", "NotFound"}


def _credentials(text: str | None) -> dict:
    if text is None:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise StorageError("The S3 credentials are not valid JSON.") from None
    else:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
        except configparser.Error:
            raise StorageError("The S3 credentials file is not an AWS credentials file (INI).") from None
        sections = parser.sections()
        data = dict(parser["default"] if "default" in sections else parser[sections[0]] if sections else {})
    keys = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
    found = {k: data[k] for k in keys if data.get(k)}
    if "aws_access_key_id" not in found or "aws_secret_access_key" not in found:
        raise StorageError("The S3 credentials lack aws_access_key_id or aws_secret_access_key.")
    return found


def _code(exc) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


@register
class S3Backend(CloudBackend):
    kind = "s3"
    label = "Amazon S3"

    def __init__(self, location):
        super().__init__(location)
        self.bucket = location.bucket
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3  # heavy: only when a location of this kind is used
            from botocore.config import Config
            from django.conf import settings

            session = boto3.session.Session(**_credentials(read_credentials(self.location.credentials_ref)))
            self._client = session.client(
                "s3", endpoint_url=self.location.endpoint_url or None, region_name=self.location.region or None,
                config=Config(retries={"max_attempts": settings.STORAGE_SDK_ATTEMPTS, "mode": "standard"}, max_pool_connections=16,
                              connect_timeout=10, read_timeout=120),
            )
        return self._client

    def _errors(self, action: str, key: str = ""):
        return _S3Errors(self, action, key)

    def _lock_args(self, retain_until: datetime | None) -> dict:
        if retain_until is None:
            return {}
        return {"ObjectLockMode": self.location.immutability.upper(), "ObjectLockRetainUntilDate": retain_until}

    def upload(self, key: str, chunks: Iterable[bytes], *, retain_until: datetime | None) -> ObjectInfo:
        name = self._name(key)
        extra = self._lock_args(retain_until)
        if self.location.storage_class:
            extra["StorageClass"] = self.location.storage_class
        if retain_until is not None:
            extra["ChecksumAlgorithm"] = "SHA256"  # S3 wants a checksum on Object Lock writes
        # A write-once location never replaces an object (refused by S3, not only by us).
        condition = {"IfNoneMatch": "*"} if retain_until is not None else {}
        pieces = parts(chunks, PART_SIZE)
        first = next(pieces, b"")
        second = next(pieces, None)
        with self._errors("upload", key):
            if second is None:  # fits in one part: a single PUT, atomic by itself
                self.client.put_object(Bucket=self.bucket, Key=name, Body=first, **extra, **condition)
                size = len(first)
            else:
                size = self._multipart(name, _chain(first, second, pieces), extra, condition)
            if retain_until is not None:
                self._ensure_retention(name, retain_until)
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC), tier=self.location.storage_class)

    def _multipart(self, name: str, pieces: Iterator[bytes], extra: dict, condition: dict) -> int:
        # Declare the parts' checksum algorithm up front and list each part's checksum at Complete, as boto3's
        # managed transfer does: the store then checks every part and builds a composite checksum from the parts'
        # own. Without a declared algorithm, S3 (and moto) default to a full-object CRC64NVME, which moto computes
        # over a second in-memory copy of the whole object at Complete (seconds per GiB).
        extra = {"ChecksumAlgorithm": "CRC32", **extra}
        algorithm = extra["ChecksumAlgorithm"]
        member = f"Checksum{algorithm}"
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name, **extra)["UploadId"]
        size = 0

        def send(number: int, data: bytes) -> dict:
            r = self.client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number,
                                        Body=data, ChecksumAlgorithm=algorithm)
            part = {"PartNumber": number, "ETag": r["ETag"]}
            if member in r:
                part[member] = r[member]
            return part

        def counted():
            nonlocal size
            for data in pieces:
                size += len(data)
                yield data

        try:
            done = upload_parts(counted(), send)
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                  MultipartUpload={"Parts": done}, **condition)
        except BaseException:
            try:  # nothing was visible under the key; free the parts
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except Exception:
                pass  # the bucket's lifecycle rule for incomplete uploads is the backstop
            raise
        return size

    def _ensure_retention(self, name: str, retain_until: datetime) -> None:
        """Some S3-compatible stores drop the lock headers of a multipart upload: set the retention explicitly."""
        head = self.client.head_object(Bucket=self.bucket, Key=name)
        if head.get("ObjectLockRetainUntilDate") is None:
            self.client.put_object_retention(
                Bucket=self.bucket, Key=name, VersionId=head.get("VersionId"), ChecksumAlgorithm="SHA256",
                Retention={"Mode": self.location.immutability.upper(), "RetainUntilDate": retain_until},
            )

    def get_stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self._errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        try:
            with self._errors("read", key):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors("stat", key):
                head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ObjectMissing:
            return None
        return ObjectInfo(key=key, size=head["ContentLength"], modified=head.get("LastModified"),
                          tier=head.get("StorageClass") or "STANDARD")

    def delete(self, key: str) -> None:
        name = self._name(key)
        with self._errors("delete", key):
            if not self.location.immutability:
                self.client.delete_object(Bucket=self.bucket, Key=name)
                return
            # Write-once: never try before the lock expires; then remove every version (a plain DELETE would
            # only hide the object behind a delete marker).
            versions = self.client.list_object_versions(Bucket=self.bucket, Prefix=name)
            found = [v for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []) if v["Key"] == name]
            now = datetime.now(UTC)
            for v in found:
                if "ETag" not in v:
                    continue  # a delete marker
                head = self.client.head_object(Bucket=self.bucket, Key=name, VersionId=v["VersionId"])
                until = head.get("ObjectLockRetainUntilDate")
                if until is not None and until > now:
                    raise StorageError(f"{key} in {self.location.name} is write-once until {until:%Y-%m-%d %H:%M} "
                                       "UTC; it cannot be deleted before then.")
            for v in found:
                self.client.delete_object(Bucket=self.bucket, Key=name, VersionId=v["VersionId"])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._list_prefix(prefix)):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=self._key(obj["Key"]), size=obj["Size"], modified=obj.get("LastModified"),
                                     tier=obj.get("StorageClass") or "STANDARD", etag=obj.get("ETag", "").strip('"'))

    def set_tier(self, key: str, tier: str) -> None:
        tier = tier.upper()
        if tier not in TIERS:
            raise StorageError(f"Unknown S3 storage class {tier!r} (known: {', '.join(TIERS)}).")
        name = self._name(key)
        extra = {"StorageClass": tier, "MetadataDirective": "COPY"}
        if self.location.immutability:
            # A copy is a new version: it must carry the lock again (the old version stays until its lock ends).
            head = self.client.head_object(Bucket=self.bucket, Key=name)
            until = head.get("ObjectLockRetainUntilDate") or self.retain_until()
            extra.update(self._lock_args(until), ChecksumAlgorithm="SHA256")
        with self._errors("change the storage class of", key):
            # The managed copy switches to a multipart copy above 5 GB, where a single CopyObject fails.
            self.client.copy({"Bucket": self.bucket, "Key": name}, self.bucket, name, ExtraArgs=extra)

    def check(self) -> None:
        with self._errors("reach the bucket of"):
            self.client.head_bucket(Bucket=self.bucket)

    def lock_configured(self) -> tuple[bool, str]:
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except Exception as exc:
            if _code(exc) == "ObjectLockConfigurationNotFoundError":
                return False, f"bucket {self.bucket} has no Object Lock configuration"
            raise StorageError(f"Cannot read the Object Lock configuration of {self.bucket}: {_code(exc) or exc}")
        if conf.get("ObjectLockEnabled") != "Enabled":
            return False, f"Object Lock is not enabled on bucket {self.bucket}"
        return True, "Object Lock enabled"

    def immutability_enforced(self, key: str) -> tuple[bool, str]:
        name = self._name(key)
        head = self.client.head_object(Bucket=self.bucket, Key=name)
        try:  # a DELETE of the version itself (not a delete marker) is what Object Lock must refuse
            self.client.delete_object(Bucket=self.bucket, Key=name, VersionId=head.get("VersionId", "null"))
        except Exception as exc:
            if _code(exc) != "AccessDenied":
                return False, f"deleting the probe's version failed oddly: {_code(exc) or exc}"
            return True, f"S3 refused to delete a locked version ({head.get('ObjectLockMode')} until " \
                         f"{head.get('ObjectLockRetainUntilDate')})"
        return False, "S3 deleted a fresh object that should have been locked"


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


class _S3Errors:
    """Translate botocore errors into StorageError / ObjectMissing with a message an operator can act on."""

    def __init__(self, backend: S3Backend, action: str, key: str):
        self.backend, self.action, self.key = backend, action, key

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, StorageError) or not _is_sdk_error(exc):
            return False
        where = f"{self.key} in {self.backend.location.name}" if self.key else self.backend.location.name
        code = _code(exc)
        if code == "NoSuchBucket" or (code in MISSING and not self.key):
            raise StorageError(f"Cannot {self.action} {where}: bucket {self.backend.bucket} does not exist.") from None
        if code in MISSING:
            raise ObjectMissing(f"{where} is missing.") from None
        if code == "InvalidObjectState":
            raise StorageError(
                f"{where} is in an archive storage class ({exc.response.get('Error', {}).get('StorageClass', 'GLACIER')})"
                " and must be restored (rehydrated) before it can be read: run an S3 restore-object on it, wait for "
                "the restore to finish, then try again.") from None
        if code == "PreconditionFailed":
            raise StorageError(f"{where} already exists and the location is write-once: not overwritten.") from None
        raise StorageError(f"Cannot {self.action} {where}: {code or type(exc).__name__}: "
                           f"{_message(exc)}") from None


def _is_sdk_error(exc) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def _message(exc) -> str:
    response = getattr(exc, "response", None)
    if response:
        return str(response.get("Error", {}).get("Message", ""))[:300]
    return str(exc)[:300]
