"""A directory on this host (or a mount). Uploads go to `<key>.partial-<job id>-<random>` and are renamed when
complete; a failure removes the partial file. A process killed mid-upload cannot: its job id in the name lets the
dead-job handling remove exactly that job's leftovers (`remove_partials`), never another upload's.
"""
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from apps.core.durable import fsync_dir
from apps.jobs import liveness
from apps.storage.backends import register
from apps.storage.backends.base import CHUNK_SIZE, ObjectInfo, ObjectMissing, StorageBackend, clean_key

PARTIAL_MARK = ".partial-"
NO_JOB = "nojob"


def partial_tag(job_id: str) -> str:
    """The part of a partial file's name that says which job writes it: `.partial-<job id>-`."""
    return f"{PARTIAL_MARK}{job_id or NO_JOB}-"


@register
class LocalBackend(StorageBackend):
    kind = "local"
    label = "Local disk"

    @property
    def root(self) -> Path:
        return Path(self.location.path or settings.BACKUP_LOCAL_ROOT).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / clean_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ObjectMissing(f"Key {key!r} points outside the location.")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}{partial_tag(liveness.current_job())}{uuid.uuid4().hex}")
        size = 0
        try:
            with open(tmp, "xb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)  # make the rename itself durable
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC))

    def get_stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise ObjectMissing(f"{key} is missing from location {self.location.name}.") from None
        with fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Prune empty directories up to the root so deleted backups leave no litter.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in sorted(files):
                if PARTIAL_MARK in name:
                    continue
                full = Path(dirpath) / name
                st = full.stat()
                yield ObjectInfo(
                    key=full.relative_to(self.root).as_posix(),
                    size=st.st_size,
                    modified=datetime.fromtimestamp(st.st_mtime, UTC),
                )

    def remove_partials(self, job_id: str) -> "list[str]":  # (`list` is a method here)
        """Delete the unfinished upload files of job `job_id` (settled as dead: nothing writes them any more)."""
        if not job_id or not self.root.is_dir():
            return []
        tag, removed = partial_tag(job_id), []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if tag in name:
                    path = Path(dirpath) / name
                    path.unlink(missing_ok=True)
                    removed.append(path.relative_to(self.root).as_posix())
        return removed
