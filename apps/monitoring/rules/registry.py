"""The alert types known to the code (every module of this package registers its rule when imported)."""
from apps.monitoring.rules.base import Rule, all_rules, get  # noqa: F401


def choices() -> list[tuple[str, str]]:
    return [(t, cls.label or t) for t, cls in sorted(all_rules().items())]
