from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.core.roles import ADMIN, VIEWER, has_role


class RolePermission(BasePermission):
    """Reads need the viewer role; writes need the view's `write_role` (admin unless the view says otherwise)."""

    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        if request.user is None or not request.user.is_authenticated:
            return False
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_role", VIEWER)
        else:
            needed = getattr(view, "write_role", ADMIN)
        return has_role(request.user, needed)
