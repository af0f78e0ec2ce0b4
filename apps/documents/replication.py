"""Replicating document versions to a source's replica locations, the shape of apps/backups/replication.py.

One job per (version, location) (jobs.py DocumentReplicateJob), enqueued once the version has committed. A copy
takes the packs holding the version's chunks that the replica location does not hold yet (a later version
copies only its new packs), each streamed from a healthy copy (the version's own location, else another
replica), its SHA-256 checked on the way and read back from the replica; each copied pack is recorded with
its index rows for the replica location (so a restore from there needs nothing else), and the manifest is
copied LAST: a replica location never holds a manifest whose packs are not all there. Attempts are retried
with exponential backoff (REPLICATION_ATTEMPTS, REPLICATION_BACKOFF_*); packs already copied are not copied
again. The DocumentReplica row ends `present` or `failed` with the error; the version itself is untouched.
Restore and verify read from a present replica when the version's own copy is missing or damaged
(`read_locations`, chunks.ChunkStore's fallbacks).
"""
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.backups.replication import ReplicaMismatch, SourceCorrupt, checked_stream, enqueue_each
from apps.core.errors import UserError
from apps.documents import manifest
from apps.documents.backup import insert_chunks
from apps.documents.models import (
    DocumentChunk,
    DocumentPack,
    DocumentReplica,
    DocumentVersion,
    VersionStatus,
)
from apps.jobs.progress import JobContext, note
from apps.pipeline.keys import configured_keyring
from apps.storage import backends
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)

PENDING, COPYING, PRESENT, FAILED = "pending", "copying", "present", "failed"


def replica_locations(version: DocumentVersion) -> list[StorageLocation]:
    return list(version.source.replica_locations.filter(enabled=True).exclude(pk=version.storage_location_id)
                .order_by("name"))


def read_locations(version: DocumentVersion) -> list[StorageLocation]:
    """Where the version can be read: its own location, then the replicas present (oldest copy first)."""
    present = (DocumentReplica.objects.filter(version=version, status=PRESENT, location__enabled=True)
               .exclude(location_id=version.storage_location_id).select_related("location")
               .order_by("copied_at", "pk"))
    return [version.storage_location] + [r.location for r in present]


def load_manifest(version: DocumentVersion, *, keyring, ctx: JobContext | None = None) -> tuple[dict, list]:
    """(manifest, read_locations) from the first location holding an intact copy; UserError when none does.
    A copy found missing or altered is noted: the manifest is the one thing a version cannot be read without."""
    locations, problems = read_locations(version), []
    for loc in locations:
        try:
            body = manifest.load(version, keyring=keyring, location=loc)
        except UserError as exc:
            problems.append(str(exc))
            continue
        if problems:
            note(ctx, logger=log, message=f"manifest read from the replica in {loc.name}: {' '.join(problems)}")
        return body, locations
    raise UserError(" ".join(problems))


def request_replication(*, version: DocumentVersion, location: StorageLocation) -> dict:
    if version.status != VersionStatus.SUCCEEDED:
        raise UserError(f"Version {version.pk} is {version.status}; only a succeeded version is replicated.")
    if location.pk == version.storage_location_id:
        raise UserError(f"Version {version.pk} was written to {location.name}; it is not a replica of itself.")
    try:
        backends.get(location.kind)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    replica, created = DocumentReplica.objects.get_or_create(version=version, location=location)
    if not created and replica.status != PRESENT:
        DocumentReplica.objects.filter(pk=replica.pk).update(status=PENDING)
    return {"version_id": version.pk, "location_id": location.pk}


def enqueue_replicas(*, version: DocumentVersion, actor) -> list:
    """After a version commits: one DocumentReplicateJob per replica location (the backups' enqueue_each)."""
    from apps.documents.jobs import DocumentReplicateJob

    return enqueue_each(locations=replica_locations(version), rows=DocumentReplica.objects,
                        owner={"version": version},
                        enqueue=lambda location: DocumentReplicateJob.enqueue(actor=actor, version=version,
                                                                              location=location))


