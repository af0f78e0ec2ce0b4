"""At most one retention enforcement at a time: a lease on the single RetentionLock row.

Taken with a conditional UPDATE (SQLite and PostgreSQL alike), naming the process that holds it
(host:pid:start:pidns) and renewed by the job heartbeat. A holder whose process is gone (same host) or
whose heartbeat is older than JOB_STALE_SECONDS is displaced; so a killed enforcement never blocks the
next one. A second enforcement started meanwhile is refused (ConflictError) rather than queued: the
running one is already doing the same work, and every decision is re-checked on the locked row anyway.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.errors import ConflictError
from apps.jobs import liveness
from apps.jobs.progress import JobContext
from apps.retention.models import RetentionLock


def _free(row: RetentionLock) -> bool:
    if not row.holder:
        return True
    if liveness.is_dead(row.holder):
        return True
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    return row.heartbeat_at is None or row.heartbeat_at < stale


def acquire(*, job_id: str = "") -> str:
    """Take the lock; returns the identity it was taken under. ConflictError if a live enforcement holds it."""
    row, _ = RetentionLock.objects.get_or_create(pk=1)
    me = liveness.this_process()
    if not _free(row):
        raise ConflictError(f"Retention is already being enforced (job {row.job_id or '?'}, "
                            f"{liveness.describe(row.holder)}).")
    taken = RetentionLock.objects.filter(pk=1, holder=row.holder, heartbeat_at=row.heartbeat_at).update(
        holder=me, job_id=job_id, heartbeat_at=timezone.now())
    if not taken:  # another process got there between our read and our write
        raise ConflictError("Retention enforcement has just been started by another process.")
    return me


def renew(identity: str) -> None:
    RetentionLock.objects.filter(pk=1, holder=identity).update(heartbeat_at=timezone.now())


def release(identity: str) -> None:
    RetentionLock.objects.filter(pk=1, holder=identity).update(holder="", job_id="", heartbeat_at=None)


@contextmanager
def held(*, ctx: JobContext | None = None) -> Iterator[str]:
    identity = acquire(job_id=ctx.job.pk if ctx is not None else "")
    beat = ctx.on_beat(lambda: renew(identity)) if ctx is not None else None
    try:
        yield identity
    finally:
        if beat is not None:
            ctx.remove_beat(beat)
        release(identity)
