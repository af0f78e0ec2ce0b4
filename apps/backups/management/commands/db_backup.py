from django.core.management.base import BaseCommand

from apps.backups import services
from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget


class Command(BaseCommand):
    help = "Back up a database target now; prints the backup as JSON on the last line."
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Target name")
        parser.add_argument("--kind", default="full", choices=["full", "incremental"],
                            help="full (default) or incremental (physical: files changed since the last "
                                 "physical backup; needs the target's data_directory)")
        parser.add_argument("--method", choices=["logical", "physical"],
                            help="Of a full backup: logical (pg_dump) or physical (pg_basebackup); "
                                 "default: the target's default_method")
        parser.add_argument("--format", choices=services.LOGICAL_FORMATS,
                            help="pg_dump format of a logical backup (default custom)")
        parser.add_argument("--queue", action="store_true",
                            help="Hand the backup to the job worker (manage.py qcluster) and return at once")

    def handle(self, *args, name, kind, method, format, queue, **options):
        target = DatabaseTarget.objects.filter(name=name).first()
        if target is None:
            raise fail(f"No target named {name!r}; add it with target_add.")
        runner = DatabaseBackupJob.enqueue if queue else DatabaseBackupJob.run_now
        try:
            job = runner(target=target, fmt=format, method=method, kind=kind, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        backup = Backup.objects.get(pk=job.args["backup_id"])
        data = {"id": backup.pk, "status": backup.status, "target": target.name, "kind": backup.kind,
                "format": backup.format, "parent": backup.parent_id, "lsn_start": backup.lsn_start or None,
                "lsn_stop": backup.lsn_stop or None, "timeline": backup.timeline,
                "size_bytes": backup.size_stored, "size_raw_bytes": backup.size_raw, "sha256": backup.sha256,
                "job_id": job.pk, "error": backup.error or None}
        print_json(self, data)
        if not queue and backup.status != BackupStatus.SUCCEEDED:
            raise fail(f"Backup {backup.pk} failed: {backup.error or job.error}")
