from apps.core.models import Interface
from apps.core.services import Actor, request_actor


def admin_actor(request) -> Actor:
    return request_actor(request, via=Interface.ADMIN)


class RecordAdmin:
    """Admin mixin for records the system writes (jobs, runs, artifacts): viewable, never typed in, edited or
    deleted (a deleted record would hide history, and its stored objects would stay behind)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
