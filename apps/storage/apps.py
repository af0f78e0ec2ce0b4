from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "apps.storage"
    label = "storage"

    def ready(self):
        from apps.jobs.signals import job_abandoned

        job_abandoned.connect(_remove_partials_of_dead_job, dispatch_uid="storage.remove_partials_of_dead_job")


def _remove_partials_of_dead_job(**kwargs) -> None:
    from apps.storage import services  # when a job died, not at start-up

    services.remove_partials_of_dead_job(**kwargs)
