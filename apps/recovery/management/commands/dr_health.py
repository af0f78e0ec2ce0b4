from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json


class Command(BaseCommand):
    help = ("One health check of DR plans (what the schedule runs every minute): readings of primaries and "
            "standbys, consecutive failures, an automatic failover where one is due. --rearm re-arms a plan's "
            "auto-failover after a failover. The last line is JSON.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("plan", nargs="?", help="Only this plan")
        parser.add_argument("--rearm", action="store_true", help="Re-arm the plan's auto-failover (with PLAN)")

    def handle(self, *args, plan, rearm, **options):
        from apps.recovery import failover
        from apps.recovery.models import DRPlan

        plans = DRPlan.objects.select_related("primary")
        if plan:
            plans = plans.filter(name=plan)
            if not plans:
                raise fail(f"No DR plan named {plan!r}.")
        if rearm:
            if not plan:
                raise fail("--rearm needs a plan name.")
            failover.rearm(plan=plans[0], actor=cli_actor())
        print_json(self, {"checks": [failover.check_plan(plan=p) for p in plans]})
