"""django-q2 entry point of the nightly verification (setup_schedules): thin."""
from django.conf import settings

from apps.backups.models import Backup, BackupStatus
from apps.core.models import Interface
from apps.core.services import Actor

SCHEDULER = Actor(via=Interface.SCHEDULE, extra={"name": "scheduler"})


def verify_backups() -> list[str]:
    """Daily at 04:00: every succeeded backup at VERIFY_SCHEDULE_LEVEL (checksum), and the newest backup of each
    target by a real restore. Read-only on storage; each job uses its own scratch directory, so two runs at
    once only repeat the work. Returns the job ids queued."""
    from apps.verification.jobs import VerifyBackupsJob

    succeeded = Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False)
    ids = list(succeeded.values_list("pk", flat=True))
    jobs = []
    if ids:
        jobs.append(VerifyBackupsJob.enqueue(backup_ids=ids, level=settings.VERIFY_SCHEDULE_LEVEL, actor=SCHEDULER).pk)
    newest = [succeeded.filter(database_target_id=t).order_by("-finished_at", "-pk").values_list("pk", flat=True)[0]
              for t in succeeded.order_by().values_list("database_target_id", flat=True).distinct()]
    if newest:
        jobs.append(VerifyBackupsJob.enqueue(backup_ids=newest, level="restore", actor=SCHEDULER).pk)
    return jobs
