"""Writes for job rows: create, finish, and settle jobs whose process died."""
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.services import Actor
from apps.jobs import liveness
from apps.jobs.models import Job, JobStatus
from apps.jobs.signals import job_abandoned

log = logging.getLogger(__name__)


def create_job(*, job_type: str, args: dict, actor: Actor) -> Job:
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return Job.objects.create(type=job_type, args=args, requested_by=user, via=actor.via)


def finish(*, job: Job, status: str, result: dict, error: str = "") -> None:
    """Final state of a job that ran here; a job already settled (reaped as dead) is left as it is."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=status, result=result, error=error, finished_at=timezone.now(),
        progress_done=job.progress_done, progress_total=job.progress_total,
    )


def fail_abandoned(*, job_id: str, reason: str) -> None:
    Job.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=reason, finished_at=timezone.now()
    )


def reap_dead_jobs() -> int:
    """Fail running jobs whose process is gone (same host) or whose heartbeat stopped (any host)."""
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    reaped = 0
    for job in Job.objects.filter(status=JobStatus.RUNNING).only("pk", "type", "worker", "heartbeat_at"):
        if job.worker and liveness.is_dead(job.worker):
            reason = f"Abandoned: the process running it ({liveness.describe(job.worker)}) died."
        elif job.heartbeat_at is not None and job.heartbeat_at < stale:
            reason = f"Abandoned: no heartbeat for more than {settings.JOB_STALE_SECONDS} s (worker killed or cut off)."
        else:
            continue
        log.warning("Job %s (%s): %s", job.pk, job.type, reason)
        fail_abandoned(job_id=job.pk, reason=reason)
        job_abandoned.send(sender=Job, job=job, reason=reason)
        reaped += 1
    return reaped
