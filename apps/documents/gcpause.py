"""Cyclic garbage collection paused while a backup, restore or verify runs.

These loops make tens of thousands of small containers that live until the end (manifest entries, index
rows, futures); each time enough of them pile up, CPython may traverse every object of the process (Django's
included). Nothing they make relies on the cycle collector (reference counting frees it), so collection is
paused for their duration and resumes, with a young-generation collection, when the last of them ends. On the
500 MB benchmark the gain was within noise (docs/BENCHMARKS.md); it costs nothing.
"""
import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextmanager
def paused():
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            resume = _depth == 0 and _was_enabled
            if resume:
                gc.enable()
        if resume:
            gc.collect(1)
