"""Streaming compressors behind one small interface: compress(chunk) -> bytes, flush() -> bytes."""
import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol

import zstandard

CHOICES = ("zstd", "gzip", "none")
SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ZSTD_JOB_SIZE = 2 << 20
# Level 3 looks for matches of 5 bytes or more. In dumps, COPY writes bytea as hex and much text is
# small-vocabulary: a spurious 5-byte match is found almost everywhere, and that search is most of the
# compressor's time. With 6 (level 1's value) a dump of text, jsonb and 15 % bytea compressed with 44 % less
# CPU and 4.6 % smaller; pgbench rows 1.5 % smaller at about the same CPU; Python source 0.7 % larger at the
# same CPU (python-zstandard 0.25, 2 threads, 2 MiB jobs; bench notes in docs/BENCHMARKS.md).
MIN_MATCH = {3: 6}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


def default_zstd_threads() -> int:
    """Worker threads for zstd: settings.BACKUP_ZSTD_THREADS (2 on 2 CPUs or more, as `zstd -T2`; 0: none).

    With workers, libzstd compresses in its own threads without the GIL while the caller reads,
    hashes and encrypts; the output is still one standard zstd frame (`zstd -d` reads it).
    """
    from django.conf import settings

    return settings.BACKUP_ZSTD_THREADS


class _Zstd:
    def __init__(self, level: int, threads: int = 0):
        # write_content_size off: the size is unknown when streaming. The frame is standard whatever the
        # parameters: `zstd -d` and the Decoder read it.
        extra = {"min_match": MIN_MATCH[level]} if level in MIN_MATCH else {}
        if threads:
            # 2 MiB jobs: each call hands back at most a few MiB (the jobs finished meanwhile) and libzstd's
            # buffers stay ~30 MiB (4 MiB jobs: ~48 MiB, the peak RSS target's margin), while highly compressible
            # dumps stay near the single-threaded ratio (pgbench rows: 1 MiB jobs 18 % larger, 2 MiB 5 %, 4 MiB 1 %).
            extra.update(threads=threads, job_size=ZSTD_JOB_SIZE)
        params = zstandard.ZstdCompressionParameters.from_level(level, write_checksum=True, **extra)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class IncompleteStream(ValueError):
    """The compressed stream ended before its end marker."""


class _IterReader:
    """A read(size)-able view of an iterator of byte strings, for zstandard's streaming decoder.

    Never returns more than `size` bytes: the C decoder copies into a buffer of that size.
    """

    def __init__(self, pieces: Iterable[bytes]):
        self._it = iter(pieces)
        self._buf = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._buf:
            piece = next(self._it, None)
            if piece is None:
                return b""
            self._buf = memoryview(piece)
        if size is None or size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out.tobytes()


def decompress_stream(name: str, pieces: Iterable[bytes], out_size: int = 1 << 20) -> Iterator[bytes]:
    """Decompress a stream of compressed pieces, yielding at most `out_size` bytes at a time.

    Output is bounded whatever the compression ratio (a frame of zeros may expand
    a thousandfold), and a stream cut before its end marker raises IncompleteStream.
    """
    if name == "zstd":
        # read_to_iter bounds each output chunk; the raw SHA-256 in the manifest proves the stream complete.
        yield from zstandard.ZstdDecompressor().read_to_iter(_IterReader(pieces), write_size=out_size)
    elif name == "gzip":
        obj = zlib.decompressobj(31)
        for piece in pieces:
            data = piece
            while data:
                out = obj.decompress(data, out_size)
                if out:
                    yield out
                data = obj.unconsumed_tail
                if obj.eof and (data or obj.unused_data):
                    raise IncompleteStream("Unexpected data after the end of the gzip stream.")
        if not obj.eof:
            raise IncompleteStream("The gzip stream ends before its end marker.")
    elif name == "none":
        for piece in pieces:
            for i in range(0, len(piece), out_size):
                yield bytes(piece[i : i + out_size])
    else:
        raise ValueError(f"Unknown compression {name!r}.")


def compressor(name: str, level: int | None = None, threads: int | None = None) -> Compressor:
    """`threads` (zstd only): worker threads, None for default_zstd_threads()."""
    if name == "zstd":
        return _Zstd(level or 3, default_zstd_threads() if threads is None else threads)
    if name == "gzip":
        return zlib.compressobj(level or 6, zlib.DEFLATED, 31)  # 31: gzip container
    if name == "none":
        return _Identity()
    raise ValueError(f"Unknown compression {name!r}; choose one of {', '.join(CHOICES)}.")
