"""django-q2 entry points: thin wrappers."""
from apps.jobs import runner, services
from apps.jobs.models import Job


def run_job(job_id: str) -> str:
    return runner.execute(Job.objects.get(pk=job_id)).status


def reap_dead_jobs() -> int:
    """Scheduled every minute (setup_schedules): settle jobs whose process died, and what they worked on."""
    return services.reap_dead_jobs()

