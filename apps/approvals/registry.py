"""Gated action name -> executor, as job types are registered: each app registers its own.

An executor is `fn(params: dict, actor: Actor) -> dict` (the parameters stored on the request; the approver as
actor); it returns what the request records as its result, e.g. {"job_id": ...}. Job runners with an
`approval_action` register themselves (apps/jobs/runner.py); other actions register in their app's
approvals.py (imported at start-up by the approvals app).
"""
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

Executor = Callable[[dict, object], dict]

_executors: dict[str, Executor] = {}


def register(action: str, executor: Executor | None = None):
    """register("x", fn), or @register("x") on the function."""

    def add(fn: Executor) -> Executor:
        known = _executors.get(action)
        if known is not None and getattr(known, "__qualname__", None) != getattr(fn, "__qualname__", None):
            raise ImproperlyConfigured(f"Two executors are registered for {action!r}: {known} and {fn}.")
        _executors[action] = fn
        return fn

    return add(executor) if executor is not None else add


def executor_for(action: str) -> Executor:
    try:
        return _executors[action]
    except KeyError:
        raise ImproperlyConfigured(f"No executor is registered for the action {action!r}.") from None


def actions() -> list[str]:
    return sorted(_executors)
