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
    help = ("Restore a logical backup into a database (--dsn; whole, or one table / schema of a custom-format "
            "backup), or a physical backup into a new data directory (--pgdata; not started).")
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("backup_id")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--dsn",
                           help="Destination of a logical backup: postgresql://USER@HOST:PORT/DBNAME (password "
                                "also from --password-file, --password-stdin or PGPASSWORD)")
        where.add_argument("--pgdata",
                           help="Destination of a physical backup: a new or empty directory; the full backup and "
                                "every incremental up to this one are restored into it, the cluster not started")
        parser.add_argument("--table", help="Restore only this table (SCHEMA.TABLE or TABLE)")
        parser.add_argument("--schema", help="Restore only this schema")
        parser.add_argument("--create", action="store_true", help="Create the destination database first")
        parser.add_argument("--no-owner", action="store_true", help="Skip ownership and privilege commands")
        add_password_options(parser)

    def handle(self, *args, backup_id, dsn, pgdata, table, schema, create, no_owner, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise fail(f"No backup with id {backup_id!r}.")
        if pgdata is not None:
            return self._to_data_directory(backup, pgdata, table=table, schema=schema, create=create)
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

    def _to_data_directory(self, backup, pgdata: str, **logical_only) -> None:
        from apps.backups.jobs import RestoreDataDirectoryJob

        given = [f"--{k}" for k, v in logical_only.items() if v]
        if given:
            raise fail(f"{', '.join(given)} apply to logical restores (--dsn), not to --pgdata.")
        try:
            job = RestoreDataDirectoryJob.run_now(backup=backup, pgdata=pgdata, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Restore failed: {job.error}")
