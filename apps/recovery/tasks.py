"""django-q2 entry points of the DR schedules (setup_schedules): thin, they call services and job runners."""
import logging

from apps.core.errors import UserError
from apps.core.models import Interface
from apps.core.services import Actor

log = logging.getLogger(__name__)
SCHEDULER = Actor(via=Interface.SCHEDULE, extra={"name": "scheduler"})


def dr_drills() -> list[str]:
    """Weekly: a drill of every plan with drills enabled. Returns the job ids queued."""
    from apps.recovery.jobs import DrillJob
    from apps.recovery.models import DRPlan

    queued = []
    for plan in DRPlan.objects.filter(drills_enabled=True):
        try:
            queued.append(DrillJob.enqueue(plan=plan, actor=SCHEDULER).pk)
        except UserError as exc:
            log.warning("Scheduled drill of plan %s not started: %s", plan.name, exc)
    return queued


def dr_health_checks() -> list[dict]:
    """Every minute: one health check per plan (and an automatic failover where one is due)."""
    from apps.recovery import failover
    from apps.recovery.models import DRPlan

    return [failover.check_plan(plan=plan) for plan in DRPlan.objects.select_related("primary")]
