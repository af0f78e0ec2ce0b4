"""django-q2 entry points of scheduled backups (setup_schedules): thin, one job per target."""
import logging

from apps.backups.models import BackupKind
from apps.core.errors import UserError
from apps.core.models import Interface
from apps.core.services import Actor

log = logging.getLogger(__name__)
SCHEDULER = Actor(via=Interface.SCHEDULE, extra={"name": "scheduler"})


def full_backups() -> list[str]:
    """Nightly: a full backup of every enabled target, by its default method. Returns the job ids queued."""
    from apps.databases.models import DatabaseTarget

    return _enqueue(DatabaseTarget.objects.filter(enabled=True), kind=BackupKind.FULL)


def incremental_backups() -> list[str]:
    """Every 6 hours: an incremental of every enabled physical target whose data directory this machine reads.

    Targets reachable only over the network cannot have one (see services.request_database_backup); they get
    their fulls and, with archiving on, continuous WAL instead.
    """
    from apps.databases.models import BackupMethod, DatabaseTarget

    targets = DatabaseTarget.objects.filter(enabled=True, default_method=BackupMethod.PHYSICAL).exclude(
        data_directory="")
    return _enqueue(targets, kind=BackupKind.INCREMENTAL)


def _enqueue(targets, *, kind: str) -> list[str]:
    from apps.backups.jobs import DatabaseBackupJob

    queued = []
    for target in targets:
        try:
            queued.append(DatabaseBackupJob.enqueue(target=target, kind=kind, actor=SCHEDULER).pk)
        except UserError as exc:  # e.g. a backup of it is still running, or no full yet: the others go on
            log.warning("Scheduled %s backup of %s not started: %s", kind, target.name, exc)
    return queued


def enforce_tiers() -> str:
    """Daily: move replicas to colder storage tiers by age (apps/backups/lifecycle.py). Returns the job id."""
    from apps.backups.jobs import EnforceTiersJob

    return EnforceTiersJob.enqueue(actor=SCHEDULER).pk
