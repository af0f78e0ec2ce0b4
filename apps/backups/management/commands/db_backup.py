from django.core.management.base import BaseCommand

from apps.backups import services
from apps.backups.models import BackupStatus
from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget
from apps.jobs import services as jobs


class Command(BaseCommand):
    help = "Back up a database target now; prints the backup as JSON on the last line."
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Target name")
        parser.add_argument("--format", default="custom", choices=services.LOGICAL_FORMATS)

    def handle(self, *args, name, format, **options):
        target = DatabaseTarget.objects.filter(name=name).first()
        if target is None:
            raise fail(f"No target named {name!r}; add it with target_add.")
        try:
            backup = services.request_database_backup(target=target, fmt=format, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        job = jobs.run(job=backup.job)
        backup.refresh_from_db()
        data = {"id": backup.pk, "status": backup.status, "target": target.name, "format": backup.format,
                "size_bytes": backup.size_stored, "size_raw_bytes": backup.size_raw, "sha256": backup.sha256,
                "job_id": job.pk, "error": backup.error or None}
        print_json(self, data)
        if backup.status != BackupStatus.SUCCEEDED:
            raise fail(f"Backup {backup.pk} failed: {backup.error or job.error}")
