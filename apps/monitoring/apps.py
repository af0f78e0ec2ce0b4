from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self):
        # Rules and channels register themselves when imported; the hooks listen for finished jobs.
        from apps.monitoring import channels, hooks, rules  # noqa: F401
