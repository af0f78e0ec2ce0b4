"""Freed memory kept for reuse while a restore runs, instead of going back to the kernel and being faulted in
(and zeroed) again for the next pack.

A restore decodes 16 MB packs one after the other, each through buffers of a few MB (storage reads, frames,
zstd output, the joined pack). By default glibc serves allocations that large with a fresh mmap, or trims the
heap (the reader threads' arenas notably) when they are freed, so every pack's bytes are page-faulted in anew:
on the 500 MB benchmark about 270,000 page faults, about a third of the restore's system time. While a restore
runs, allocations up to 32 MB come from the heap and up to 256 MB of freed memory stays in it. When the last
restore of the process ends the heap is trimmed and the trim threshold set to 64 MB, where glibc's own dynamic
thresholds end up once a 32 MB block was freed (setting them switches that adjustment off for the process).
Not glibc: nothing.
"""
import ctypes

from apps.documents.gcpause import while_any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit); its dynamic threshold stops here too
TRIM_THRESHOLD = 256 << 20
AFTER_TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

try:
    _libc = ctypes.CDLL(None)
    _mallopt, _malloc_trim = _libc.mallopt, _libc.malloc_trim
except (OSError, AttributeError):
    _mallopt = _malloc_trim = None


def _keep() -> None:
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def _release() -> None:
    if _mallopt is not None:
        _mallopt(_M_TRIM_THRESHOLD, AFTER_TRIM_THRESHOLD)
        _malloc_trim(0)


kept = while_any(_keep, _release)
