from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"

    def ready(self):
        from apps.jobs.signals import job_abandoned

        job_abandoned.connect(_settle_backup_of_dead_job, dispatch_uid="backups.settle_dead_job")


def _settle_backup_of_dead_job(**kwargs) -> None:
    from apps.backups import services  # when a job died, not at start-up (heavy imports)

    services.settle_backup_of_dead_job(**kwargs)
