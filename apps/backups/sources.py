"""Where to read a backup from: the location it was written to, else the next healthy replica.

A location is healthy for a backup when its manifest is there and every artifact is there with the size and
SHA-256 the catalog records (the whole object is read back: a flipped byte anywhere is found before a restore
starts writing). Candidates are tried in order: the primary (where the backup was written), then each location
holding a replica marked present, oldest copy first. A location found wanting has its replica marked corrupt,
so the API and the next verification show it.
"""
import logging

from apps.backups.models import Backup, Replica, ReplicaStatus
from apps.core.errors import UserError
from apps.jobs.progress import JobContext, note
from apps.storage import backends
from apps.storage.backends import StorageBackend, StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)


def candidates(backup: Backup) -> list[StorageLocation]:
    """The primary, then present replicas (oldest copy first); a primary already found corrupt goes last."""
    primary_status = Replica.objects.filter(backup=backup, location_id=backup.storage_location_id).values_list(
        "status", flat=True).first()
    replicas = (Replica.objects.filter(backup=backup, status=ReplicaStatus.PRESENT, location__enabled=True)
                .exclude(location_id=backup.storage_location_id).select_related("location")
                .order_by("copied_at", "pk"))
    found = [r.location for r in replicas]
    if primary_status == ReplicaStatus.CORRUPT:
        return found + [backup.storage_location]
    return [backup.storage_location] + found


def mark_corrupt(backup: Backup, location: StorageLocation, why: str) -> None:
    Replica.objects.filter(backup=backup, location=location).exclude(status=ReplicaStatus.DELETED).update(
        status=ReplicaStatus.CORRUPT, last_error=why)


def problem(backup: Backup, backend: StorageBackend, *, deep: bool = True) -> tuple[str, bool] | None:
    """(why this location cannot serve the backup, whether its copy is damaged rather than unreachable), or
    None when it can."""
    try:
        if backup.manifest_key and backend.stat(backup.manifest_key) is None:
            return f"manifest {backup.manifest_key} is missing", True
        for artifact in backup.artifacts.all():
            info = backend.stat(artifact.key)
            if info is None:
                return f"{artifact.key} is missing", True
            if info.size != artifact.size_stored:
                return f"{artifact.key} is {info.size} bytes, expected {artifact.size_stored}", True
            if deep and backend.sha256(artifact.key)[0] != artifact.sha256_stored:
                return f"{artifact.key} fails its SHA-256 check (corrupt or altered)", True
    except (StorageError, OSError) as exc:
        return str(exc), False
    return None


def source_for(backup: Backup, ctx: JobContext | None = None, *, deep: bool = True) -> StorageBackend:
    """The backend to read `backup` from, checked now (and noted on the instance for `source_name`).

    Raises UserError naming every location tried and what was wrong with it.
    """
    tried = []
    for location in candidates(backup):
        try:
            backend = backends.for_location(location)
        except StorageError as exc:
            tried.append(f"{location.name}: {exc}")
            continue
        found = problem(backup, backend, deep=deep)
        if found is None:
            if tried:
                note(ctx, logger=log, message=f"reading backup {backup.pk} from replica {location.name} "
                          f"(skipped {'; '.join(tried)})")
            else:
                note(ctx, logger=log, message=f"reading backup {backup.pk} from {location.name}")
            backup._source_backend = backend
            return backend
        why, damaged = found
        tried.append(f"{location.name}: {why}")
        if damaged:
            mark_corrupt(backup, location, why)
        else:  # unreachable now; its copy may well be fine
            Replica.objects.filter(backup=backup, location=location).exclude(
                status=ReplicaStatus.DELETED).update(last_error=why)
    raise UserError(f"No healthy copy of backup {backup.pk}: " + "; ".join(tried))


def source_name(backup: Backup) -> str | None:
    chosen = getattr(backup, "_source_backend", None)
    return chosen.location.name if chosen is not None else None


