"""Self-registration of subclasses by name (rules by alert type, channels by kind), as JobRunner does."""
from django.core.exceptions import ImproperlyConfigured


def register(known: dict, name: str, cls: type, what: str) -> None:
    """Add `cls` under `name`; a second class with that name is a configuration error (re-imports are fine)."""
    if not name:
        return
    other = known.get(name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ImproperlyConfigured(f"Two {what} are named {name!r}: {other} and {cls}.")
    known[name] = cls
