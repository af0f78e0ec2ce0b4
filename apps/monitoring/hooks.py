"""Rules are evaluated as soon as a job ends (a failed backup alerts at once, not at the next health check)."""
import logging

from django.dispatch import receiver

from apps.jobs.signals import job_abandoned, job_finished

log = logging.getLogger(__name__)


@receiver(job_finished, dispatch_uid="monitoring-job-finished")
@receiver(job_abandoned, dispatch_uid="monitoring-job-abandoned")
def evaluate_after_job(sender, job, **kwargs):
    """The rules the job's type names (JobRunner.alert_types; all for a type this process does not know)."""
    from apps.monitoring import engine

    try:
        types = _alert_types(job.type)
        if types is None or types:
            engine.evaluate(types=None if types is None else list(types))
    except Exception:  # monitoring must never change how a job ends; the next health check tries again
        log.exception("Evaluating alert rules after job %s failed.", job.pk)


def _alert_types(job_type: str) -> tuple[str, ...] | None:
    from django.core.exceptions import ImproperlyConfigured

    from apps.jobs.runner import JobRunner

    try:
        return JobRunner.for_type(job_type).alert_types
    except ImproperlyConfigured:
        return None
