"""Job handlers by type. A handler is `fn(job, ctx, **runtime) -> dict` (the result)."""
from collections.abc import Callable

_HANDLERS: dict[str, Callable] = {}


def handler(job_type: str):
    def register(fn: Callable) -> Callable:
        _HANDLERS[job_type] = fn
        return fn

    return register


def get(job_type: str) -> Callable:
    from django.apps import apps

    # Handlers live in each app's jobs.py; import them all once.
    for config in apps.get_app_configs():
        if config.name.startswith("apps."):
            try:
                __import__(f"{config.name}.jobs")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.jobs":
                    raise
    return _HANDLERS[job_type]
