"""Apply the retention plan (apps/retention/policy.py) to the catalog and storage.

A dry run only reports the plan. A real run holds the retention lock (apps/retention/locks.py) and, per
decision:

- delete: through apps.backups.deletion (manifests first, every location, each removal confirmed by a
  stat; the row is marked deleted only when every copy is confirmed gone, otherwise it stays as it was and
  the failure is reported). Newest first, so an incremental goes before what it was built on.
- archive: every present replica whose location has storage tiers moves to that kind's archive tier
  (ARCHIVE_TIER); on a location without tiers, a verified copy goes to RETENTION_ARCHIVE_LOCATION when
  one is configured. The backup is then stamped `archived_at`; it stays restorable from any copy.
- WAL older than the PITR window's base backup: each object deleted (and confirmed gone) before its row.

Every backup acted on gets an AuditEvent naming the rule and reason. A backup's state is re-read before
acting on it, so a run that repeats one (or runs after another) changes nothing: deleted backups are no
longer in the plan, archived ones are kept.
"""
import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.backups import deletion
from apps.backups.lifecycle import refresh_used_bytes
from apps.backups.models import Backup, BackupStatus, Replica, ReplicaStatus, RestorePoint, WalSegment
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext, note
from apps.retention import locks, policy, selectors
from apps.storage import backends, tiering
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)

# The archive tier of each kind: the coldest class that is still readable without a rehydration request,
# so an archived backup restores like any other (S3 GLACIER / Azure Archive would need a restore first).
ARCHIVE_TIER = {"s3": "GLACIER_IR", "azure": "Cold", "gcs": "ARCHIVE"}


def preview(*, target: DatabaseTarget | None = None, now: datetime | None = None) -> dict:
    """The dry run: every succeeded backup with its decision and the rule that decided it."""
    plan = selectors.current_plan(target=target, now=now)
    return _report(plan, dry_run=True)


def _report(plan: policy.Plan, *, dry_run: bool) -> dict:
    counts = {a: len(plan.by_action(a)) for a in (policy.KEEP, policy.ARCHIVE, policy.DELETE)}
    return {
        "dry_run": dry_run,
        "counts": counts,
        "bytes": {a: sum(d.size for d in plan.by_action(a)) for a in (policy.KEEP, policy.ARCHIVE, policy.DELETE)},
        "decisions": [d.as_dict() for d in plan.decisions],
        "wal_deletions": plan.wal_deletions,
        "pitr_bases": plan.pitr_bases,
    }


def enforce(*, actor: Actor, target: DatabaseTarget | None = None, dry_run: bool = False,
            now: datetime | None = None, ctx: JobContext | None = None) -> dict:
    """Enforce the rules (or, dry_run, only say what would be done). Returns the report of what was done."""
    if dry_run:
        return preview(target=target, now=now)
    with locks.held(ctx=ctx):
        now = now or timezone.now()
        plan = selectors.current_plan(target=target, now=now)
        report = _report(plan, dry_run=False)
        deleted, archived, failed = [], [], []
        for decision in reversed(plan.by_action(policy.DELETE)):  # newest first: incrementals before their parents
            try:
                if _delete(decision, actor=actor):
                    deleted.append(decision.backup_id)
            except UserError as exc:
                failed.append({"backup_id": decision.backup_id, "action": "delete", "error": str(exc)})
                note(ctx, logger=log, message=f"{decision.backup_id}: not deleted: {exc}")
        for decision in plan.by_action(policy.ARCHIVE):
            try:
                if _archive(decision, actor=actor, now=now, ctx=ctx):
                    archived.append(decision.backup_id)
            except UserError as exc:
                failed.append({"backup_id": decision.backup_id, "action": "archive", "error": str(exc)})
                note(ctx, logger=log, message=f"{decision.backup_id}: not archived: {exc}")
        wal_deleted = {}
        for target_name, names in plan.wal_deletions.items():
            if names:
                wal_deleted[target_name] = _delete_wal(target_name, names, actor=actor, failed=failed, ctx=ctx)
        for location in StorageLocation.objects.filter(enabled=True) if deleted else []:
            refresh_used_bytes(location)
        note(ctx, logger=log, message=f"retention: {len(deleted)} deleted, {len(archived)} archived, "
                                      f"{sum(wal_deleted.values())} WAL files deleted, {len(failed)} failed")
        report.update(deleted=deleted, archived=archived, wal_deleted=wal_deleted, failed=failed)
        return report


def _delete(decision: policy.Decision, *, actor: Actor) -> bool:
    backup = Backup.objects.select_related("database_target", "storage_location").get(pk=decision.backup_id)
    if backup.status != BackupStatus.SUCCEEDED or backup.legal_hold:
        return False  # changed since the plan was made (deleted by another run, put on hold): leave it
    deletion.delete_backup(backup=backup, actor=actor, refresh_usage=False)  # refreshed once, at the end
    audit(actor=actor, action="retention.backup.deleted", obj=backup,
          details={"rule": decision.rule, "reason": decision.reason, "size": decision.size})
    return True


