from django.apps import AppConfig


class VerificationConfig(AppConfig):
    name = "apps.verification"
    label = "verification"

    def ready(self):
        from apps.jobs.signals import job_abandoned
        from apps.verification.scratch import settle_dead_job

        job_abandoned.connect(settle_dead_job, dispatch_uid="verification.settle_dead_job")
