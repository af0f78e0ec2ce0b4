"""django-q2 entry points: thin wrappers."""
from apps.jobs import runner
from apps.jobs.models import Job


def run_job(job_id: str) -> str:
    return runner.execute(Job.objects.get(pk=job_id)).status
