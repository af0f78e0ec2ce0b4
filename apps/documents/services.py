"""Writes for document backups: sources, requesting a version, and settling dead ones."""
import os

from django.db import transaction

from apps.backups import locks
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.documents import backup as steps
from apps.documents.models import DocumentSource, DocumentVersion, VersionStatus
from apps.jobs.models import JobStatus
from apps.storage import backends
from apps.storage.services import location_for

MAX_PATTERNS = 100


def _check_patterns(patterns, what: str) -> list[str]:
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p and len(p) <= 255 for p in patterns):
        raise UserError(f"{what} must be a list of non-empty glob patterns of at most 255 characters.")
    if len(patterns) > MAX_PATTERNS:
        raise UserError(f"At most {MAX_PATTERNS} {what} patterns.")
    return patterns


def check_root_path(path: str) -> str:
    if not path or not os.path.isabs(path) or "\x00" in path:
        raise UserError("root_path must be an absolute path.")
    return os.path.normpath(path)


def check_prefix(prefix: str) -> str:
    """An object-store source's key prefix: relative, without '.', '..' or empty parts ("" for everything)."""
    prefix = (prefix or "").strip().strip("/")
    if prefix and ("\x00" in prefix or any(part in ("", ".", "..") for part in prefix.split("/"))):
        raise UserError("prefix must be a plain key prefix (no empty, '.' or '..' parts).")
    return prefix


def _check_origin(source: DocumentSource) -> None:
    """A source reads either a directory (root_path) or the objects under a prefix of a location, not both."""
    if source.object_location_id:
        if source.root_path:
            raise UserError("A source reads either a directory (root_path) or a storage location's objects "
                            "(object_location, prefix), not both.")
        try:
            backends.get(source.object_location.kind)
        except backends.StorageError as exc:
            raise UserError(str(exc)) from None
        source.prefix = check_prefix(source.prefix)
    else:
        if source.prefix:
            raise UserError("prefix needs object_location (the storage location whose objects to back up).")
        source.root_path = check_root_path(source.root_path)


@transaction.atomic
def save_source(*, source: DocumentSource, actor: Actor, replica_locations=None) -> DocumentSource:
    """Create or update a source; `replica_locations` (a list of StorageLocation), when given, replaces its
    replica locations (where each committed version is copied besides its own location)."""
    _check_origin(source)
    source.include = _check_patterns(source.include, "include")
    source.exclude = _check_patterns(source.exclude, "exclude")
    created = source._state.adding
    try:
        source.full_clean()
    except Exception as exc:
        messages = getattr(exc, "message_dict", None)
        if messages:
            raise UserError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        raise
    source.save()
    if replica_locations is not None:
        own = source.storage_location_id
        if any(loc.pk == own for loc in replica_locations):
            raise UserError("A replica location must differ from the source's own storage location.")
        for loc in replica_locations:
            try:
                backends.get(loc.kind)
            except backends.StorageError as exc:
                raise UserError(f"Replica location {loc.name}: {exc}") from None
        source.replica_locations.set(replica_locations)
    audit(actor=actor, action="documents.source.created" if created else "documents.source.updated", obj=source,
          details={"name": source.name, "origin": source.origin, "include": source.include,
                   "exclude": source.exclude, "follow_symlinks": source.follow_symlinks,
                   "replica_locations": sorted(loc.name for loc in source.replica_locations.all())})
    return source


def delete_source(*, source: DocumentSource, actor: Actor) -> None:
    if source.versions.exists():
        raise UserError(f"Source {source.name} has versions; disable it instead of deleting it.")
    audit(actor=actor, action="documents.source.deleted", obj=source, details={"name": source.name})
    source.delete()


def request_backup(*, source: DocumentSource, actor: Actor) -> DocumentVersion:
    """Record a pending version, unless one of the source is running or queued."""
    if not source.enabled:
        raise UserError(f"Source {source.name} is disabled.")
    location = location_for(source.storage_location, owner=f"Source {source.name} stores its versions")
    reap_abandoned(source=source)
    with transaction.atomic():
        locks.refuse_overlap(target=source, noun="version",
                             queued=DocumentVersion.objects.filter(source=source, status=VersionStatus.PENDING))
        version = DocumentVersion.objects.create(source=source, storage_location=location)
        audit(actor=actor, action="documents.backup.requested", obj=version, details={"source": source.name})
    return version


def reap_abandoned(*, source: DocumentSource | None = None) -> int:
    """Settle versions whose process died: running without a live lease, or pending with a failed job."""
    reaped = 0
    active = DocumentVersion.objects.filter(status__in=[VersionStatus.PENDING, VersionStatus.RUNNING]).select_related(
        "source", "job")
    if source is not None:
        active = active.filter(source=source)
    for version in active:
        if version.status == VersionStatus.RUNNING and locks.holder(target=version.source) != version.pk:
            steps.fail_version(version.pk, steps.ABANDONED)
        elif (version.status == VersionStatus.PENDING and version.job is not None
              and version.job.status == JobStatus.FAILED):
            steps.fail_version(version.pk, f"Its job failed before the backup started: {version.job.error}")
        else:
            continue
        reaped += 1
    return reaped


def committed(version: DocumentVersion) -> DocumentVersion:
    """The version, if it is one that can be read (restored, exported, verified, browsed)."""
    if version.status != VersionStatus.SUCCEEDED:
        raise UserError(f"Version {version.pk} is {version.status}; only succeeded versions can be read.")
    return version