def replicate(*, version: DocumentVersion, location: StorageLocation, ctx: JobContext | None = None,
              on_retry=None) -> DocumentReplica:
    """Copy the version to `location` with retries; the row ends present, or failed (and this raises)."""
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    request_replication(version=version, location=location)
    replica = DocumentReplica.objects.get(version=version, location=location)
    DocumentReplica.objects.filter(pk=replica.pk).update(status=COPYING, last_error="")

    def failed_attempt(state) -> None:
        exc = state.outcome.exception()
        DocumentReplica.objects.filter(pk=replica.pk).update(last_error=str(exc)[:2000])
        note(ctx, logger=log, message=f"replica {location.name}: attempt {state.attempt_number} failed ({exc})")
        if on_retry is not None:
            on_retry(state)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, settings.REPLICATION_ATTEMPTS)),
        wait=wait_exponential(multiplier=settings.REPLICATION_BACKOFF_SECONDS,
                              max=settings.REPLICATION_BACKOFF_MAX_SECONDS),
        retry=retry_if_exception_type((StorageError, OSError)), before_sleep=failed_attempt, reraise=True,
    )
    try:
        retrying(_attempt, version=version, replica=replica, location=location, ctx=ctx)
    except Exception as exc:
        DocumentReplica.objects.filter(pk=replica.pk).update(status=FAILED, last_error=str(exc)[:2000])
        note(ctx, logger=log, message=f"replica {location.name}: failed for good: {exc}")
        raise
    replica.refresh_from_db()
    note(ctx, logger=log, message=f"replica {location.name}: {replica.packs_copied} packs, {replica.bytes} bytes "
                                  f"copied and verified after {replica.attempts} attempt(s)")
    return replica


def _sources(version: DocumentVersion, key: str, location: StorageLocation) -> list:
    """Backends holding the object `key` of this version's repository, the version's own location first."""
    others = [loc for loc in read_locations(version)[1:] if loc.pk != location.pk]
    if key != version.manifest_key:
        held = set(DocumentPack.objects.filter(key=key, damaged=False, location__in=others)
                   .values_list("location_id", flat=True))
        others = [loc for loc in others if loc.pk in held]
    return [backends.for_location(loc) for loc in [version.storage_location, *others]]


def _copy(version: DocumentVersion, key: str, sha256_stored: str, size_stored: int | None, dest, location) -> None:
    """Stream `key` from the first healthy copy into `dest`, checked on the way and read back."""
    errors = []
    for source in _sources(version, key, location):
        try:
            dest.put_stream(key, checked_stream(source.get_stream(key), sha256_stored, f"{key} in {source.location.name}"))
        except SourceCorrupt as exc:
            errors.append(str(exc))
            continue
        except backends.ObjectMissing as exc:
            errors.append(f"{key} is missing from {source.location.name}: {exc}")
            continue
        digest, size = dest.sha256(key)
        if digest != sha256_stored or (size_stored is not None and size != size_stored):
            raise ReplicaMismatch(f"{key} read back from {location.name} fails its SHA-256 check.")
        return
    raise StorageError("; ".join(errors) or f"no copy of {key} to read from")


def _attempt(*, version: DocumentVersion, replica: DocumentReplica, location: StorageLocation,
             ctx: JobContext | None) -> None:
    replica.attempts += 1
    DocumentReplica.objects.filter(pk=replica.pk).update(attempts=replica.attempts)
    try:
        body, _ = load_manifest(version, keyring=configured_keyring(), ctx=ctx)
    except UserError as exc:
        raise StorageError(str(exc)) from None
    shas = {c for e in body["entries"] if isinstance(e, dict) and e.get("type") == "file"
            for c in e.get("chunks") or []}
    pack_ids: set[int] = set()
    todo = list(shas)
    for i in range(0, len(todo), 500):
        pack_ids.update(DocumentChunk.objects.filter(location=version.storage_location, sha256__in=todo[i:i + 500])
                        .values_list("pack_id", flat=True))
    have = set(DocumentPack.objects.filter(location=location, damaged=False).values_list("key", flat=True))
    dest = backends.for_location(location)
    copied = copied_bytes = 0
    for pack in DocumentPack.objects.filter(pk__in=pack_ids).order_by("pk"):
        if pack.key in have:
            continue
        _copy(version, pack.key, pack.sha256_stored, pack.size_stored, dest, location)
        rows = list(DocumentChunk.objects.filter(pack=pack).values_list("sha256", "offset", "length"))
        with transaction.atomic():  # the copy and its index rows: usable from the replica from now on
            copy, _ = DocumentPack.objects.update_or_create(location=location, key=pack.key, defaults={
                "version": pack.version, "chunks": pack.chunks, "size_raw": pack.size_raw,
                "size_stored": pack.size_stored, "sha256_raw": pack.sha256_raw, "sha256_stored": pack.sha256_stored,
                "compression": pack.compression, "cipher": pack.cipher, "key_id": pack.key_id, "damaged": False})
            insert_chunks([(location.pk, sha, copy.pk, off, length) for sha, off, length in rows])
        copied += 1
        copied_bytes += pack.size_stored
    # The manifest last: the replica's commit marker.
    _copy(version, version.manifest_key, version.manifest_sha256_stored, None, dest, location)
    DocumentReplica.objects.filter(pk=replica.pk).update(
        status=PRESENT, bytes=replica.bytes + copied_bytes, packs_copied=replica.packs_copied + copied,
        copied_at=timezone.now(), last_error="")
    replica.bytes += copied_bytes
    replica.packs_copied += copied

