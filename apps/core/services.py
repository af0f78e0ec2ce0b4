from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from apps.core.models import AuditEvent, Interface


@dataclass(frozen=True)
class Actor:
    """Who asks for an action and through which interface; passed from views, commands and admin to services."""

    user: AbstractBaseUser | None = None
    via: str = Interface.SYSTEM
    remote_addr: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.user is not None and self.user.is_authenticated:
            return self.user.get_username()
        return self.extra.get("name", "")


SYSTEM = Actor()


def request_actor(request, *, via: str) -> Actor:
    """The actor of a web request (API, admin or console page)."""
    return Actor(user=request.user, via=via, remote_addr=request.META.get("REMOTE_ADDR") or None)


def audit(*, actor: Actor, action: str, obj: Any = None, details: dict | None = None) -> AuditEvent:
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return AuditEvent.objects.create(
        actor=user,
        actor_name=actor.name,
        via=actor.via,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        remote_addr=actor.remote_addr,
        details=details or {},
    )
