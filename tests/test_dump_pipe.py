"""pg_dump's stdout pipe is grown so pg_dump writes on while the backup processes the previous chunk."""
import fcntl
import os
from pathlib import Path

from apps.databases.engines import logical


def test_grow_pipe_gives_the_pipe_a_megabyte_or_the_most_allowed():
    r, w = os.pipe()
    try:
        default = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        got = logical.grow_pipe(r)
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        assert got == fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == min(logical.PIPE_SIZE, limit)
        assert got > default
        # the writer can now put that much in without a reader
        os.set_blocking(w, False)
        assert os.write(w, b"x" * got) == got
    finally:
        os.close(r)
        os.close(w)


def test_grow_pipe_on_something_else_than_a_pipe_is_harmless(tmp_path):
    with open(tmp_path / "f", "wb") as fh:
        assert logical.grow_pipe(fh.fileno()) == 0
