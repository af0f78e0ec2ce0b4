"""The one gate of destructive actions: called by the request services (and job runners) before they act.

With the policy on for an action (settings.APPROVAL_REQUIRED_ACTIONS), a request from the API, the console or
the admin does not run: an ApprovalRequest is recorded and ApprovalPending raised. The API answers it 202 with
the request's id (apps/core/api_errors.py); the console and admin show its message. Trusted callers pass
straight through: management commands (a shell on the server), the scheduler and the system itself, and the
work of an approved request or of a job already running (`trusted()`).
"""
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings

from apps.core.errors import Deferred
from apps.core.models import Interface
from apps.core.services import Actor

TRUSTED_VIA = frozenset({Interface.CLI, Interface.SCHEDULE, Interface.SYSTEM})

_trusted: ContextVar[bool] = ContextVar("approvals_trusted", default=False)


class ApprovalPending(Deferred):
    """The action waits for a second admin; `request` is its ApprovalRequest. The API answers 202 with
    {"approval_request": id, "status": "pending", "expires_at": ..., "detail": message}."""

    def __init__(self, request):
        self.request = request
        message = (f"Approval requested: {request.summary} waits for a second admin's approval "
                   f"(request {request.pk}, expires {request.expires_at:%Y-%m-%d %H:%M} UTC).")
        super().__init__(message, body={"approval_request": request.pk, "status": request.status,
                                        "expires_at": request.expires_at.isoformat(), "detail": message})


@contextmanager
def trusted():
    """Everything inside runs without asking for approval (an approved request, a running job)."""
    token = _trusted.set(True)
    try:
        yield
    finally:
        _trusted.reset(token)


def required(action: str) -> bool:
    """Does the policy make `action` wait for a second admin?"""
    wanted = settings.APPROVAL_REQUIRED_ACTIONS
    return action in wanted or "all" in wanted


def holds(action: str, actor: Actor) -> bool:
    """Would `check` hold this actor's request for a second admin?"""
    return not _trusted.get() and actor.via not in TRUSTED_VIA and required(action)


def check(*, action: str, actor: Actor, params: dict, summary: str, obj=None) -> None:
    """Return if the action may run now; else record an ApprovalRequest and raise ApprovalPending.

    Call it before any transaction of the action: the request must outlive the refusal.
    """
    if not holds(action, actor):
        return
    from apps.approvals import services

    raise ApprovalPending(services.create_request(action=action, actor=actor, params=params, summary=summary,
                                                  obj=obj))
