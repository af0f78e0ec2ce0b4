from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from apps.core.roles import sync_group_permissions

        # Permissions exist only after migrate has created them, so groups are synced then.
        post_migrate.connect(sync_group_permissions, sender=self)
