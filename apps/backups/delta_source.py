"""An incremental's page deltas (apps/backups/page_delta.py): each changed relation file compared, page by page,
with the parent's version of it, read back from the chain.

The parent's version of a file is the tar member of the backup that holds it whole (its index entry's
"backup"), streamed through the authenticating decoder, with the deltas of the later links that changed it
(its "deltas", in chain order) applied page by page. Nothing is held whole: the holder's tar passes once, the
data file is read beside it, and each link's `pages.delta` is read forward once. That works because every
writer emits its records in the same order: holders in chain order, and within a holder in the order of its
tar, which is the order this module reads them in.
"""
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from apps.backups import page_delta
from apps.backups.page_delta import PAGE, ZERO_PAGE, DeltaError
from apps.databases.engines import tarstream

BLOCK_PAGES = 128  # pages compared at once with the data file (1 MiB)


class Candidate:
    """A changed relation file to store as a delta: its path, its stat when listed, the parent's index entry."""

    __slots__ = ("mtime", "old", "path", "rel", "size")

    def __init__(self, rel: str, path: Path, size: int, mtime: int, old: dict):
        self.rel, self.path, self.size, self.mtime, self.old = rel, path, size, mtime, old


class DeltaWriter:
    """`chunks()` is the `pages.delta` artifact of `candidates`; afterwards `entries` holds the new index entry of
    each (its holder, its delta links with this backup last, the SHA-256 of its new content)."""

    def __init__(self, *, backup_id: str, candidates: list[Candidate], chain: list[str],
                 open_tar: Callable[[str], Iterator[bytes]], open_delta: Callable[[str], Iterator[bytes]]):
        self.backup_id, self.chain = backup_id, chain
        self.candidates = candidates
        self.open_tar, self.open_delta = open_tar, open_delta
        self.entries: dict[str, dict] = {}
        self.files = self.pages = 0
        self._readers: dict[str, page_delta.Reader] = {}
        self._streams: list = []

    def reader(self, link_id: str) -> page_delta.Reader:
        if link_id not in self._readers:
            if link_id not in self.chain:
                raise DeltaError(f"the parent's index names deltas of {link_id}, outside the chain")
            stream = self.open_delta(link_id)
            self._streams.append(stream)
            self._readers[link_id] = page_delta.Reader(stream, name=f"{page_delta.NAME} of backup {link_id}")
        return self._readers[link_id]

    def chunks(self) -> Iterator[bytes]:
        try:
            yield page_delta.MAGIC
            groups: dict[str, dict[str, Candidate]] = {}
            for c in self.candidates:
                groups.setdefault(c.old["backup"], {})[c.rel] = c
            outside = set(groups) - set(self.chain)
            if outside:
                raise DeltaError(f"the parent's index names holders outside the chain: {sorted(outside)[:3]}")
            for holder in self.chain:
                if holder in groups:
                    yield from self._holder(holder, groups[holder])
            yield page_delta.end_record(self.files, self.pages)
        finally:
            for stream in self._streams:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def _holder(self, holder: str, wanted: dict[str, Candidate]) -> Iterator[bytes]:
        scanner = _HolderScanner(self, wanted)
        stream = self.open_tar(holder)
        try:
            for chunk in stream:
                scanner.feed(chunk)
                if scanner.out:
                    yield b"".join(scanner.out)
                    scanner.out.clear()
                if not scanner.wanted and scanner.current is None:
                    break  # the rest of this tar is not needed
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if scanner.wanted or scanner.current is not None:
            missing = sorted(scanner.wanted) or [scanner.current.c.rel]
            raise DeltaError(f"the tar of backup {holder} does not hold {missing[0]}, which the parent's index "
                             "says it holds")


class _HolderScanner(tarstream.TarScanner):
    def __init__(self, writer: DeltaWriter, wanted: dict[str, Candidate]):
        super().__init__()
        self.writer, self.wanted = writer, wanted
        self.current: _FileDelta | None = None
        self.out: list[bytes] = []

    def _on_member(self, member: tarstream.Member) -> bool:
        if member.type == "file" and member.path in self.wanted:
            self.current = _FileDelta(self.writer, self.wanted.pop(member.path), base_size=member.size, out=self.out)
            return True
        return False

    def _on_data(self, data: memoryview) -> None:
        self.current.feed(data)

    def _on_member_end(self) -> None:
        self.current.finish()
        self.current = None


