from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Fail a DR plan over to a standby: check it, fence the old primary, promote, run the switch hook, verify "
            "a write, and record RTO and the data-loss window. --confirm must repeat the plan's name. The last line "
            "is JSON; the exit status is non-zero when the failover failed.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("plan", help="DR plan name")
        parser.add_argument("--confirm", required=True, help="The plan's name again: failover cannot be undone")
        parser.add_argument("--standby", help="Promote this standby (default: the healthy one least behind)")

    def handle(self, *args, plan, confirm, standby, **options):
        from apps.recovery.jobs import FailoverJob
        from apps.recovery.models import DRPlan

        obj = DRPlan.objects.filter(name=plan).first()
        if obj is None:
            raise fail(f"No DR plan named {plan!r}.")
        if confirm != obj.name:
            raise fail(f"--confirm must be the plan's name ({obj.name}); nothing was done.")
        chosen = None
        if standby:
            chosen = DatabaseTarget.objects.filter(name=standby).first()
            if chosen is None:
                raise fail(f"No database target named {standby!r}.")
        try:
            job = FailoverJob.run_now(plan=obj, standby=chosen, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        from apps.recovery.jobs import failover_report
        from apps.recovery.models import Failover

        row = Failover.objects.get(pk=job.args["failover_id"])
        print_json(self, {"job_id": job.pk, **failover_report(row)})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Failover failed: {job.error}")
