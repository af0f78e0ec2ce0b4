"""django-q2 entry points: thin wrappers that call services."""
from apps.jobs import services
from apps.jobs.models import Job


def run_job(job_id: str) -> str:
    job = services.run(job=Job.objects.get(pk=job_id))
    return job.status
