"""Deleting a backup: its stored objects leave every location; its row stays, marked `deleted`, for history.

The manifest is the commit marker (docs/FORMAT.md): a backup whose manifest is present looks complete. So
deletion runs in the reverse order of a backup:

1. every location's manifest is removed FIRST — from then on no location offers the backup as complete,
   whatever happens next;
2. then its artifacts (and any other object under the backup's prefix);
3. each removal is confirmed (the object no longer stats), else the deletion fails;
4. then the rows: replicas and the backup are marked `deleted` and the deletion is audited.

A crash or storage error after step 1 leaves artifacts without a manifest — garbage that verification and a
catalog rebuild reject, never a half-deleted backup that looks restorable — and the row still says what it
was, so running the deletion again finishes it (an object already gone is not an error).

Refused: a backup under legal hold, one still pending or running, one a kept backup depends on (its
incrementals), and one already deleted. The backup row is locked while it is being deleted, so a legal hold
set meanwhile waits for the deletion to finish (on PostgreSQL; SQLite serializes writers anyway).
"""
import logging
import posixpath

from django.db import transaction

from apps.approvals import gate
from apps.backups import layout
from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.storage import backends
from apps.storage.backends import StorageError

log = logging.getLogger(__name__)

IN_PROGRESS = (BackupStatus.PENDING, BackupStatus.RUNNING)


def refusal(backup: Backup) -> str | None:
    """Why this backup may not be deleted now, or None."""
    if backup.status == BackupStatus.DELETED:
        return f"Backup {backup.pk} is already deleted."
    if backup.legal_hold:
        return f"Backup {backup.pk} is under legal hold; release the hold first."
    if backup.status in IN_PROGRESS:
        return f"Backup {backup.pk} is {backup.status}; wait for it to finish."
    if backup.children.exclude(status=BackupStatus.DELETED).exists():
        return f"Backup {backup.pk} has backups that depend on it; delete those first."
    return None


def _prefix(backup: Backup) -> str | None:
    if backup.manifest_key:
        return posixpath.dirname(backup.manifest_key)
    if backup.database_target is not None:
        return layout.backup_prefix(backup.database_target.name, backup.pk)
    return None


def _locations(backup: Backup) -> list:
    """Every location that may hold objects of the backup: where it was written and every replica."""
    locations = {backup.storage_location_id: backup.storage_location}
    for replica in backup.replicas.select_related("location"):
        locations.setdefault(replica.location_id, replica.location)
    return [locations[pk] for pk in sorted(locations)]


def _delete_objects(backup: Backup) -> list[str]:
    """Remove the backup's objects from every location, manifests first; returns the keys removed."""
    try:
        stores = [backends.for_location(location) for location in _locations(backup)]
    except StorageError as exc:
        raise UserError(f"Backup {backup.pk} cannot be deleted: {exc}") from None
    prefix = _prefix(backup)
    manifest = backup.manifest_key or (f"{prefix}/manifest.json" if prefix else "")
    artifact_keys = list(backup.artifacts.values_list("key", flat=True))
    removed: list[str] = []
    if manifest:
        for store in stores:  # the commit marker goes first, in every location
            store.delete(manifest)
            removed.append(f"{store.location.name}:{manifest}")
    for store in stores:
        keys = list(artifact_keys)
        if prefix:  # anything else under the backup's prefix (e.g. an object of an interrupted replication)
            keys += [info.key for info in store.list(prefix + "/") if info.key not in keys and info.key != manifest]
        for key in keys:
            store.delete(key)
            removed.append(f"{store.location.name}:{key}")
    # Confirmed, not assumed: a store that answered the delete but still holds the object (a write-once lock,
    # an eventually consistent listing) fails the deletion, and the row keeps saying the backup is there.
    for store in stores:
        for key in ([manifest] if manifest else []) + artifact_keys:
            if store.stat(key) is not None:
                raise UserError(f"Backup {backup.pk}: {key} is still in {store.location.name} after its deletion.")
    return removed


def delete_backup(*, backup: Backup, actor: Actor, refresh_usage: bool = True) -> Backup:
    """Delete a backup's stored objects everywhere and mark it deleted; audited. Raises ConflictError if refused.

    `refresh_usage=False` leaves the locations' used bytes to the caller (retention refreshes them once per run).
    With the two-person policy on, a request from the API, console or admin waits for a second admin instead
    (apps.approvals.gate raises ApprovalPending); a refusal is said at once, not after the approval.
    """
    if gate.holds("backup.delete", actor):
        if (reason := refusal(backup)) is not None:
            raise ConflictError(reason)
        gate.check(action="backup.delete", actor=actor, params={"backup_id": backup.pk}, obj=backup,
                   summary=f"delete backup {backup.pk} ({backup.kind} of "
                           f"{backup.database_target.name if backup.database_target_id else 'no target'})")
    try:
        with transaction.atomic():
            locked = (Backup.objects.select_for_update(of=("self",)).select_related("database_target", "storage_location")
                      .get(pk=backup.pk))
            if (reason := refusal(locked)) is not None:
                raise ConflictError(reason)
            previous = locked.status
            removed = _delete_objects(locked)
            Replica.objects.filter(backup=locked).update(status=ReplicaStatus.DELETED)
            Backup.objects.filter(pk=locked.pk).update(status=BackupStatus.DELETED)
            audit(actor=actor, action="backup.deleted", obj=locked,
                  details={"previous_status": previous, "objects_removed": removed})
            from apps.backups.lifecycle import refresh_used_bytes

            for location in _locations(locked) if refresh_usage else []:
                refresh_used_bytes(location)
    except ConflictError:
        raise
    except Exception as exc:
        # Objects may be half removed (never the manifest last): say so in the audit log; running it again finishes.
        log.exception("Deleting backup %s failed", backup.pk)
        audit(actor=actor, action="backup.delete.failed", obj=backup, details={"error": str(exc)[:500]})
        if isinstance(exc, UserError):
            raise
        raise UserError(f"Deleting backup {backup.pk} failed part way ({exc}); run the deletion again.") from exc
    backup.refresh_from_db()
    return backup
