import logging
import traceback

from django.utils import timezone
from django_q.tasks import async_task

from apps.core.errors import JobFailed
from apps.core.services import Actor
from apps.jobs import registry
from apps.jobs.models import Job, JobStatus
from apps.jobs.progress import JobContext

log = logging.getLogger(__name__)


def create_job(*, job_type: str, args: dict, actor: Actor) -> Job:
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return Job.objects.create(type=job_type, args=args, requested_by=user, via=actor.via)


def enqueue(*, job: Job) -> Job:
    """Hand the job to the django-q2 cluster (inline when Q_CLUSTER['sync'] is on)."""
    task_id = async_task("apps.jobs.tasks.run_job", job.pk, task_name=f"{job.type}:{job.pk}")
    Job.objects.filter(pk=job.pk).update(task_id=task_id or "")
    job.refresh_from_db()
    return job


def run(*, job: Job, **runtime) -> Job:
    """Run a job in this process. `runtime` carries what must not be stored (e.g. a password)."""
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    job.refresh_from_db()
    if not claimed:
        log.warning("Job %s is %s, not queued; not running it again.", job.pk, job.status)
        return job
    ctx = JobContext(job)
    try:
        result = registry.get(job.type)(job, ctx, **runtime) or {}
    except Exception as exc:
        log.info("Job %s failed: %s", job.pk, exc)
        log.debug("%s", traceback.format_exc())
        ctx.log(f"failed: {exc}")
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED, error=str(exc) or type(exc).__name__, finished_at=timezone.now(),
            result=exc.result if isinstance(exc, JobFailed) else {},
            progress_done=ctx.job.progress_done, progress_total=ctx.job.progress_total,
        )
    else:
        ctx.log("succeeded")
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, result=result, finished_at=timezone.now(),
            progress_done=ctx.job.progress_done, progress_total=ctx.job.progress_total,
        )
    job.refresh_from_db()
    return job


def fail_abandoned(*, job_id: str, reason: str) -> None:
    Job.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=reason, finished_at=timezone.now()
    )
