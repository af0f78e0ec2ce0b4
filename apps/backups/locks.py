"""At most one backup per target at a time: a lease on the target row, renewed by progress reports.

A lease whose holder stopped reporting (worker killed) goes stale after
BACKUP_LOCK_STALE_SECONDS; the next backup takes it over and marks the
abandoned backup failed.
"""
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.errors import ConflictError
from apps.databases.models import DatabaseTarget


def stale_before():
    return timezone.now() - timedelta(seconds=settings.BACKUP_LOCK_STALE_SECONDS)


def holder(*, target: DatabaseTarget) -> str | None:
    """The backup holding a live lease on the target, if any."""
    row = DatabaseTarget.objects.filter(pk=target.pk).values("backup_lock", "backup_lock_heartbeat").get()
    if row["backup_lock"] and row["backup_lock_heartbeat"] and row["backup_lock_heartbeat"] >= stale_before():
        return row["backup_lock"]
    return None


def acquire(*, target: DatabaseTarget, backup_id: str) -> str | None:
    """Take the lease or raise ConflictError. Returns the id of a stale holder that was displaced."""
    row = DatabaseTarget.objects.filter(pk=target.pk).values("backup_lock").get()
    previous = row["backup_lock"]
    live = holder(target=target)
    if live and live != backup_id:
        raise ConflictError(f"A backup of {target.name} is already running (backup {live}).")
    taken = DatabaseTarget.objects.filter(pk=target.pk, backup_lock=previous).update(
        backup_lock=backup_id, backup_lock_heartbeat=timezone.now()
    )
    if not taken:  # somebody else got there between our read and our write
        raise ConflictError(f"A backup of {target.name} has just started.")
    return previous if previous and previous != backup_id else None


def heartbeat(*, target: DatabaseTarget, backup_id: str) -> None:
    DatabaseTarget.objects.filter(pk=target.pk, backup_lock=backup_id).update(backup_lock_heartbeat=timezone.now())


def release(*, target: DatabaseTarget, backup_id: str) -> None:
    DatabaseTarget.objects.filter(pk=target.pk, backup_lock=backup_id).update(backup_lock="", backup_lock_heartbeat=None)
