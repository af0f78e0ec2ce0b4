from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.databases.models import DatabaseTarget
from apps.jobs.models import JobStatus
from apps.retention import services
from apps.retention.jobs import EnforceRetentionJob


class Command(BaseCommand):
    help = ("Enforce the retention rules: delete and archive backups, delete WAL the PITR window no longer needs. "
            "--dry-run lists every backup with its decision and the rule that decided, and changes nothing.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--target", help="Only the backups of this database target.")
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be deleted and archived.")

    def handle(self, *args, target, dry_run, **options):
        chosen = None
        if target:
            chosen = DatabaseTarget.objects.filter(name=target).first()
            if chosen is None:
                raise fail(f"No database target named {target!r}.")
        if dry_run:
            print_json(self, services.preview(target=chosen))
            return
        job = EnforceRetentionJob.run_now(target=chosen, actor=cli_actor())
        print_json(self, {"job_id": job.pk, "status": job.status, "error": job.error or None, **job.result})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Retention enforcement failed: {job.error}")
