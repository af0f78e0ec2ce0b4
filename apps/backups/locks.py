"""At most one backup per target at a time: a lease on the target row.

The lease names the backup holding it and the process running it (host:pid:start:pidns)
and is renewed by the job heartbeat thread, independently of data progress: a
backup blocked behind a table lock keeps it; a killed one loses it at once on the
same host (its process is gone) or after BACKUP_LOCK_STALE_SECONDS elsewhere.
The same lease guards document sources (apps/documents): any model that is a `core.models.LeaseHolder`.
The backup id is the fencing token: the final writes of a backup are conditional
on still holding the lease (`Lease.confirm`), so a displaced backup can never
overwrite the outcome of the one that took over.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.errors import ConflictError
from apps.databases.models import DatabaseTarget
from apps.jobs import liveness
from apps.jobs.progress import JobContext


class LeaseLost(Exception):
    """Another backup took the lease over: this one must not record anything."""


def stale_before():
    return timezone.now() - timedelta(seconds=settings.BACKUP_LOCK_STALE_SECONDS)


def _rows(target: DatabaseTarget):
    """The target's own table (a DatabaseTarget, or a DocumentSource: both are LeaseHolders)."""
    return type(target)._default_manager.filter(pk=target.pk)


def holder(*, target: DatabaseTarget) -> str | None:
    """The backup holding a live lease on the target, if any."""
    row = _rows(target).filter(pk=target.pk).values(
        "backup_lock", "backup_lock_heartbeat", "backup_lock_owner"
    ).get()
    if not row["backup_lock"] or not row["backup_lock_heartbeat"] or row["backup_lock_heartbeat"] < stale_before():
        return None
    if row["backup_lock_owner"] and liveness.is_dead(row["backup_lock_owner"]):
        return None
    return row["backup_lock"]


def refuse_overlap(*, target: DatabaseTarget, queued, noun: str = "backup") -> None:
    """For a request, inside its transaction: ConflictError if a backup of the target (a LeaseHolder) runs or is
    queued (`queued`: its pending rows). The target's row is locked first (SQLite: the IMMEDIATE transaction
    already serialises writers), so two requests cannot both see "nothing queued" and both insert."""
    list(_rows(target).select_for_update().values_list("pk", flat=True))
    running = holder(target=target)
    if running:
        raise ConflictError(f"A backup of {target.name} is already running ({noun} {running}).")
    waiting = queued.values_list("pk", flat=True).first()
    if waiting:
        raise ConflictError(f"A backup of {target.name} is already queued ({noun} {waiting}).")


def acquire(*, target: DatabaseTarget, backup_id: str) -> str | None:
    """Take the lease or raise ConflictError. Returns the id of a dead holder that was displaced."""
    previous = _rows(target).values_list("backup_lock", flat=True).get()
    live = holder(target=target)
    if live and live != backup_id:
        raise ConflictError(f"A backup of {target.name} is already running (backup {live}).")
    taken = _rows(target).filter(backup_lock=previous).update(
        backup_lock=backup_id, backup_lock_heartbeat=timezone.now(), backup_lock_owner=liveness.this_process()
    )
    if not taken:  # somebody else got there between our read and our write
        raise ConflictError(f"A backup of {target.name} has just started.")
    return previous if previous and previous != backup_id else None


def renew(*, target: DatabaseTarget, backup_id: str) -> bool:
    """Stamp the lease; False when it is no longer ours."""
    return bool(
        _rows(target).filter(backup_lock=backup_id).update(backup_lock_heartbeat=timezone.now())
    )


def release(*, target: DatabaseTarget, backup_id: str) -> None:
    _rows(target).filter(backup_lock=backup_id).update(
        backup_lock="", backup_lock_heartbeat=None, backup_lock_owner=""
    )


class Lease:
    def __init__(self, target: DatabaseTarget, backup_id: str):
        self.target, self.backup_id = target, backup_id
        self.lost = False
        self.displaced: str | None = None  # a dead holder this lease replaced

    def beat(self) -> None:
        if not self.lost and not renew(target=self.target, backup_id=self.backup_id):
            self.lost = True

    def check(self) -> None:
        """Raise LeaseLost if a heartbeat found the lease taken over (cheap: no query)."""
        if self.lost:
            raise LeaseLost(f"Displaced: another backup of {self.target.name} took over the lease.")

    def confirm(self) -> None:
        """Renew and raise LeaseLost unless still ours; call inside the transaction that records the outcome."""
        self.beat()
        self.check()


@contextmanager
def lease(*, target: DatabaseTarget, backup_id: str, ctx: JobContext) -> Iterator[Lease]:
    """Hold the target's lease for the block, renewed on every job heartbeat."""
    held = Lease(target, backup_id)
    held.displaced = acquire(target=target, backup_id=backup_id)
    beat = ctx.on_beat(held.beat)
    try:
        yield held
    finally:
        ctx.remove_beat(beat)
        release(target=target, backup_id=backup_id)
