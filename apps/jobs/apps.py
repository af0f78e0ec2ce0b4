from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self):
        # Every app's jobs.py defines its JobRunner classes; importing them registers them, once.
        autodiscover_modules("jobs")
