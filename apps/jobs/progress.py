"""What a running job reports: log lines and bytes done, written at most once a second."""
import time
from collections.abc import Callable, Iterable, Iterator

from django.utils import timezone

from apps.jobs.models import Job

WRITE_EVERY_SECONDS = 1.0


class JobContext:
    def __init__(self, job: Job, on_heartbeat: Callable[[], None] | None = None):
        self.job = job
        self._last_write = 0.0
        self.on_heartbeat = on_heartbeat

    def log(self, message: str) -> None:
        line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"
        self.job.log += line
        Job.objects.filter(pk=self.job.pk).update(log=self.job.log, heartbeat_at=timezone.now())

    def progress(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.job.progress_done = done
        if total is not None:
            self.job.progress_total = total
        now = time.monotonic()
        if force or now - self._last_write >= WRITE_EVERY_SECONDS:
            self._last_write = now
            Job.objects.filter(pk=self.job.pk).update(
                progress_done=self.job.progress_done, progress_total=self.job.progress_total, heartbeat_at=timezone.now()
            )
            if self.on_heartbeat is not None:
                self.on_heartbeat()

    def count(self, chunks: Iterable[bytes], start: int = 0) -> Iterator[bytes]:
        """Pass chunks through, reporting the running byte count."""
        done = start
        for chunk in chunks:
            done += len(chunk)
            self.progress(done)
            yield chunk
        self.progress(done, force=True)
