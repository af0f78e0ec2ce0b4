"""Reading chunks back: from the index to the pack, the pack decoded and authenticated, the chunk's SHA-256
checked against its name before a byte of it is used.

Packs are decoded whole (at most PACK_SIZE plus one chunk) and the last few are kept, so reading the files
of a version in order decodes each pack about once. A thread decodes the packs a read will need next while
the caller writes (`plan`).

`get` checks a chunk against its SHA-256. A restore, which checks every file's SHA-256 against the
(authenticated) manifest anyway, opens the store with `whole_files_checked=True` and reads with `view`: then
neither the pack's stored and raw SHA-256 nor each chunk's are computed (AES-GCM still authenticates every
frame of an encrypted pack; an unencrypted pack is still checked against its stored SHA-256), and a chunk is
a view into its decoded pack, not a copy. Without keys that is three hash passes over the data fewer.
"""
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from apps.documents.models import DocumentChunk, DocumentPack
from apps.pipeline.artifact import ArtifactError, Decoder
from apps.pipeline.keys import Keyring
from apps.storage import backends

CACHED_PACKS = 8


class ChunkError(Exception):
    """A chunk cannot be read intact: its pack is missing or corrupt, or its bytes do not hash to its name."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


class ChunkStore:
    def __init__(self, *, location, keyring: Keyring | None, fallbacks=(), whole_files_checked: bool = False):
        """`fallbacks`: further locations holding replicas of the same packs (same keys, same bytes), read
        when a pack is missing or damaged here. `whole_files_checked`: see the module's docstring."""
        self.location, self.keyring = location, keyring
        self.whole_files_checked = whole_files_checked
        self.backend = backends.for_location(location)
        self.fallbacks = [backends.for_location(loc) for loc in fallbacks if loc.pk != location.pk]
        self._held: dict[int, set[str]] = {}  # fallback location id -> pack keys it holds intact
        self.recovered: list[tuple[str, str]] = []  # (pack key, location name) read from a fallback
        self.where: dict[str, tuple[int, int, int]] = {}  # sha -> (pack id, offset, length)
        self.packs: dict[int, DocumentPack] = {}
        self._cache: OrderedDict[int, Future] = OrderedDict()
        self._order: list[int] = []
        self._position: dict[int, int] = {}
        self._frontier, self._lookahead = -1, 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="docs-read")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def reopen_in_child(self) -> None:
        """In a forked child (forked.py): a pool, lock, cache and storage connections of its own, nothing
        shared with the parent's (the index, `where` and `packs`, is kept: the child never queries)."""
        self._lock = threading.Lock()
        self._cache = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="docs-read")
        self.backend = backends.for_location(self.location)
        self.fallbacks = [backends.for_location(fb.location) for fb in self.fallbacks]
        self.recovered = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def locate(self, shas) -> None:
        """Look up where these chunks are (once, before reading: the worker threads never query)."""
        todo = [s for s in dict.fromkeys(shas) if s not in self.where]
        for i in range(0, len(todo), 500):
            for sha, pack_id, off, length in DocumentChunk.objects.filter(
                    location=self.location, sha256__in=todo[i:i + 500]).values_list(
                    "sha256", "pack_id", "offset", "length"):
                self.where[sha] = (pack_id, off, length)
        ids = {w[0] for w in self.where.values()} - set(self.packs)
        id_list = list(ids)
        for i in range(0, len(id_list), 500):
            for pack in DocumentPack.objects.filter(pk__in=id_list[i:i + 500]):
                self.packs[pack.pk] = pack
        if self.fallbacks:
            keys = [self.packs[i].key for i in id_list if i in self.packs]
            for fb in self.fallbacks:
                held = self._held.setdefault(fb.location.pk, set())
                for i in range(0, len(keys), 500):
                    held.update(DocumentPack.objects.filter(location=fb.location, damaged=False,
                                                            key__in=keys[i:i + 500]).values_list("key", flat=True))

    def pack_order(self, shas) -> list[int]:
        """The packs these chunks need, in the order they are first needed."""
        order: dict[int, None] = {}
        for sha in shas:
            w = self.where.get(sha)
            if w is not None:
                order.setdefault(w[0])
        return list(order)

    def plan(self, pack_ids: list[int], lookahead: int = 2) -> None:
        """Reads will first need these packs in this order: decode each one a little ahead of need.

        The read-ahead only moves forward: a pack needed again later (a changed file's chunks sit in a
        newer pack, needed here and there all along) does not bring back the packs that followed it."""
        self._order, self._lookahead = pack_ids, lookahead
        self._position = {p: i for i, p in enumerate(pack_ids)}
        self._frontier = -1

    def _read_ahead(self, pack_id: int) -> None:
        pos = self._position.get(pack_id)
        if pos is None:
            return
        with self._lock:
            start, end = self._frontier + 1, min(pos + self._lookahead, len(self._order) - 1)
            self._frontier = max(self._frontier, end)
        for i in range(start, end + 1):
            self._pack_future(self._order[i])

    def _pack_future(self, pack_id: int) -> Future:
        with self._lock:
            fut = self._cache.get(pack_id)
            if fut is None:
                fut = self._pool.submit(self.decode_pack, self.packs[pack_id])
                self._cache[pack_id] = fut
                while len(self._cache) > CACHED_PACKS:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(pack_id)
            return fut

    def decode_pack(self, pack: DocumentPack) -> bytes:
        try:
            return self._decode(pack, self.backend)
        except ChunkError:
            for fb in self.fallbacks:  # a replica of the same pack: same key, same catalog record
                if pack.key in self._held.get(fb.location.pk, ()):
                    try:
                        data = self._decode(pack, fb)
                    except ChunkError:
                        continue
                    self.recovered.append((pack.key, fb.location.name))
                    return data
            raise

    def _decode(self, pack: DocumentPack, backend) -> bytes:
        light = self.whole_files_checked
        decoder = Decoder.for_record(pack, keyring=self.keyring, hash_raw=not light, hash_stored=not light)
        try:
            return b"".join(decoder.decode(backend.get_stream(pack.key)))
        except backends.ObjectMissing:
            raise ChunkError(f"pack {pack.key} is missing", missing=True) from None
        except ArtifactError as exc:
            raise ChunkError(f"pack {pack.key} is corrupt: {exc}") from None
        except backends.StorageError as exc:
            raise ChunkError(f"pack {pack.key} cannot be read: {exc}", missing=True) from None

    def get(self, sha: str) -> bytes:
        """The chunk's bytes, checked against its SHA-256."""
        data = bytes(self.view(sha))
        if hashlib.sha256(data).hexdigest() != sha:
            raise ChunkError(f"chunk {sha} in pack {self.packs[self.where[sha][0]].key} does not match its SHA-256")
        return data

    def view(self, sha: str) -> memoryview:
        """The chunk's bytes as a view into its decoded pack, NOT checked against its SHA-256: only for a
        caller that checks the whole file's SHA-256 before using it (the restore)."""
        where = self.where.get(sha)
        if where is None:
            raise ChunkError(f"chunk {sha} is not in the index of {self.location.name}", missing=True)
        pack_id, off, length = where
        if pack_id not in self.packs:
            raise ChunkError(f"chunk {sha}: its pack is not in the catalog", missing=True)
        fut = self._pack_future(pack_id)
        self._read_ahead(pack_id)
        data = memoryview(fut.result())[off:off + length]
        if len(data) != length:
            raise ChunkError(f"chunk {sha} in pack {self.packs[pack_id].key} is shorter than the index says")
        return data
