"""django-q2 entry points: thin wrappers."""
from apps.jobs import runner, services
from apps.jobs.models import Job


def run_job(job_id: str) -> str:
    return runner.execute(Job.objects.get(pk=job_id)).status


def reap_dead_jobs() -> int:
    """Scheduled every minute (setup_schedules): settle jobs whose process died, and what they worked on."""
    return services.reap_dead_jobs()


def enforce_tiers() -> str:
    """Scheduled daily (setup_schedules): move replicas to colder tiers by age."""
    from apps.backups.jobs import EnforceTiersJob
    from apps.core.services import SYSTEM

    return EnforceTiersJob.run_now(actor=SYSTEM).status
