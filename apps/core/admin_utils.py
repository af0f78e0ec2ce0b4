from apps.core.models import Interface
from apps.core.services import Actor


def admin_actor(request) -> Actor:
    return Actor(user=request.user, via=Interface.ADMIN, remote_addr=request.META.get("REMOTE_ADDR"))
