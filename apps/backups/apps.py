from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"

    def ready(self):
        from apps.backups import services
        from apps.jobs.signals import job_abandoned

        job_abandoned.connect(services.settle_backup_of_dead_job, dispatch_uid="backups.settle_dead_job")
