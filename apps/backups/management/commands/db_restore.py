import os
from dataclasses import replace

from django.core.management.base import BaseCommand

from apps.backups import restores
from apps.backups.jobs import RestoreDatabaseJob
from apps.backups.models import Backup
from apps.core.commands import add_password_options, cli_actor, fail, password_from_options, print_json
from apps.core.errors import UserError
from apps.databases.connection import PgConn
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = "Restore a backup into a database (whole, or one table / schema of a custom-format backup)."
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("backup_id")
        parser.add_argument("--dsn", required=True,
                            help="Destination: postgresql://USER@HOST:PORT/DBNAME (password also from "
                                 "--password-file, --password-stdin or PGPASSWORD)")
        parser.add_argument("--table", help="Restore only this table (SCHEMA.TABLE or TABLE)")
        parser.add_argument("--schema", help="Restore only this schema")
        parser.add_argument("--create", action="store_true", help="Create the destination database first")
        parser.add_argument("--no-owner", action="store_true", help="Skip ownership and privilege commands")
        add_password_options(parser)

    def handle(self, *args, backup_id, dsn, table, schema, create, no_owner, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise fail(f"No backup with id {backup_id!r}.")
        try:
            conn = PgConn.from_dsn(dsn)
            password = password_from_options(options) or os.environ.get("PGPASSWORD")
            if password and not conn.password:
                conn = replace(conn, password=password)
            request = restores.RestoreRequest(table=table, schema=schema, create=create, no_owner=no_owner)
            # The password stays in memory (runtime), never in the job row.
            job = RestoreDatabaseJob.run_now(backup=backup, destination=conn.redacted(), request=request,
                                             actor=cli_actor(), dbname=conn.dbname,  # dbname: to be checked
                                             runtime={"conn": conn})
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Restore failed: {job.error}")
