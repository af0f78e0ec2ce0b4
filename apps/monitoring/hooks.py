"""Rules are evaluated as soon as a job ends (a failed backup alerts at once, not at the next health check)."""
import logging

from django.dispatch import receiver

from apps.jobs.signals import job_abandoned, job_finished

log = logging.getLogger(__name__)


@receiver(job_finished, dispatch_uid="monitoring-job-finished")
@receiver(job_abandoned, dispatch_uid="monitoring-job-abandoned")
def evaluate_after_job(sender, job, **kwargs):
    from apps.monitoring import engine

    try:
        engine.evaluate()
    except Exception:  # monitoring must never change how a job ends; the next health check tries again
        log.exception("Evaluating alert rules after job %s failed.", job.pk)
