"""django-q2 entry point of the nightly enforcement (setup_schedules): thin."""
from apps.core.models import Interface
from apps.core.services import Actor

SCHEDULER = Actor(via=Interface.SCHEDULE, extra={"name": "scheduler"})


def enforce_retention() -> str:
    """Daily at 01:00: enforce the retention rules (a run finding another one in progress does nothing)."""
    from apps.retention.jobs import EnforceRetentionJob

    return EnforceRetentionJob.enqueue(actor=SCHEDULER).pk
