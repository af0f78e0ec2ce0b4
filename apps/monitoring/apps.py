from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self):
        # The hooks listen for finished jobs. Rules and channels register themselves when their package is first
        # imported (by the engine, the outbox, a form's choices), not at start-up: the HTTP client alone costs
        # every manage.py process, wal_push included, about 60 ms.
        from apps.monitoring import hooks  # noqa: F401
