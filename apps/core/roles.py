"""Three roles, each a Django group, each including the ones below it."""
from django.contrib.auth.models import AbstractBaseUser

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def role_of(user: AbstractBaseUser | None) -> str | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, OPERATOR, VIEWER):
        if role in names:
            return role
    return None


def has_role(user: AbstractBaseUser | None, role: str) -> bool:
    mine = role_of(user)
    return mine is not None and RANK[mine] >= RANK[role]


PROJECT_APPS = ["core", "storage", "databases", "backups", "verification", "documents", "retention", "recovery",
                "jobs", "monitoring", "approvals"]


def _last_migrated_app():
    """post_migrate goes to every app with models, in INSTALLED_APPS order; this one hears it last."""
    from django.apps import apps

    return [config for config in apps.get_app_configs() if config.models_module is not None][-1]


def sync_group_permissions(sender=None, using: str = "default", **_kwargs) -> None:
    """Console rights per role: viewers and operators see everything, admins may also change configuration.

    Runs when post_migrate reaches the last app: only then do the permissions of every app exist (auth
    creates them app by app, on the same signal). What operators may *do* (back up, verify) is checked by
    role in the actions themselves.
    """
    if sender is not None and sender is not _last_migrated_app():
        return
    from django.contrib.auth.models import Group, Permission

    perms = Permission.objects.using(using).filter(content_type__app_label__in=PROJECT_APPS)
    view = list(perms.filter(codename__startswith="view_"))
    for name in (VIEWER, OPERATOR):
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(view)
    group, _ = Group.objects.using(using).get_or_create(name=ADMIN)
    group.permissions.set(list(perms))
