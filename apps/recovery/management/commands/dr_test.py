from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("DR drill of a plan: recover its primary's latest backup + WAL into a scratch cluster, run the plan's "
            "checks, measure RTO and RPO, remove the cluster. The last line is the JSON report; the exit status is "
            "non-zero when the drill failed (recovery, a check, or an objective missed).")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("plan", help="DR plan name")

    def handle(self, *args, plan, **options):
        from apps.recovery import drills
        from apps.recovery.jobs import DrillJob
        from apps.recovery.models import DRDrill, DRPlan

        obj = DRPlan.objects.filter(name=plan).first()
        if obj is None:
            raise fail(f"No DR plan named {plan!r}.")
        try:
            job = DrillJob.run_now(plan=obj, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        drill = DRDrill.objects.get(pk=job.args["drill_id"])
        print_json(self, {"job_id": job.pk, **drills.report(drill)})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Drill failed: {job.error}")
