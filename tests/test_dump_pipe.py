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


WRITER = r"""
import os, sys, time
piece = bytes(range(256)) * 16  # 4 KiB, as pg_dump's stdio writes
for i in range(int(sys.argv[1])):
    os.write(1, piece)
    if i % 64 == 0:
        time.sleep(0.002)  # a writer slower than its reader now and then
time.sleep(float(sys.argv[2]))  # then silent (a lock wait), with less than half a pipe written
os.write(1, b"tail")
"""


def _writer(pieces: int, pause: float):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(pieces), str(pause)], stdout=subprocess.PIPE)
    return proc, logical.grow_pipe(proc.stdout.fileno())


def test_read_filled_gets_every_byte_in_few_large_reads():
    """A 4 KiB-at-a-time writer: every byte arrives in order, in chunks of at least half the pipe (but the last),
    i.e. one read per half pipe instead of one per write."""
    pieces = 2048  # 8 MiB
    proc, capacity = _writer(pieces, 0.0)
    try:
        chunks = list(logical.read_filled(proc.stdout, proc, capacity))
    finally:
        proc.wait()
        proc.stdout.close()
    assert b"".join(chunks) == bytes(range(256)) * 16 * pieces + b"tail"
    assert all(len(c) <= logical.CHUNK for c in chunks)
    assert all(len(c) >= capacity // 2 for c in chunks[:-2])
    assert len(chunks) <= 2 * (8 << 20) // capacity + 2


def test_read_filled_hands_on_what_a_quiet_writer_left_when_it_ends():
    """A writer that goes quiet with less than half a pipe written is waited for (no data lost, no busy loop), and
    what it wrote is delivered once it has exited."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    proc, capacity = _writer(3, 1.0)
    try:
        chunks = list(logical.read_filled(proc.stdout, proc, capacity))
    finally:
        proc.wait()
        proc.stdout.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert b"".join(chunks) == bytes(range(256)) * 16 * 3 + b"tail"
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 0.3  # napping, not spinning


def test_read_filled_without_a_known_pipe_size_reads_plainly():
    proc, _ = _writer(100, 0.0)
    try:
        chunks = list(logical.read_filled(proc.stdout, proc, 0))
    finally:
        proc.wait()
        proc.stdout.close()
    assert b"".join(chunks) == bytes(range(256)) * 16 * 100 + b"tail"
