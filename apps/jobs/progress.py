"""What a running job reports: log lines, bytes done (written at most once a second), and a heartbeat.

The heartbeat is a thread that stamps the job every JOB_HEARTBEAT_SECONDS whatever
the work is doing: a job blocked behind a table lock for an hour is still alive,
and one whose process was killed stops beating at once. Other liveness records
(a backup's lease on its target) ride on the same beat through `on_beat`.
"""
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.jobs.models import Job, JobStatus

log = logging.getLogger(__name__)

WRITE_EVERY_SECONDS = 1.0


def note(ctx: "JobContext | None", message: str, *, logger: logging.Logger | None = None) -> None:
    """A line for the job's log when there is a job (services also run without one), and for `logger` if given."""
    if logger is not None:
        logger.info(message)
    if ctx is not None:
        ctx.log(message)


def drop_broken_connection() -> bool:
    """Close this thread's metadata database connection if the server dropped it (a restart, a failover), so the
    next query opens a new one; never inside a transaction. True if it was closed.

    Outside web requests nobody else does this (Django checks connections at request boundaries only): a job
    would otherwise fail on every later query of its run, including the ones recording how it ended.
    """
    if connection.connection is None or connection.in_atomic_block or connection.is_usable():
        return False
    connection.close()
    return True


def _update_job(job_id: str, **fields) -> None:
    """Write fields of the job row; after a dropped connection, once more on a new one."""
    try:
        Job.objects.filter(pk=job_id).update(**fields)
    except DatabaseError:
        if not drop_broken_connection():
            raise
        Job.objects.filter(pk=job_id).update(**fields)


class Heartbeat(threading.Thread):
    def __init__(self, job_id: str, interval: float, callbacks: list[Callable[[], None]]):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.interval, self.callbacks = job_id, interval, callbacks
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                self.beat()
        finally:
            connection.close()  # this thread's own database connection

    def beat(self) -> None:
        try:
            Job.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception as exc:  # a busy or restarting metadata database: the next beat tries again
            log.warning("Job %s: heartbeat not written: %s", self.job_id, exc)
            drop_broken_connection()
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception as exc:
                log.warning("Job %s: heartbeat callback failed: %s", self.job_id, exc)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


class JobContext:
    def __init__(self, job: Job):
        self.job = job
        self._last_write = 0.0
        self._on_beat: list[Callable[[], None]] = []

    def on_beat(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on every heartbeat (from the heartbeat thread) until `remove_beat(callback)`."""
        self._on_beat.append(callback)
        return callback

    def remove_beat(self, callback: Callable[[], None]) -> None:
        if callback in self._on_beat:
            self._on_beat.remove(callback)

    @contextmanager
    def beating(self) -> Iterator[None]:
        beat = Heartbeat(self.job.pk, settings.JOB_HEARTBEAT_SECONDS, self._on_beat)
        beat.start()
        try:
            yield
        finally:
            beat.stop()

    def log(self, message: str) -> None:
        line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"
        self.job.log += line
        _update_job(self.job.pk, log=self.job.log, heartbeat_at=timezone.now())

    def progress(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.job.progress_done = done
        if total is not None:
            self.job.progress_total = total
        now = time.monotonic()
        if force or now - self._last_write >= WRITE_EVERY_SECONDS:
            self._last_write = now
            _update_job(self.job.pk, progress_done=self.job.progress_done, progress_total=self.job.progress_total,
                        heartbeat_at=timezone.now())

    def count(self, chunks: Iterable[bytes], start: int = 0) -> Iterator[bytes]:
        """Pass chunks through, reporting the running byte count."""
        done = start
        for chunk in chunks:
            done += len(chunk)
            self.progress(done)
            yield chunk
        self.progress(done, force=True)
