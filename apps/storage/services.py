import logging

from django.conf import settings
from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.storage import backends
from apps.storage.models import StorageKind, StorageLocation

log = logging.getLogger(__name__)
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


def location_for(location: StorageLocation | None, *, owner: str) -> StorageLocation:
    """Where new backups of `owner` (e.g. "Target shop stores its backups") go: its own location, else the
    primary one; UserError when no backend serves that location's kind."""
    location = location or ensure_default_location()
    try:
        backends.get(location.kind)
    except backends.StorageError as exc:
        raise UserError(f"{owner} in {location.name}: {exc}") from None
    return location


def check_settings(location: StorageLocation) -> None:
    """What a location needs beyond the model's field checks (a bucket, a valid reference, rules that parse)."""
    from urllib.parse import urlsplit

    from apps.storage import tiering
    from apps.storage.backends.cloud import CloudBackend, check_credentials_ref

    try:
        check_credentials_ref(location.credentials_ref)
    except backends.StorageError as exc:
        raise UserError(str(exc)) from None
    if location.endpoint_url and (urlsplit(location.endpoint_url).username or urlsplit(location.endpoint_url).password):
        raise UserError("endpoint_url must not hold credentials; use credentials_ref.")
    backend = backends.get(location.kind)
    if issubclass(backend, CloudBackend) and not location.bucket:
        raise UserError(f"A {location.kind} location needs a {backend.container_word}.")
    if location.immutability and not location.retention_days:
        raise UserError("A write-once location needs retention_days (how long each object stays locked).")
    tiering.check_rules(location.tier_rules, kind=location.kind)


@transaction.atomic
def save_location(*, location: StorageLocation, actor: Actor) -> StorageLocation:
    if location.kind not in backends.kinds():
        raise UserError(f"Unknown storage kind {location.kind!r}: no backend for it "
                        f"(available: {', '.join(backends.kinds())}).")
    if location.kind == StorageKind.LOCAL and location.path and not location.path.startswith("/"):
        raise UserError("A local location's path must be absolute.")
    check_settings(location)
    if location.is_primary:
        StorageLocation.objects.exclude(pk=location.pk).filter(is_primary=True).update(is_primary=False)
    created = location._state.adding
    location.full_clean()
    location.save()
    audit(actor=actor, action="storage.location.created" if created else "storage.location.updated", obj=location)
    return location


def test_location(*, location: StorageLocation, actor: Actor) -> dict:
    """Run the connection test (apps/storage/probe.py) and audit it; the report holds no secret."""
    from apps.storage import probe

    report = probe.test_location(location)
    audit(actor=actor, action="storage.location.tested", obj=location,
          details={"ok": report["ok"], "immutability_enforced": report["immutability"]["enforced"]})
    return report


def remove_partials_of_dead_job(*, job, **_signal) -> list[str]:
    """jobs.signals.job_abandoned: a job killed mid-upload cannot remove its `.partial-<job id>-…` file from a
    local location; it goes now (files of other jobs, running or not, are left alone). Returns what went."""
    removed = []
    seen = set()
    for location in StorageLocation.objects.filter(kind=StorageKind.LOCAL):
        backend = backends.for_location(location)
        if backend.root in seen:
            continue
        seen.add(backend.root)
        try:
            gone = backend.remove_partials(job.pk)
        except OSError as exc:  # settling the dead job goes on: the file is never read as an artifact anyway
            log.error("Could not remove the unfinished uploads of dead job %s from %s: %s", job.pk, location.name, exc)
            continue
        for key in gone:
            log.warning("Removed %s from location %s: the unfinished upload of dead job %s", key, location.name, job.pk)
            removed.append(f"{location.name}:{key}")
    return removed
