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
import sys
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


def run(parts: list, work: Callable, *, on_progress: Callable[[int], None] | None = None) -> list[dict | None]:
    """work(part, report) in one child per part; report(n) adds n to the progress the parent sees (summed
    over children, passed to on_progress). The result of each part in order: work's dict, or None for a
    child that died or failed without one (the caller says what that part's items became)."""
    me = os.getpid()
    children: list[tuple[int, int]] = []  # (pid, read end)
    # Every object the parent has now is left out of the children's garbage collection: a child that collected
    # a garbage cycle of the parent's holding a SQLite statement (the catalog's connection) finalised it, and
    # deadlocked on SQLite's allocator mutex when another thread of the parent (pitr's WAL fetch-ahead) held it
    # at the fork. The parent collects them again once its children are started.
    gc.freeze()
    try:
        for part in parts:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    os.close(r)
                    for _, other in children:
                        os.close(other)
                    _die_with_parent(me)
                    _child(part, work, os.fdopen(w, "w", buffering=1))
                    code = 0
                except BaseException:  # noqa: BLE001 (a child reports by its exit code, whatever happened)
                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        gc.unfreeze()
        return _collect(children, on_progress)
    except BaseException:
        gc.unfreeze()
        for pid, _ in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    finally:
        for pid, r in children:
            try:
                os.close(r)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _child(part, work, out) -> None:
    def report(n: int) -> None:
        out.write(f"P{int(n)}\n")

    result = work(part, report)
    out.write("R" + json.dumps(result) + "\n")
    out.flush()


def _collect(children: list[tuple[int, int]], on_progress) -> list[dict | None]:
    results: list[dict | None] = [None] * len(children)
    pending = {r: (i, b"") for i, (_, r) in enumerate(children)}
    done = 0
    while pending:
        ready, _, _ = select.select(list(pending), [], [])
        for r in ready:
            i, buf = pending[r]
            data = os.read(r, 1 << 16)
            if not data:
                del pending[r]
                continue
            buf += data
            *lines, buf = buf.split(b"\n")
            pending[r] = (i, buf)
            for line in lines:
                if line.startswith(b"P"):
                    done += int(line[1:])
                    if on_progress is not None:
                        on_progress(done)
                elif line.startswith(b"R"):
                    results[i] = json.loads(line[1:])
    return results
