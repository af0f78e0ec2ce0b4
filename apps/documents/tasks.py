"""django-q2 entry points of scheduled document backups (setup_schedules): thin, one job per source."""
import logging

from apps.core.errors import UserError
from apps.core.models import Interface
from apps.core.services import Actor

log = logging.getLogger(__name__)
SCHEDULER = Actor(via=Interface.SCHEDULE, extra={"name": "scheduler"})


def backup_all_sources() -> list[str]:
    """Nightly: a new version of every enabled source. Returns the job ids queued."""
    from apps.documents.jobs import DocumentBackupJob
    from apps.documents.models import DocumentSource

    queued = []
    for source in DocumentSource.objects.filter(enabled=True):
        try:
            queued.append(DocumentBackupJob.enqueue(source=source, actor=SCHEDULER).pk)
        except UserError as exc:  # e.g. a backup of it is still running: the others go on
            log.warning("Scheduled document backup of %s not started: %s", source.name, exc)
    return queued
