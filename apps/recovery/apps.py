from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "apps.recovery"
    label = "recovery"
    verbose_name = "Recovery"

    def ready(self):
        from apps.jobs.signals import job_abandoned

        job_abandoned.connect(_settle_recovery_of_dead_job, dispatch_uid="recovery.settle_dead_job")


def _settle_recovery_of_dead_job(*, job, **_kwargs) -> None:
    """A recovery, failover or drill whose process died is failed with it (a half-recovered directory is left for
    the operator)."""
    from django.utils import timezone

    from apps.recovery.models import DRDrill, DrillStatus, Failover, FailoverStatus, RecoveryRun, RecoveryStatus

    error = job.error or "The process running it died."
    RecoveryRun.objects.filter(job_id=job.pk, status__in=[RecoveryStatus.PENDING, RecoveryStatus.RUNNING]).update(
        status=RecoveryStatus.FAILED, finished_at=timezone.now(), error=error)
    Failover.objects.filter(job_id=job.pk, status__in=[FailoverStatus.PENDING, FailoverStatus.RUNNING]).update(
        status=FailoverStatus.FAILED, finished_at=timezone.now(), error=error)
    DRDrill.objects.filter(job_id=job.pk, status__in=[DrillStatus.PENDING, DrillStatus.RUNNING]).update(
        status=DrillStatus.FAILED, finished_at=timezone.now(), error=error, objectives_met=False)
