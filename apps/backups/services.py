"""Writes for backups: request one, run it (through the shared steps), settle dead ones, legal hold."""
import logging

from django.conf import settings
from django.db import transaction

from apps.backups import locks, producers, steps
from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus
from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.databases.models import DatabaseTarget
from apps.jobs.models import JobStatus
from apps.jobs.progress import JobContext
from apps.storage import backends
from apps.storage.services import ensure_default_location

log = logging.getLogger(__name__)

LOGICAL_FORMATS = [BackupFormat.CUSTOM, BackupFormat.PLAIN, BackupFormat.SCHEMA, BackupFormat.DATA]


def request_database_backup(*, target: DatabaseTarget, fmt: str = BackupFormat.CUSTOM, actor: Actor) -> Backup:
    """Record a pending backup, unless one of the target is running or queued (checked and inserted atomically)."""
    if fmt not in LOGICAL_FORMATS:
        raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(LOGICAL_FORMATS)}.")
    if not target.enabled:
        raise UserError(f"Target {target.name} is disabled.")
    location = target.storage_location or ensure_default_location()
    try:
        backends.get(location.kind)
    except backends.StorageError as exc:
        raise UserError(f"Target {target.name} stores its backups in {location.name}: {exc}") from None
    reap_abandoned(target=target)
    with transaction.atomic():
        # Lock the target row (SQLite: the IMMEDIATE transaction already serialises writers), so two requests
        # cannot both see "nothing queued" and both insert.
        list(DatabaseTarget.objects.select_for_update().filter(pk=target.pk).values_list("pk", flat=True))
        running = locks.holder(target=target)
        if running:
            raise ConflictError(f"A backup of {target.name} is already running (backup {running}).")
        queued = Backup.objects.filter(database_target=target, status=BackupStatus.PENDING).values_list(
            "pk", flat=True).first()
        if queued:
            raise ConflictError(f"A backup of {target.name} is already queued (backup {queued}).")
        backup = Backup.objects.create(
            database_target=target, kind=BackupKind.FULL, format=fmt, storage_location=location,
            compression=settings.BACKUP_COMPRESSION,
        )
        audit(actor=actor, action="backup.requested", obj=backup, details={"target": target.name, "format": fmt})
    return backup


def run_database_backup(*, backup: Backup, ctx: JobContext) -> Backup:
    return steps.run_backup(backup=backup, producer=producers.producer_for(backup), ctx=ctx)


def reap_abandoned(*, target: DatabaseTarget | None = None) -> int:
    """Settle backups whose process died: running without a live lease, or pending with a failed job.

    (Dead jobs themselves are settled before any job is requested: JobRunner.request.)
    """
    reaped = 0
    active = Backup.objects.filter(status__in=[BackupStatus.PENDING, BackupStatus.RUNNING],
                                   database_target__isnull=False).select_related("database_target", "job")
    if target is not None:
        active = active.filter(database_target=target)
    for backup in active:
        if backup.status == BackupStatus.RUNNING and locks.holder(target=backup.database_target) != backup.pk:
            steps.fail_backup(backup.pk, steps.ABANDONED)
        elif backup.status == BackupStatus.PENDING and backup.job is not None and backup.job.status == JobStatus.FAILED:
            steps.fail_backup(backup.pk, f"Its job failed before the backup started: {backup.job.error}")
        else:
            continue
        reaped += 1
    return reaped


def settle_backup_of_dead_job(*, job, reason: str, **_signal) -> None:
    """A backup's job died (jobs.signals.job_abandoned): the backup fails with it and its lease is freed."""
    for backup in Backup.objects.filter(job_id=job.pk, status__in=[BackupStatus.PENDING, BackupStatus.RUNNING]):
        steps.fail_backup(backup.pk, reason)
        if backup.database_target_id:
            locks.release(target=backup.database_target, backup_id=backup.pk)


def set_legal_hold(*, backup: Backup, hold: bool, actor: Actor) -> Backup:
    """A backup on legal hold is never deleted by retention, whatever its age."""
    # Compared with the stored value: a form may already have set the attribute on this instance.
    if Backup.objects.filter(pk=backup.pk).exclude(legal_hold=hold).update(legal_hold=hold):
        audit(actor=actor, action="backup.legal_hold.set" if hold else "backup.legal_hold.released", obj=backup)
    backup.legal_hold = hold
    return backup
