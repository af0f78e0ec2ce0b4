"""Packs: new chunks gathered per worker thread and written as one pipeline artifact each (zstd, AES-256-GCM).

A pack's raw content is its chunks one after the other; the index (DocumentChunk rows and the version
manifest's `packs`) says where each chunk starts and how long it is. Each worker thread fills its own pack
and, once it holds PACK_SIZE raw bytes, encodes and stores it from that thread (zstd, hashlib and
AES-GCM work outside the GIL on large buffers), so packing runs in parallel with reading.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from apps.documents import layout
from apps.pipeline.artifact import ArtifactStats, Encoder
from apps.pipeline.keys import Keyring
from apps.storage.backends import StorageBackend

PACK_SIZE = 16 << 20
# zstd level 1: on documents (prose, office files) it compresses as well as level 3 at 1.6× the speed here,
# and compression is most of a first backup's CPU time (docs/BENCHMARKS.md).
PACK_ZSTD_LEVEL = 1


@dataclass
class StoredPack:
    key: str
    stats: ArtifactStats
    chunks: list[tuple[str, int, int]]  # (sha256, offset, length) in the raw stream


@dataclass
class _OpenPack:
    pieces: list[bytes] = field(default_factory=list)
    chunks: list[tuple[str, int, int]] = field(default_factory=list)
    size: int = 0


class Packer:
    """Thread-safe: `add` from any worker thread; `close` once every worker is done."""

    def __init__(self, *, backend: StorageBackend, keyring: Keyring | None, compression_name: str,
                 known, pack_size: int | None = None):
        self.backend, self.keyring, self.compression = backend, keyring, compression_name
        self.known = known  # chunks already in committed packs of this location (a set or a dict's keys)
        self.pack_size = pack_size or PACK_SIZE
        self.stored: list[StoredPack] = []
        self.new_chunk_bytes = 0
        self._pending: set[str] = set()  # chunks packed by this backup
        self._open: dict[int, _OpenPack] = {}
        self._lock = threading.Lock()

    def add(self, sha256: str, data) -> bool:
        """Pack the chunk unless the repository or this backup already has it; True when it is new."""
        full = None
        with self._lock:
            if sha256 in self.known or sha256 in self._pending:
                return False
            self._pending.add(sha256)
            pack = self._open.setdefault(threading.get_ident(), _OpenPack())
            pack.chunks.append((sha256, pack.size, len(data)))
            pack.pieces.append(bytes(data))
            pack.size += len(data)
            self.new_chunk_bytes += len(data)
            if pack.size >= self.pack_size:
                full = self._open.pop(threading.get_ident())
        if full is not None:
            self._store(full)
        return True

    def close(self) -> None:
        """Store the packs still open (one per worker thread that had one): side by side, each from a thread
        of its own, as the workers store theirs (compression, encryption and the fsync of one pack overlap
        the others'); returns once every one is stored, and raises the first failure."""
        with self._lock:
            rest, self._open = [p for p in self._open.values() if p.chunks], {}
        if len(rest) <= 1:
            for pack in rest:
                self._store(pack)
            return
        with ThreadPoolExecutor(max_workers=len(rest), thread_name_prefix="docs-pack") as pool:
            for future in [pool.submit(self._store, pack) for pack in rest]:
                future.result()

    def _store(self, pack: _OpenPack) -> None:
        encoder = Encoder(compression_name=self.compression, keyring=self.keyring, compression_threads=0,
                          compression_level=PACK_ZSTD_LEVEL if self.compression == "zstd" else None)
        key = layout.new_pack_key(compression_name=self.compression, encrypted=self.keyring is not None)
        self.backend.put_stream(key, encoder.encode(pack.pieces))
        pack.pieces.clear()
        with self._lock:
            self.stored.append(StoredPack(key=key, stats=encoder.stats, chunks=pack.chunks))

    def stored_keys(self) -> list[str]:
        with self._lock:
            return [p.key for p in self.stored]