class _FileDelta:
    """One file: the holder's bytes fed in, compared with the data file block by block, records to `out`."""

    def __init__(self, writer: DeltaWriter, c: Candidate, *, base_size: int, out: list[bytes]):
        self.writer, self.c, self.out = writer, c, out
        if base_size % PAGE:
            raise DeltaError(f"{c.rel} is {base_size} bytes in its holder's tar, not whole pages")
        self.base_size, self.base_pages = base_size, base_size // PAGE
        self.links = []  # (reader, link id, size before, size after)
        size = base_size
        for link_id in c.old.get("deltas", []):
            reader = writer.reader(link_id)
            before, after = reader.seek_file(c.rel)
            if before != size:
                raise DeltaError(f"the delta of {c.rel} in backup {link_id} is against {before} bytes, not {size}")
            self.links.append((reader, link_id, before, after))
            size = after
        if size != c.old["size"]:
            raise DeltaError(f"{c.rel} rebuilt from the chain is {size} bytes; the parent's index says {c.old['size']}")
        self.ahead = [reader.next_page() for reader, *_ in self.links]
        self.new_pages = c.size // PAGE
        self.page = 0  # next page number
        self.pending: list = []  # the holder's bytes not yet compared (memoryviews of the decoder's chunks)
        self.pending_len = 0
        self.digest = hashlib.sha256()
        self.records = 0
        self.last = -1  # the page of the previous record
        self.check = page_delta.FileCheck()  # the crc32s of the parent's pages and the new ones, recorded
        try:
            self.fh = open(c.path, "rb")  # noqa: SIM115 (closed by finish(), after the holder's member has passed)
        except FileNotFoundError:
            self.fh = None  # removed since listed (a dropped relation): zeros at its listed size, as in a tar
        out.append(page_delta.file_record(c.rel, size, c.size))

    def feed(self, data: memoryview) -> None:
        self.pending.append(data)
        self.pending_len += len(data)
        if self.pending_len >= BLOCK_PAGES * PAGE:
            self._flush()

    def _flush(self) -> None:
        """Compare the whole pages pending; keep the rest (one copy of the holder's bytes, by the join)."""
        joined = b"".join(self.pending)
        whole = len(joined) // PAGE
        rest = joined[whole * PAGE:]
        self.pending, self.pending_len = ([rest] if rest else []), len(rest)
        if whole:
            self._block(joined if not rest else joined[:whole * PAGE], whole)

    def finish(self) -> None:
        self._flush()
        if self.pending_len:
            raise DeltaError(f"{self.c.rel} in its holder's tar does not end on a page boundary")
        while self.page < self.new_pages:  # the file grew past its holder's size
            n = min(BLOCK_PAGES, self.new_pages - self.page)
            self._block(None, n)
        if self.fh is not None:
            self.fh.close()
        self.out.append(page_delta.file_end_record(self.check.old_crc, self.check.new_crc))
        for rec, (_, link_id, _, _) in zip(self.ahead, self.links):
            if rec is not None and rec.number < self.new_pages:
                raise DeltaError(f"the delta of {self.c.rel} in backup {link_id} is out of order at page {rec.number}")
        c = self.c
        self.writer.entries[c.rel] = {
            "path": c.rel, "type": "file", "size": c.size, "mtime": c.mtime, "backup": c.old["backup"],
            "deltas": [*c.old.get("deltas", []), self.writer.backup_id], "sha256": self.digest.hexdigest()}
        self.writer.files += 1
        self.writer.pages += self.records

    def _read_new(self, n: int) -> bytes:
        want = n * PAGE
        data = b""
        if self.fh is not None:
            data = self.fh.read(want)
            while len(data) < want and (more := self.fh.read(want - len(data))):
                data += more
        if len(data) < want:  # shrank since listed: zero-padded, as a tar member would be
            data += bytes(want - len(data))
        return data

    def _block(self, base: bytes | None, n: int) -> None:
        """Pages self.page .. self.page + n - 1; `base`: the holder's bytes of them (None: past its end)."""
        first = self.page
        self.page += n
        count = min(n, self.new_pages - first)
        if count <= 0:
            return  # past the new end: nothing to store
        new = self._read_new(count)
        self.digest.update(new)
        stop = first + count
        touched = any(rec is not None and rec.number < stop for rec in self.ahead)
        if not touched and base is not None and (base == new if count == n else base[:count * PAGE] == new):
            return
        if not touched and base is not None and first + count <= self.base_pages:
            parent = base[:count * PAGE]
        else:  # past the holder's end (zeros), or pages earlier links' deltas changed: rebuilt page by page
            parent = []
            for i in range(count):
                p = first + i
                old = base[i * PAGE:(i + 1) * PAGE] if base is not None and p < self.base_pages else ZERO_PAGE
                parent.append(self._parent_page(p, old) if touched else old)
            parent = b"".join(parent)
        records, self.last = page_delta.block_records(parent, new, first, self.last, self.check)
        self.out.extend(records)
        self.records += len(records)

    def _parent_page(self, p: int, cur: bytes) -> bytes:
        size = self.base_size
        for k, (reader, link_id, _before, after) in enumerate(self.links):
            if p * PAGE >= size:
                cur = ZERO_PAGE
            rec = self.ahead[k]
            if rec is not None and rec.number <= p:
                if rec.number < p:
                    raise DeltaError(f"the delta of {self.c.rel} in backup {link_id} is out of order at page "
                                     f"{rec.number}")
                cur = rec.apply(cur, f"{self.c.rel} (delta of backup {link_id})")
                self.ahead[k] = reader.next_page()
            size = after
        return ZERO_PAGE if p * PAGE >= size else cur


def chain_openers(parent) -> tuple[list[str], Callable[[str], Iterator[bytes]], Callable[[str], Iterator[bytes]]]:
    """The chain's ids (oldest first) ending at `parent`, and openers of a link's tar and of its pages.delta,
    each streamed through the authenticating decoder from the link's first healthy copy."""
    from apps.backups import sources
    from apps.backups.physical_restore import tar_parts
    from apps.backups.restores import artifact_stream

    links, link = [], parent
    while link is not None and len(links) < 10000:
        links.append(link)
        link = link.parent
    links.reverse()
    by_id = {b.pk: b for b in links}

    def stream(link, artifacts) -> Iterator[bytes]:
        backend = sources.source_for(link, deep=False)
        for a in artifacts:  # closing this generator closes the decoder it is in
            yield from artifact_stream(backup=link, artifact=a, backend=backend, hash_raw=False, threaded=True)

    def open_tar(link_id: str) -> Iterator[bytes]:
        return stream(by_id[link_id], tar_parts(by_id[link_id]))

    def open_delta(link_id: str) -> Iterator[bytes]:
        link = by_id[link_id]
        artifact = link.artifacts.filter(name=page_delta.NAME).first()
        if artifact is None:
            raise DeltaError(f"backup {link_id} has no {page_delta.NAME}, but the parent's index names its deltas")
        return stream(link, [artifact])

    return [b.pk for b in links], open_tar, open_delta
