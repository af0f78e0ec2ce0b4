from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from apps.core import converters  # noqa: F401  (registers <ulid:...> before any URLconf is loaded)
        from apps.core.roles import sync_group_permissions

        # Permissions exist only after migrate has created them for every app; `migrate` sends post_migrate
        # once per app, so the sync listens to all of them and acts on the last one (see sync_group_permissions).
        post_migrate.connect(sync_group_permissions, dispatch_uid="core.sync_group_permissions")
