"""Role checks of console actions, the same rule as the API's (apps.core.permissions.role_allows).

`@console_action(role)` on a view that changes state: a state-changing request (POST, ...) from a user below
`role` gets the 403 page and nothing is done; reads stay the view's business (most pages show viewers what an
admin could do). The view carries `required_role`, which the role-matrix test (tests/test_role_matrix.py)
enumerates, so a new console action is covered by it automatically.
"""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from apps.core.permissions import role_allows
from apps.core.roles import RANK

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def console_action(role: str):
    if role not in RANK:
        raise ValueError(f"Unknown role {role!r}.")

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in SAFE_METHODS:
                if not request.user.is_authenticated:
                    return redirect_to_login(request.get_full_path())
                if not role_allows(request.user, role):
                    return render(request, "console/forbidden.html", {"required_role": role}, status=403)
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorate
