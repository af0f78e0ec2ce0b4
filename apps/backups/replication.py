"""Replication: copy a committed backup to each replica location of its target, and prove each copy.

One job per (backup, location) (apps/backups/jobs.py ReplicateBackupJob), enqueued once the backup has
committed; the jobs run in parallel on the workers. A copy streams each artifact from a healthy source
(the primary, else a replica already present) into the replica location, checks the SHA-256 of the bytes
streamed against the catalog before the object is committed, reads the committed object back and checks it
again, and writes the manifest LAST, so a replica location never holds a manifest whose artifacts are not all
there (the same commit-marker rule as a backup). An attempt that fails is retried with exponential backoff
(REPLICATION_ATTEMPTS, REPLICATION_BACKOFF_SECONDS); objects already copied and verified are not copied again.
The Replica row records status, bytes, tier, attempts, the last error and when the copy completed; after the
last attempt it stays `failed` with the error (the monitoring issue alerts on it). The backup itself is never
touched: it stays usable from its primary whatever happens to a replica.
"""
import hashlib
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.backups import sources
from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.jobs.progress import JobContext, note
from apps.pipeline import manifest as manifests
from apps.storage import backends
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)


class ReplicaMismatch(StorageError):
    """Bytes read or written do not match the catalog's SHA-256."""


class SourceCorrupt(ReplicaMismatch):
    """The copy being read from is corrupt: the next attempt reads from another one."""


def replica_locations(backup: Backup) -> list[StorageLocation]:
    """Where the backup should be copied: its target's enabled replica locations, other than its primary."""
    if backup.database_target is None:
        return []
    return list(backup.database_target.replica_locations.filter(enabled=True)
                .exclude(pk=backup.storage_location_id).order_by("name"))


def request_replication(*, backup: Backup, location: StorageLocation, actor: Actor) -> dict:
    """Validate a copy of `backup` to `location` and record its Replica row (pending); the job's arguments."""
    if backup.status != BackupStatus.SUCCEEDED:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only a succeeded backup is replicated.")
    if location.pk == backup.storage_location_id:
        raise UserError(f"Backup {backup.pk} was written to {location.name}; it is not a replica of itself.")
    backends.get(location.kind)
    with transaction.atomic():
        replica, created = Replica.objects.get_or_create(backup=backup, location=location)
        if not created and replica.status != ReplicaStatus.PRESENT:
            Replica.objects.filter(pk=replica.pk).update(status=ReplicaStatus.PENDING)
        audit(actor=actor, action="backup.replication.requested", obj=backup, details={"location": location.name})
    return {"backup_id": backup.pk, "location_id": location.pk}


def enqueue_replicas(*, backup: Backup, actor: Actor) -> list:
    """After a backup commits: one ReplicateBackupJob per replica location (see enqueue_each)."""
    from apps.backups.jobs import ReplicateBackupJob

    return enqueue_each(locations=replica_locations(backup), rows=Replica.objects, owner={"backup": backup},
                        enqueue=lambda location: ReplicateBackupJob.enqueue(actor=actor, backup=backup,
                                                                             location=location))


def enqueue_each(*, locations, enqueue, rows, owner: dict) -> list:
    """Enqueue one copy job per location. A location whose job cannot be enqueued is logged and recorded
    failed on its replica row (`rows`, keyed by `owner` and the location); what was copied from stays
    succeeded. Shared by backups and document versions (apps/documents/replication.py)."""
    jobs = []
    for location in locations:
        try:
            jobs.append(enqueue(location))
        except Exception as exc:
            log.exception("Could not enqueue the replication of %s to %s",
                          next(iter(owner.values())).pk, location.name)
            rows.update_or_create(**owner, location=location, defaults={
                "status": ReplicaStatus.FAILED, "last_error": f"not enqueued: {exc}"})
    return jobs


