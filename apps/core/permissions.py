"""One permission rule for every interface: a user may do what needs `role` when their role ranks at least as
high (apps.core.roles). The API applies it through RolePermission (the view's read_role / write_role), the
console through apps.console.permissions.console_action; tests/test_role_matrix.py holds both to one table."""
from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.core.roles import ADMIN, VIEWER, has_role, role_of


def role_allows(user, role: str) -> bool:
    return has_role(user, role)


def refusal(user, role: str) -> str:
    mine = role_of(user)
    return f"This needs the {role} role; yours is {mine or 'none'}."


def required_role(request, view) -> str:
    """The role a request to `view` needs: reads the view's read_role (viewer), writes its write_role (admin)."""
    if request.method in SAFE_METHODS:
        return getattr(view, "read_role", VIEWER)
    return getattr(view, "write_role", ADMIN)


class RolePermission(BasePermission):
    """Reads need the viewer role; writes need the view's `write_role` (admin unless the view says otherwise)."""

    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        if request.user is None or not request.user.is_authenticated:
            return False
        needed = required_role(request, view)
        if role_allows(request.user, needed):
            return True
        self.message = refusal(request.user, needed)
        return False
