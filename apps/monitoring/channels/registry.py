"""The channel kinds known to the code (every module of this package registers its class when imported)."""
from apps.monitoring.channels.base import Channel


def get(kind: str) -> type[Channel]:
    return Channel._kinds[kind]


def kinds() -> dict[str, type[Channel]]:
    return dict(Channel._kinds)


def choices() -> list[tuple[str, str]]:
    return [(k, cls.label or k) for k, cls in sorted(Channel._kinds.items())]
