import os
from dataclasses import replace

from django.core.management.base import BaseCommand

from apps.core.commands import add_password_options, cli_actor, fail, password_from_options, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Recover a target to a point in time into a new data directory (base backup + archived WAL), and "
            "optionally start it, or copy one table from it back into a live database.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target", help="Database target name")
        goal = parser.add_mutually_exclusive_group()
        goal.add_argument("--target-time", help="e.g. '2026-11-25 12:00:00+00' (a UTC offset is required)")
        goal.add_argument("--target-lsn", help="e.g. 0/3000060")
        goal.add_argument("--target-name", help="A restore point made with pg_create_restore_point()")
        parser.add_argument("--exclusive", action="store_true",
                            help="Stop just before the target instead of just after it")
        parser.add_argument("--pgdata", required=True, help="New (or empty) data directory to recover into")
        parser.add_argument("--port", type=int, help="Port of the recovered cluster (default: a free one)")
        parser.add_argument("--start", action="store_true",
                            help="Start the recovered cluster and wait until it is promoted and ready")
        parser.add_argument("--table", help="SCHEMA.TABLE to copy back into a live database (then the recovered "
                                            "cluster is a scratch one, removed afterwards)")
        parser.add_argument("--into-dsn", help="Where --table goes: postgresql://USER@HOST:PORT/DBNAME (default: the "
                                               "target's own database); password from the options below or PGPASSWORD")
        parser.add_argument("--rename", help="Copy --table under this new name instead of replacing its rows")
        add_password_options(parser)

    def handle(self, *args, target, target_time, target_lsn, target_name, exclusive, pgdata, port, start, table,
               into_dsn, rename, **options):
        from apps.databases.connection import PgConn
        from apps.recovery.jobs import PointInTimeRecoveryJob
        from apps.recovery.targets import parse_target

        obj = DatabaseTarget.objects.filter(name=target).first()
        if obj is None:
            raise fail(f"No database target named {target!r}.")
        if (into_dsn or rename) and not table:
            raise fail("--into-dsn and --rename go with --table.")
        try:
            goal = parse_target(time=target_time, lsn=target_lsn, name=target_name, inclusive=not exclusive)
            runtime = {}
            if into_dsn:
                conn = PgConn.from_dsn(into_dsn)
                password = password_from_options(options) or os.environ.get("PGPASSWORD")
                if password and not conn.password:
                    conn = replace(conn, password=password)
                runtime["into"] = conn  # in memory only: the job row never holds it
            job = PointInTimeRecoveryJob.run_now(target=obj, goal=goal, pgdata=os.path.abspath(pgdata), port=port,
                                                 start=start, table=table, rename=rename, actor=cli_actor(),
                                                 runtime=runtime)
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Recovery failed: {job.error}")
