"""Writes for backups: request one, run it (through the shared steps), settle dead ones, legal hold."""
import logging

from django.conf import settings
from django.db import transaction

from apps.approvals import gate
from apps.backups import locks, producers, selectors, steps
from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases.models import BackupMethod, DatabaseTarget
from apps.jobs.models import JobStatus
from apps.jobs.progress import JobContext
from apps.storage.services import location_for

log = logging.getLogger(__name__)

LOGICAL_FORMATS = [BackupFormat.CUSTOM, BackupFormat.PLAIN, BackupFormat.SCHEMA, BackupFormat.DATA]
NO_DATA_DIRECTORY = (
    "Target {name} has no data directory: an incremental backup reads the cluster's files on the machine that "
    "runs the backup jobs, which a database reachable only over the network (a managed service) does not allow. "
    "It can have logical full backups (pg_dump), or physical full backups (pg_basebackup over a replication "
    "connection) plus WAL archiving for point-in-time recovery. If the cluster's files are on this machine, "
    "set the target's data_directory."
)


def request_database_backup(
    *, target: DatabaseTarget, fmt: str | None = None, method: str | None = None, kind: str = BackupKind.FULL,
    actor: Actor,
) -> Backup:
    """Record a pending backup, unless one of the target is running or queued (checked and inserted atomically).

    A full backup is logical (pg_dump, `fmt`) or physical (pg_basebackup); with neither `method` nor a
    pg_dump `fmt` given, the target's default method. An incremental is physical and builds on the target's latest physical backup.
    """
    kind, fmt = _kind_and_format(target=target, fmt=fmt, method=method, kind=kind)
    if not target.enabled:
        raise UserError(f"Target {target.name} is disabled.")
    location = location_for(target.storage_location, owner=f"Target {target.name} stores its backups")
    reap_abandoned(target=target)
    with transaction.atomic():
        locks.refuse_overlap(target=target, queued=Backup.objects.filter(database_target=target,
                                                                         status=BackupStatus.PENDING))
        parent = None
        if kind == BackupKind.INCREMENTAL:
            parent = selectors.last_physical_backup(target=target)
            if parent is None:
                raise UserError(f"Target {target.name} has no succeeded physical backup yet: an incremental needs "
                                f"one to build on. Take a physical full first (db_backup {target.name} --kind full "
                                "--method physical).")
        backup = Backup.objects.create(
            database_target=target, kind=kind, format=fmt, parent=parent, storage_location=location,
            compression=settings.BACKUP_COMPRESSION,
        )
        audit(actor=actor, action="backup.requested", obj=backup,
              details={"target": target.name, "kind": kind, "format": fmt, "parent": backup.parent_id})
    return backup


def _kind_and_format(*, target: DatabaseTarget, fmt: str | None, method: str | None, kind: str) -> tuple[str, str]:
    if kind not in (BackupKind.FULL, BackupKind.INCREMENTAL):
        raise UserError(f"Unknown backup kind {kind!r}; choose full or incremental.")
    if method not in (None, *BackupMethod.values):
        raise UserError(f"Unknown method {method!r}; choose one of {', '.join(BackupMethod.values)}.")
    if kind == BackupKind.INCREMENTAL:
        if method == BackupMethod.LOGICAL or fmt not in (None, BackupFormat.BASEBACKUP):
            raise UserError("Incremental backups are physical (files of the data directory); "
                            "pg_dump backups are always full.")
        if not target.data_directory:
            raise UserError(NO_DATA_DIRECTORY.format(name=target.name))
        return kind, BackupFormat.BASEBACKUP
    # A pg_dump format names the method; only a request that names neither takes the target's default.
    if fmt and fmt != BackupFormat.BASEBACKUP and method is None:
        method = BackupMethod.LOGICAL
    if (method or target.default_method) == BackupMethod.PHYSICAL:
        if fmt not in (None, BackupFormat.BASEBACKUP):
            raise UserError(f"A physical backup is a pg_basebackup; format {fmt!r} is for logical backups.")
        return kind, BackupFormat.BASEBACKUP
    fmt = fmt or BackupFormat.CUSTOM
    if fmt not in LOGICAL_FORMATS:
        raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(LOGICAL_FORMATS)}.")
    return kind, fmt


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
    """A backup on legal hold is never deleted by retention, whatever its age.

    Lifting a hold waits for a second admin when the two-person policy says so (apps.approvals.gate)."""
    if not hold and Backup.objects.filter(pk=backup.pk, legal_hold=True).exists():
        gate.check(action="backup.legal_hold.release", actor=actor, params={"backup_id": backup.pk}, obj=backup,
                   summary=f"lift the legal hold of backup {backup.pk}")
    # Compared with the stored value: a form may already have set the attribute on this instance.
    if Backup.objects.filter(pk=backup.pk).exclude(legal_hold=hold).update(legal_hold=hold):
        audit(actor=actor, action="backup.legal_hold.set" if hold else "backup.legal_hold.released", obj=backup)
    backup.legal_hold = hold
    return backup
