from django.conf import settings
from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.storage import backends
from apps.storage.models import StorageKind, StorageLocation

DEFAULT_LOCATION_NAME = "local"


def ensure_default_location() -> StorageLocation:
    """The primary location, created on first use as local disk under BACKUP_LOCAL_ROOT."""
    location = StorageLocation.objects.filter(is_primary=True, enabled=True).first()
    if location is not None:
        return location
    location, _ = StorageLocation.objects.get_or_create(
        name=DEFAULT_LOCATION_NAME,
        defaults={"kind": StorageKind.LOCAL, "path": str(settings.BACKUP_LOCAL_ROOT), "is_primary": True},
    )
    if not location.is_primary:
        StorageLocation.objects.filter(pk=location.pk).update(is_primary=True)
        location.is_primary = True
    return location


@transaction.atomic
def save_location(*, location: StorageLocation, actor: Actor) -> StorageLocation:
    if location.kind not in backends.kinds():
        raise UserError(f"Unknown storage kind {location.kind!r}: no backend for it "
                        f"(available: {', '.join(backends.kinds())}).")
    if location.kind == StorageKind.LOCAL and location.path and not location.path.startswith("/"):
        raise UserError("A local location's path must be absolute.")
    if location.is_primary:
        StorageLocation.objects.exclude(pk=location.pk).filter(is_primary=True).update(is_primary=False)
    created = location._state.adding
    location.full_clean()
    location.save()
    audit(actor=actor, action="storage.location.created" if created else "storage.location.updated", obj=location)
    return location
