from apps.core.models import Interface
from apps.core.services import Actor, request_actor


def admin_actor(request) -> Actor:
    """The actor of a Django admin or console page: the interface is told apart by the path."""
    via = Interface.ADMIN if request.path.startswith("/admin/") else Interface.CONSOLE
    return request_actor(request, via=via)


class RecordAdmin:
    """Admin mixin for records the system writes (jobs, runs, artifacts): viewable, never typed in, edited or
    deleted (a deleted record would hide history, and its stored objects would stay behind)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
