from django.apps import AppConfig


class VerificationConfig(AppConfig):
    name = "apps.verification"
    label = "verification"

    def ready(self):
        from apps.jobs.signals import job_abandoned

        job_abandoned.connect(_settle_dead_job, dispatch_uid="verification.settle_dead_job")


def _settle_dead_job(**kwargs) -> None:
    from apps.verification.scratch import settle_dead_job  # when a job died, not at start-up (heavy imports)

    settle_dead_job(**kwargs)
