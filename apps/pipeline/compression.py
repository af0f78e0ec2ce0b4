"""Streaming compressors behind one small interface: compress(chunk) -> bytes, flush() -> bytes."""
import zlib
from typing import Protocol

import zstandard

CHOICES = ("zstd", "gzip", "none")
SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int):
        # write_content_size off: the size is unknown when streaming.
        self._obj = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _ZstdDecompressor:
    def __init__(self):
        # read_across_frames: concatenated zstd frames decode as one stream, as the zstd CLI does.
        self._obj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decompress(self, data: bytes) -> bytes:
        return self._obj.decompress(data)


def compressor(name: str, level: int | None = None) -> Compressor:
    if name == "zstd":
        return _Zstd(level or 3)
    if name == "gzip":
        return zlib.compressobj(level or 6, zlib.DEFLATED, 31)  # 31: gzip container
    if name == "none":
        return _Identity()
    raise ValueError(f"Unknown compression {name!r}; choose one of {', '.join(CHOICES)}.")


def decompressor(name: str) -> Decompressor:
    if name == "zstd":
        return _ZstdDecompressor()
    if name == "gzip":
        return zlib.decompressobj(31)
    if name == "none":
        return _Identity()
    raise ValueError(f"Unknown compression {name!r}.")