def replicate(*, backup: Backup, location: StorageLocation, ctx: JobContext | None = None,
              on_retry=None) -> Replica:
    """Copy the backup to `location` with retries; the Replica row ends present or failed (raises then)."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    replica, _ = Replica.objects.get_or_create(backup=backup, location=location)
    Replica.objects.filter(pk=replica.pk).update(status=ReplicaStatus.COPYING, last_error="")

    def failed_attempt(state) -> None:
        exc = state.outcome.exception()
        Replica.objects.filter(pk=replica.pk).update(last_error=str(exc)[:2000])
        note(ctx, logger=log, message=f"replica {location.name}: attempt {state.attempt_number} failed ({exc}); retrying in "
                  f"{state.next_action.sleep:.1f} s")
        if on_retry is not None:
            on_retry(state)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, settings.REPLICATION_ATTEMPTS)),
        wait=wait_exponential(multiplier=settings.REPLICATION_BACKOFF_SECONDS,
                              max=settings.REPLICATION_BACKOFF_MAX_SECONDS),
        retry=retry_if_exception_type((StorageError, OSError)),
        before_sleep=failed_attempt,
        reraise=True,
    )
    try:
        copied = retrying(_attempt, backup=backup, replica=replica, location=location, ctx=ctx)
    except Exception as exc:
        Replica.objects.filter(pk=replica.pk).update(status=ReplicaStatus.FAILED, last_error=str(exc)[:2000])
        note(ctx, logger=log, message=f"replica {location.name}: failed for good: {exc}")
        raise
    replica.refresh_from_db()
    from apps.backups.lifecycle import refresh_used_bytes

    refresh_used_bytes(location)
    note(ctx, logger=log, message=f"replica {location.name}: {copied} bytes copied and verified after {replica.attempts} attempt(s)")
    return replica


def _attempt(*, backup: Backup, replica: Replica, location: StorageLocation, ctx: JobContext | None) -> int:
    Replica.objects.filter(pk=replica.pk).update(attempts=replica.attempts + 1)
    replica.attempts += 1
    dest = backends.for_location(location)
    source = sources.source_for(backup, ctx, deep=False)
    if source.location.pk == location.pk:
        raise UserError(f"{location.name} is where backup {backup.pk} is read from; nothing to copy.")
    total, tier = 0, ""
    for artifact in backup.artifacts.order_by("pk"):
        info = dest.stat(artifact.key)
        if not (info and info.size == artifact.size_stored and dest.sha256(artifact.key)[0] == artifact.sha256_stored):
            note(ctx, logger=log, message=f"copying {artifact.key} from {source.location.name} to {location.name}")
            try:
                dest.put_stream(artifact.key, checked_stream(source.get_stream(artifact.key), artifact.sha256_stored,
                                                       f"{artifact.key} in {source.location.name}"))
            except SourceCorrupt as exc:
                sources.mark_corrupt(backup, source.location, str(exc))
                raise
            digest, size = dest.sha256(artifact.key)  # read back what the replica holds now
            if digest != artifact.sha256_stored or size != artifact.size_stored:
                raise ReplicaMismatch(f"{artifact.key} read back from {location.name} fails its SHA-256 check.")
            info = dest.stat(artifact.key)
        total += artifact.size_stored
        tier = tier or (info.tier if info else "")
    if backup.manifest_key:  # last: the commit marker of the replica
        body = source.get_bytes(backup.manifest_key)
        parsed = manifests.loads(body)
        if parsed.get("backup_id") != backup.pk:
            raise ReplicaMismatch(f"The manifest in {source.location.name} is not backup {backup.pk}'s.")
        existing = dest.stat(backup.manifest_key)
        if existing is None or dest.get_bytes(backup.manifest_key) != body:
            dest.put_bytes(backup.manifest_key, body)
        total += len(body)
    now = timezone.now()
    Replica.objects.filter(pk=replica.pk).update(
        status=ReplicaStatus.PRESENT, bytes=total, storage_class=tier, copied_at=now, checksum_verified_at=now,
        last_error="",
    )
    return total


def checked_stream(chunks: Iterator[bytes], expected: str, what: str) -> Iterator[bytes]:
    """Pass the source's bytes on; at the end, fail (so the destination never commits them) unless their
    SHA-256 is the catalog's."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != expected:
        raise SourceCorrupt(f"{what} fails its SHA-256 check while being copied (corrupt source); not copied.")


def lag_seconds(replica: Replica) -> float | None:
    """How far the replica is behind its backup: until the copy completed, or until now while it has not."""
    return lag_of(finished=replica.backup.finished_at, copied_at=replica.copied_at,
                  primary=replica.location_id == replica.backup.storage_location_id)


def lag_of(*, finished, copied_at, primary: bool) -> float | None:
    """lag_seconds from the plain values (for reads of many replicas without model instances)."""
    if finished is None or primary:
        return None
    end = copied_at or timezone.now()
    return max(0.0, round((end - finished).total_seconds(), 3))


