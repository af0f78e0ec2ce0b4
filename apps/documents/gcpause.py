"""Cyclic garbage collection paused while a backup, restore or verify runs.

These loops make tens of thousands of small containers that live until the end (manifest entries, index
rows, futures); each time enough of them pile up, CPython may traverse every object of the process (Django's
included). Nothing they make relies on the cycle collector (reference counting frees it), so collection is
paused for their duration and resumes, with a young-generation collection, when the last of them ends. On the
500 MB benchmark the gain was within noise (docs/BENCHMARKS.md); it costs nothing.
"""
import gc
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager


def while_any(first: Callable[[], None], last: Callable[[], None]) -> Callable[[], AbstractContextManager]:
    """A context manager that may be nested and entered from several threads: `first()` when the first one
    starts, `last()` when the last one running ends."""
    lock = threading.Lock()
    depth = 0

    @contextmanager
    def manager():
        nonlocal depth
        with lock:
            if depth == 0:
                first()
            depth += 1
        try:
            yield
        finally:
            with lock:
                depth -= 1
                if depth == 0:
                    last()

    return manager


_was_enabled = True


def _pause() -> None:
    global _was_enabled
    _was_enabled = gc.isenabled()
    gc.disable()


def _resume() -> None:
    if _was_enabled:
        gc.enable()
        gc.collect(1)


paused = while_any(_pause, _resume)
