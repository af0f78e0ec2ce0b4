"""Work split over forked child processes, each reporting progress and a JSON result through its own pipe.

For CPU-bound loops that hold the GIL part of the time (AES-GCM in `cryptography`, the Python code per file
of a restore): on two cores, two processes run them side by side where threads take turns. A child gets a
copy of the parent's memory, so it needs nothing sent to it, and must not touch what it shares with the
parent: the database connection (the parent locates every chunk and makes every directory before forking),
open storage connections (a child opens its own), the job's heartbeat. It leaves with os._exit, so no
finaliser of the parent's objects runs in it. A child dies with its parent (PR_SET_PDEATHSIG), and the
parent stops (SIGKILL, by pid) the children it started when it fails itself.
"""
import ctypes
import gc
import json
import os
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def available() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run(parts: list, work: Callable, *, on_progress: Callable[[int], None] | None = None,
        workers: int | None = None) -> list[dict | None]:
    """work(part, report) in one child per part; report(n) adds n to the progress the parent sees (summed
    over children, passed to on_progress). The result of each part in order: work's dict, or None for a
    child that died or failed without one (the caller says what that part's items became).

    With `workers` fewer than the parts: that many children, each taking the next part not yet taken (in the
    order given: put the largest first) until none is left, so that the children end together whatever each
    part costs and however the machine's other work slows one of them. A child stops taking parts after one
    whose work raised or returned an "error"; a part nobody finished has None."""
    me = os.getpid()
    children: list[tuple[int, int]] = []  # (pid, read end)
    # Every object the parent has now is left out of the children's garbage collection: a child that collected
    # a garbage cycle of the parent's holding a SQLite statement (the catalog's connection) finalised it, and
    # deadlocked on SQLite's allocator mutex when another thread of the parent (pitr's WAL fetch-ahead) held it
    # at the fork. The parent collects them again once its children are started.
    gc.freeze()
    pool = workers is not None and 0 < workers < len(parts)
    queue = None
    try:
        if pool:
            # The parts' numbers, each 4 bytes in one pipe written whole before any child starts (far below
            # PIPE_BUF, so no write blocks and each read of 4 bytes takes one number): a child's read takes the
            # next part; an empty pipe whose write end is closed reads as the end.
            queue, tokens = os.pipe()
            os.write(tokens, b"".join(struct.pack(">I", i) for i in range(len(parts))))
            os.close(tokens)
        for slot in range(workers if pool else len(parts)):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    os.close(r)
                    for _, other in children:
                        os.close(other)
                    _die_with_parent(me)
                    out = os.fdopen(w, "w", buffering=1)
                    if pool:
                        _take(parts, queue, work, out)
                    else:
                        _child(slot, parts[slot], work, out)
                    code = 0
                except BaseException:  # noqa: BLE001 (a child reports by its exit code, whatever happened)
                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        gc.unfreeze()
        if queue is not None:
            os.close(queue)
            queue = None
        return _collect(children, on_progress, len(parts))
    except BaseException:
        gc.unfreeze()
        for pid, _ in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    finally:
        if queue is not None:
            os.close(queue)
        for pid, r in children:
            try:
                os.close(r)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


# A child's progress goes to the parent at most this often (summed): a line per chunk woke the parent ~2,000
# times in a pgbench restore, each a write to the pipe and a switch on a machine whose cores the children fill.
REPORT_EVERY = 0.1  # seconds


def _child(index: int, part, work, out) -> dict:
    pending, last = 0, time.monotonic()

    def report(n: int) -> None:
        nonlocal pending, last
        pending += int(n)
        now = time.monotonic()
        if now - last >= REPORT_EVERY:
            out.write(f"P{pending}\n")
            pending, last = 0, now

    result = work(part, report)
    if pending:
        out.write(f"P{pending}\n")
    out.write(f"R{index} " + json.dumps(result) + "\n")
    out.flush()
    return result


def _take(parts: list, queue: int, work, out) -> None:
    """A pool child: the next part's number from the shared pipe, its work, until the pipe is empty."""
    while len(token := os.read(queue, 4)) == 4:
        index = struct.unpack(">I", token)[0]
        result = _child(index, parts[index], work, out)
        if isinstance(result, dict) and "error" in result:
            return  # the caller fails the whole run: no point taking more


def _collect(children: list[tuple[int, int]], on_progress, n_parts: int) -> list[dict | None]:
    results: list[dict | None] = [None] * n_parts
    pending = {r: b"" for _, r in children}
    done = 0
    while pending:
        ready, _, _ = select.select(list(pending), [], [])
        for r in ready:
            buf = pending[r]
            data = os.read(r, 1 << 16)
            if not data:
                del pending[r]
                continue
            buf += data
            *lines, buf = buf.split(b"\n")
            pending[r] = buf
            for line in lines:
                if line.startswith(b"P"):
                    done += int(line[1:])
                    if on_progress is not None:
                        on_progress(done)
                elif line.startswith(b"R"):
                    index, _, result = line[1:].partition(b" ")
                    results[int(index)] = json.loads(result)
    return results
