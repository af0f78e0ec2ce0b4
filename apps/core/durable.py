"""Making a finished write survive a crash: the rename into place is durable only once its directory is synced.
And writing all of a buffer: os.write may write less than it is given."""
import os
from pathlib import Path


def write_all(fd: int, data) -> None:
    """Write every byte of `data` (bytes-like) to `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
