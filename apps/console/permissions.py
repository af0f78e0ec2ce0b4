"""The one role check of console pages.

`@console_action(role)` marks a console view that changes state: a request that may change something (POST and
the other unsafe methods) needs `role`; reading the page (GET/HEAD) needs `read_role` (viewer unless the page
itself is an admin's form, such as the failover confirmation). The role is recorded on the view as
`view.required_role` (and `view.read_role`), so a role-matrix test can enumerate every console action with
`actions()`. Pages that only read use `@console_page` (viewer).

Refusals are a 403 page that says which role is needed, whatever the method; nothing is changed.
"""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.core.roles import RANK, VIEWER, role_of

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def request_has_role(request, role: str) -> bool:
    """apps.core.roles.has_role for the request's user, its role read once per request (a query of its groups):
    the decorators below check it, and a page that shows more to operators asks again without a second query."""
    if not hasattr(request, "_console_role"):
        request._console_role = role_of(request.user)
    mine = request._console_role
    return mine is not None and RANK[mine] >= RANK[role]


def forbidden(request, role: str, what: str = "This action"):
    return render(request, "console/forbidden.html", {"role": role, "what": what}, status=403)


def console_action(role: str, *, read_role: str = VIEWER, what: str = ""):
    """Check the signed-in user's role before the view runs; see the module's docstring."""
    if role not in RANK or read_role not in RANK:
        raise ValueError(f"Unknown role {role!r} / {read_role!r}.")

    def decorate(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            needed = read_role if request.method in SAFE_METHODS else role
            if not request_has_role(request, needed):
                return forbidden(request, needed, what or view.__name__.replace("_", " ").capitalize())
            return view(request, *args, **kwargs)

        checked.required_role = role
        checked.read_role = read_role
        return login_required(checked)

    return decorate


def console_page(view=None, *, role: str = VIEWER, what: str = "Reading this page"):
    """A console page that only reads: the viewer role, or `role` (e.g. the audit log: admin, as in the API)."""
    def decorate(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            if not request_has_role(request, role):
                return forbidden(request, role, what)
            return view(request, *args, **kwargs)

        checked.read_role = role
        return login_required(checked)

    return decorate(view) if view is not None else decorate


def actions() -> list[tuple[str, str, str]]:
    """(URL name, URL pattern, required role) of every console action, from the console's URLconf."""
    from apps.console import urls

    found = []
    for pattern in urls.urlpatterns:
        role = getattr(pattern.callback, "required_role", None)
        if role:
            found.append((f"console:{pattern.name}", str(pattern.pattern), role))
    return found
