import os

from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Make a streaming standby of a target on this machine (pg_basebackup), start it, and register it as a "
            "new target (disabled for scheduled backups until a failover promotes it). The last line is JSON.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target", help="The primary's target name")
        parser.add_argument("--name", required=True, help="Name of the new standby target")
        parser.add_argument("--pgdata", required=True, help="New (or empty) data directory for the standby")
        parser.add_argument("--port", type=int, required=True, help="Port of the standby")
        parser.add_argument("--plan", help="Add the standby to this DR plan")

    def handle(self, *args, target, name, pgdata, port, plan, **options):
        from apps.recovery.jobs import StandbyCreateJob
        from apps.recovery.models import DRPlan

        primary = DatabaseTarget.objects.filter(name=target).first()
        if primary is None:
            raise fail(f"No database target named {target!r}.")
        plan_obj = None
        if plan:
            plan_obj = DRPlan.objects.filter(name=plan).first()
            if plan_obj is None:
                raise fail(f"No DR plan named {plan!r}.")
        try:
            job = StandbyCreateJob.run_now(primary=primary, name=name, pgdata=os.path.abspath(pgdata), port=port,
                                           plan=plan_obj, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Standby not created: {job.error}")
