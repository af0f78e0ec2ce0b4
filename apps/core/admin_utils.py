from apps.core.models import Interface
from apps.core.services import Actor, request_actor


def admin_actor(request) -> Actor:
    return request_actor(request, via=Interface.ADMIN)
