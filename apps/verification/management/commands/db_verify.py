from django.core.management.base import BaseCommand

from apps.backups.models import Backup, BackupStatus
from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.jobs.models import JobStatus
from apps.verification.jobs import VerifyBackupsJob
from apps.verification.models import VerificationLevel


class Command(BaseCommand):
    help = "Verify one backup or all succeeded backups; exits non-zero if any verification fails."
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("backup_id", nargs="?")
        parser.add_argument("--all", action="store_true", help="Verify every succeeded backup")
        parser.add_argument("--level", default=VerificationLevel.CHECKSUM, choices=VerificationLevel.values)

    def handle(self, *args, backup_id, all, level, **options):
        if bool(backup_id) == bool(all):
            raise fail("Give a BACKUP_ID or --all (not both).")
        if all:
            ids = list(Backup.objects.filter(status=BackupStatus.SUCCEEDED).values_list("pk", flat=True))
        else:
            if not Backup.objects.filter(pk=backup_id).exists():
                raise fail(f"No backup with id {backup_id!r}.")
            ids = [backup_id]
        try:
            job = VerifyBackupsJob.run_now(backup_ids=ids, level=level, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, "level": level, "backups": len(ids),
                          "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Verification failed: {job.error}")