def archive_location() -> StorageLocation | None:
    name = settings.RETENTION_ARCHIVE_LOCATION
    if not name:
        return None
    try:
        return StorageLocation.objects.get(name=name)
    except StorageLocation.DoesNotExist:
        raise UserError(f"RETENTION_ARCHIVE_LOCATION names {name!r}, which is not a storage location.") from None


def _archive(decision: policy.Decision, *, actor: Actor, now: datetime, ctx: JobContext | None) -> bool:
    backup = Backup.objects.select_related("storage_location").get(pk=decision.backup_id)
    if backup.status != BackupStatus.SUCCEEDED or backup.archived_at is not None:
        return False
    moved = []
    replicas = list(backup.replicas.filter(status=ReplicaStatus.PRESENT).select_related("location"))
    for replica in replicas:
        loc = replica.location
        tier = ARCHIVE_TIER.get(loc.kind)
        if tier is None:
            continue
        if not tiering.colder(loc.kind, tier, replica.storage_class):
            moved.append(f"{loc.name}:{replica.storage_class}")  # already as cold or colder
            continue
        try:
            store = backends.for_location(loc)
            for artifact in backup.artifacts.all():  # never the manifest: it stays readable at once
                store.set_tier(artifact.key, tier)
        except StorageError as exc:
            raise UserError(f"{loc.name}: the tier could not be changed: {exc}") from None
        Replica.objects.filter(pk=replica.pk).update(storage_class=tier, tier_changed_at=now)
        moved.append(f"{loc.name}:{tier}")
    if not moved:
        target = archive_location()
        if target is None:
            raise UserError(f"Backup {backup.pk} has no copy in a location with an archive tier, and no "
                            "RETENTION_ARCHIVE_LOCATION is configured.")
        from apps.backups.replication import replicate

        try:
            replicate(backup=backup, location=target, ctx=ctx)  # verified copy; raises when it fails for good
        except Exception as exc:
            raise UserError(f"The copy to the archive location {target.name} failed: {exc}") from None
        moved.append(f"{target.name}:copy")
    Backup.objects.filter(pk=backup.pk, archived_at=None).update(archived_at=now)
    audit(actor=actor, action="retention.backup.archived", obj=backup,
          details={"rule": decision.rule, "reason": decision.reason, "to": moved})
    for replica in replicas:
        refresh_used_bytes(replica.location)
    return True


def _delete_wal(target_name: str, names: list[str], *, actor: Actor, failed: list, ctx) -> int:
    """Delete WAL files no kept base backup or PITR window needs; each object confirmed gone before its row."""
    target = DatabaseTarget.objects.get(name=target_name)
    done, stores, locations = 0, {}, set()
    for segment in WalSegment.objects.filter(database_target=target, name__in=names).select_related(
            "storage_location"):
        loc = segment.storage_location
        try:
            store = stores.get(loc.pk) or stores.setdefault(loc.pk, backends.for_location(loc))
            store.delete(segment.key)
            if store.stat(segment.key) is not None:
                raise StorageError(f"{segment.key} is still there after its deletion")
        except StorageError as exc:
            failed.append({"wal": segment.name, "target": target_name, "action": "delete", "error": str(exc)})
            note(ctx, logger=log, message=f"WAL {segment.name} of {target_name} not deleted: {exc}")
            continue
        with transaction.atomic():
            RestorePoint.objects.filter(database_target=target, segment=segment.name).delete()
            segment.delete()
        locations.add(loc)
        done += 1
    if done:
        audit(actor=actor, action="retention.wal.deleted", obj=target,
              details={"files": done, "first": min(names), "last": max(names)})
    for loc in locations:
        refresh_used_bytes(loc)
    return done


# --- rules -----------------------------------------------------------------------------------------------------------

def save_rule(*, rule, actor: Actor):
    """Create or change a retention rule; audited."""
    created = rule._state.adding
    rule.full_clean()
    rule.save()
    audit(actor=actor, action="retention.rule.created" if created else "retention.rule.changed", obj=rule,
          details={"name": rule.name, "target": rule.database_target.name if rule.database_target else None})
    return rule


def delete_rule(*, rule, actor: Actor) -> None:
    """Delete a target's rule (its backups fall back to the default rule); the default rule cannot go."""
    if rule.database_target_id is None:
        raise UserError("The default retention rule cannot be deleted; change it, or disable it.")
    audit(actor=actor, action="retention.rule.deleted", obj=rule, details={"name": rule.name})
    rule.delete()
