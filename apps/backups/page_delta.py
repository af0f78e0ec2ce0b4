"""The page-delta artifact of an incremental (`pages.delta`): the changed 8 KiB pages of relation files, each
stored as the byte runs in which it differs from the parent's version of the same page. See docs/FORMAT.md 7.1.

A stream of records (integers little-endian):

    magic  b"BSPD3\\n" (b"BSPD2\\n": the same, with crc32 where BSPD3 has crc32c; still read)
    F      u8 'F', u16 path length, path (UTF-8), u64 parent size, u64 new size   -- a file; its pages follow
    P      u8 'P', u32 pages skipped (the page number less the previous record's of the file, less 1; the
           first: the page number), u16 run count n, u16 data length,
           n x (u16 bytes kept before the run, u16 run length), the new bytes of the runs one after the other
    E      u8 'E', u32 crc32c of the parent's pages the file's P records change (one after the other, in order),
           u32 crc32c of the pages they give                                      -- after a file's last P
    Z      u8 'Z', u64 files, u64 pages                                            -- the end

The runs are where the pages differ, split at 7 or more equal bytes (block_records; page_record is the same
for one page). A page at or past the parent's end is compared with zeros; a file's pages come in ascending
order. The check that a delta fits its parent is per file, not per page (two checksums a page were 8
incompressible bytes in ~40 of pgbench's; docs/DECISIONS.md): when every record of a file was applied, a crc
of the pages made that is not the recorded one is an error (the delta was made against other content; the
crc of the parent's pages says so more clearly, where it is computed). The file index's SHA-256 of each
file's content checks the result again. crc32c (BSPD3): in hardware (google-crc32c) it costs 1 µs a page
where zlib's crc32 costs 4.
"""
import array
import binascii
import functools
import itertools
import re
import struct
import sys
from collections.abc import Callable, Iterator
from typing import NamedTuple

import google_crc32c

PAGE = 8192
MAGIC = b"BSPD3\n"
MAGIC_CRC32 = b"BSPD2\n"  # written before crc32c (2026-11-26); read still
NAME = "pages.delta"
ZERO_PAGE = bytes(PAGE)
_F = struct.Struct("<QQ")
_P = struct.Struct("<IHH")
_E = struct.Struct("<II")
_Z = struct.Struct("<QQ")
# The gaps between runs: 7 zero bytes or more of the XOR (a shorter gap stays inside a run: a run costs 4 bytes
# of header; 9 before: 4 % larger compressed on pgbench). Splitting on the gaps (a literal prefix, C-level) is 3x
# faster than matching the runs. block_records finds the same runs with numpy.
_GAPS = re.compile(rb"(\x00{7,})")
_SWAP = sys.byteorder == "big"  # the u16 arrays are little-endian


class DeltaError(Exception):
    """A page-delta stream that is malformed, or that does not fit the content it is applied to."""


def wrong_pages(path: str) -> DeltaError:
    """The pages a file's records made are not those its end record's crc describes."""
    return DeltaError(f"{path}: the delta does not give the pages it recorded (it was made against other content, "
                      "or that content is damaged)")


def file_record(path: str, parent_size: int, new_size: int) -> bytes:
    raw = path.encode()
    return b"F" + struct.pack("<H", len(raw)) + raw + _F.pack(parent_size, new_size)


def page_record(skipped: int, old: bytes, new: bytes) -> bytes:
    """The record turning `old` (the parent's page) into `new` (which differ), `skipped` pages after the file's
    previous record: the runs where they differ (the zero runs of their XOR are where they agree), with the new
    bytes."""
    x = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(PAGE, "little")
    parts = _GAPS.split(x)  # differing, agreeing, differing, ..., differing (the first and last may be empty)
    runs = list(map(len, parts[0::2]))
    gaps = [0, *map(len, parts[1::2])]
    if not runs[-1]:
        del runs[-1], gaps[-1]
    if not runs[0]:
        del runs[0], gaps[0]
    header = array.array("H", itertools.chain.from_iterable(zip(gaps, runs)))
    ends = list(itertools.accumulate(header))
    data = b"".join(map(new.__getitem__, map(slice, ends[0::2], ends[1::2])))
    if _SWAP:
        header.byteswap()
    return b"".join((b"P", _P.pack(skipped, len(runs), len(data)), header.tobytes(), data))


def block_records(old: bytes, new: bytes, first: int, last: int, check: "FileCheck") -> tuple[list[bytes], int]:
    """The page records of a block of whole pages (`old`: the parent's, `new`: the new ones, of equal length),
    page `first` onwards, `last` the page of the file's previous record: a record for each page that differs,
    with the runs page_record finds less the equal bytes it leaves at a page's edges, found with numpy over the
    whole block (page_record in a loop cost ~100 µs a pgbench page: ~70 runs, the hint bits); the pages go
    into `check`. Returns the records and the new `last`."""
    import numpy as np

    k = len(new) // PAGE
    a = np.frombuffer(old, dtype=np.uint8, count=k * PAGE)
    b = np.frombuffer(new, dtype=np.uint8, count=k * PAGE)
    where = np.flatnonzero(a != b)  # differing bytes, over the block
    if not len(where):
        return [], last
    page_of = where // PAGE
    # A run starts at a page's first differing byte, or after 7 or more equal bytes (as _GAPS splits).
    starts_at = np.ones(len(where), dtype=bool)
    starts_at[1:] = (page_of[1:] != page_of[:-1]) | (where[1:] - where[:-1] > 7)
    first_of_run = np.flatnonzero(starts_at)
    starts = where[first_of_run]
    ends = where[np.append(first_of_run[1:] - 1, len(where) - 1)] + 1
    run_page = page_of[first_of_run]
    pages, first_run, runs = np.unique(run_page, return_index=True, return_counts=True)
    prev_end = np.empty_like(ends)  # the end of the previous run of the page, or the page's start
    prev_end[1:] = ends[:-1]
    prev_end[first_run] = pages * PAGE
    lengths = ends - starts
    header = np.empty((len(starts), 2), dtype="<u2")
    header[:, 0] = starts - prev_end
    header[:, 1] = lengths
    header = header.tobytes()
    used = np.cumsum(lengths)  # where each run's bytes end in `data`
    data = b[np.repeat(starts - used + lengths, lengths) + np.arange(used[-1])].tobytes()
    page_bytes = np.add.reduceat(lengths, first_run)
    data_at = np.concatenate(([0], np.cumsum(page_bytes)))
    runs_at = np.concatenate(([0], np.cumsum(runs)))
    records = []
    for i, (page, n, size) in enumerate(zip(pages.tolist(), runs.tolist(), page_bytes.tolist())):
        number = first + page
        records.append(b"".join((b"P", _P.pack(number - last - 1, n, size), header[4 * runs_at[i]:4 * runs_at[i + 1]],
                                 data[data_at[i]:data_at[i + 1]])))
        last = number
    check.old_crc = check.crc(check.old_crc, a.reshape(k, PAGE)[pages].tobytes())
    check.new_crc = check.crc(check.new_crc, b.reshape(k, PAGE)[pages].tobytes())
    check.applied += len(records)
    return records, last


def file_end_record(old_crc: int, new_crc: int) -> bytes:
    """After a file's page records: the crc32 of the parent pages they change and of the pages they give."""
    return b"E" + _E.pack(old_crc, new_crc)


def _crc32(crc: int, data: bytes) -> int:
    return binascii.crc32(data, crc)


CRCS: dict[bytes, Callable[[int, bytes], int]] = {MAGIC: google_crc32c.extend, MAGIC_CRC32: _crc32}
POLYNOMIALS = {MAGIC: 0x82F63B78, MAGIC_CRC32: 0xEDB88320}  # reflected, as the crcs are computed


def crc_combine(polynomial: int, crc1: int, crc2: int, length2: int) -> int:
    """The crc of A + B from crc1 of A, crc2 of B and B's length (zlib's crc32_combine, for any reflected crc
    with all-ones start and end, as crc32 and crc32c are): parts of a file applied apart are checked as one."""
    if length2 <= 0:
        return crc1
    powers, k = _powers(polynomial), 0
    while length2:  # appends 2**k zero bytes for each bit k of the length
        if length2 & 1:
            crc1 = _times(powers(k), crc1)
        length2 >>= 1
        k += 1
    return crc1 ^ crc2


def _times(matrix: tuple[int, ...], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


@functools.lru_cache(maxsize=8)
def _powers(polynomial: int) -> Callable[[int], tuple[int, ...]]:
    """The GF(2) operators (32 columns each) that append 2**k zero bytes to a crc, made once as asked for: a
    combine then costs a vector product per bit of the length, whatever the length (the parts' lengths vary)."""
    operator = (polynomial, *(1 << n for n in range(31)))  # one zero bit
    for _ in range(3):
        operator = tuple(_times(operator, column) for column in operator)  # a zero byte: 2, 4, 8 bits
    made = [operator]

    def power(k: int) -> tuple[int, ...]:
        while len(made) <= k:
            made.append(tuple(_times(made[-1], column) for column in made[-1]))
        return made[k]

    return power


class FileCheck:
    """The running crcs of a file's pages (parent and new), in record order: the writer's and the reader's."""

    __slots__ = ("applied", "crc", "new_crc", "old_crc")

    def __init__(self, crc: Callable[[int, bytes], int] = google_crc32c.extend):
        self.crc = crc
        self.old_crc = self.new_crc = self.applied = 0

    def add(self, old: bytes, new: bytes) -> None:
        self.old_crc = self.crc(self.old_crc, old)
        self.new_crc = self.crc(self.new_crc, new)
        self.applied += 1


def end_record(files: int, pages: int) -> bytes:
    return b"Z" + _Z.pack(files, pages)


class Page:
    __slots__ = ("check", "count", "number", "raw")

    def __init__(self, number: int, count: int, raw: bytes, check: FileCheck):
        self.number, self.count, self.raw, self.check = number, count, raw, check

    def apply(self, old: bytes, where: str) -> bytes:
        """The new page from the parent's `old`; DeltaError if the runs do not fit the page or their record.
        Both pages go into the file's crc32s, which the Reader checks at the file's end record."""
        count, raw = self.count, self.raw
        header = array.array("H", raw[:4 * count])
        if _SWAP:
            header.byteswap()
        data = raw[4 * count:]
        lengths = header[1::2]
        if sum(header) > PAGE or sum(lengths) != len(data):
            raise DeltaError(f"the runs of page {self.number} of {where} do not fit the page or their record")
        bounds = list(itertools.accumulate(header))  # start, end of each run in the page
        starts, ends = bounds[0::2], bounds[1::2]
        offsets = list(itertools.accumulate(lengths))  # end of each run in `data`
        kept = map(old.__getitem__, map(slice, [0, *ends[:-1]], starts))
        changed = map(data.__getitem__, map(slice, [0, *offsets[:-1]], offsets))
        new = b"".join(itertools.chain(itertools.chain.from_iterable(zip(kept, changed)), (old[bounds[-1]:],)))
        self.check.add(old, new)
        return new


class PageBatch(NamedTuple):
    """Page records of one file, parsed: page numbers (ascending), and the records from their fields on (u32
    pages skipped, u16 run count, u16 data length, the runs' header, their bytes), one after the other in
    `records`, each beginning at its `at`. Passed over (`skip`): only the page numbers, and where each
    record's fields begin in the stream (`offsets`)."""
    pages: list[int]
    records: bytes
    at: list[int]
    offsets: list[int] | None = None


class Reader:
    """Records of a page-delta stream, in order: `next_file()` → (path, parent size, new size) or None at the
    end; then either `next_page()` → the file's next Page, or None after its last, or `page_batch()` → its next
    records parsed, for the caller to apply, then `file_end()` → its end record's crcs, for the caller to check
    (delta_restore). Pages left unread are skipped. When every page a file's next_page() gave was applied
    (Page.apply), its end record's crcs are checked (DeltaError).

    The stream is parsed from one buffer by offset (struct.unpack_from), refilled from the chunks as it runs
    short: the restore reads a record per changed page, and copying each out first cost more than applying it."""

    def __init__(self, chunks: Iterator[bytes], name: str = NAME):
        self.name = name
        self._chunks = iter(chunks)
        self._buf, self._pos, self._base = b"", 0, 0
        magic = self._read(len(MAGIC))
        if magic not in CRCS:
            raise DeltaError(f"{name} is not a page-delta stream")
        self.magic = magic
        self._crc = CRCS[magic]
        self.polynomial = POLYNOMIALS[magic]
        self._tag = self._read(1)
        self.files = self.pages = 0
        self.ended = False
        self._path: str | None = None  # the file whose records are being read, until its end record
        self._page = self._count = 0
        self._check = FileCheck(self._crc)

    @property
    def page(self) -> int:
        """The page number of the last page record read in the current file (-1 before its first)."""
        return self._page

    @property
    def offset(self) -> int:
        """Where in the stream the last record read ends."""
        return self._base + self._pos - 1  # (the next record's tag is read already)

    def _fill(self, n: int) -> None:
        """At least `n` bytes from the current position in the buffer."""
        self._base += self._pos
        parts, have = [self._buf[self._pos:]], len(self._buf) - self._pos
        while have < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise DeltaError("the page-delta stream ends early")
            parts.append(chunk)
            have += len(chunk)
        self._buf, self._pos = b"".join(parts), 0

    def _read(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:
            self._fill(n)
        pos = self._pos
        self._pos = pos + n
        return self._buf[pos:pos + n]

    def next_file(self) -> tuple[str, int, int] | None:
        while self._path is not None:
            self.next_page()
        if self._tag == b"Z":
            files, pages = _Z.unpack(self._read(_Z.size))
            if (files, pages) != (self.files, self.pages):
                raise DeltaError(f"{self.name} ends with {files} files and {pages} pages, but holds "
                                 f"{self.files} and {self.pages}")
            self.ended = True
            return None
        if self._tag != b"F":
            raise DeltaError(f"{self.name}: unknown record {self._tag!r}")
        (length,) = struct.unpack("<H", self._read(2))
        path = self._read(length).decode()
        parent_size, new_size = _F.unpack(self._read(_F.size))
        self.files += 1
        self._tag = self._read(1)
        self._path, self._page, self._count, self._check = path, -1, 0, FileCheck(self._crc)
        return path, parent_size, new_size

    def next_page(self) -> Page | None:
        if self._tag == b"P" and self._path is not None:
            skipped, count, length = _P.unpack(self._read(_P.size))
            raw = self._read(4 * count + length + 1)  # the runs' header and bytes, and the next record's tag
            self.pages += 1
            self._count += 1
            self._page += skipped + 1
            self._tag = raw[-1:]
            return Page(self._page, count, raw[:-1], self._check)
        if self._path is None:
            return None
        self._end_file()
        return None

    @property
    def crc(self) -> Callable[[int, bytes], int]:
        """The stream's checksum: crc(crc so far, bytes) -> crc."""
        return self._crc

    def page_batch(self, max_pages: int, limit: int, *, skip: bool = False) -> PageBatch | None:
        """The current file's next page records, up to `max_pages` of them, parsed (not applied); None after its
        last. A page at or past `limit` bytes is a DeltaError. With `skip`, passed over: only their page
        numbers and offsets."""
        if self._tag != b"P" or self._path is None:
            return None
        pages, records, at, offsets, total = [], [], [], [], 0
        buf, pos, tag, page = self._buf, self._pos, self._tag, self._page
        unpack, size = _P.unpack_from, _P.size
        while tag == b"P" and len(pages) < max_pages:
            if len(buf) - pos < size:
                self._pos = pos
                self._fill(size)
                buf, pos = self._buf, 0
            skipped, n, length = unpack(buf, pos)
            need = size + 4 * n + length + 1
            if len(buf) - pos < need:
                self._pos = pos
                self._fill(need)
                buf, pos = self._buf, 0
            page += skipped + 1
            if (page + 1) * PAGE > limit:
                raise DeltaError(f"page {page} of {self._path} is past the file's size")
            pages.append(page)
            if skip:
                offsets.append(self._base + pos)
            else:
                at.append(total)
                records.append(buf[pos:pos + need - 1])  # (not the next record's tag)
                total += need - 1
            pos += need
            tag = buf[pos - 1:pos]
        self._buf, self._pos, self._tag, self._page = buf, pos, tag, page
        self.pages += len(pages)
        self._count += len(pages)
        return PageBatch(pages, b"".join(records), at, offsets if skip else None)

    def file_end(self) -> tuple[int, int]:
        """After the current file's last page record: its end record's crcs (of the pages found, of the pages
        made), unchecked: for a caller that applied the file's batches in parts and combines their crcs."""
        if self._tag != b"E" or self._path is None:
            raise DeltaError(f"{self.name}: the records of {self._path} end without their end record")
        old_crc, new_crc = _E.unpack(self._read(_E.size))
        self._path = None
        self._tag = self._read(1)
        return old_crc, new_crc

    def _end_file(self) -> None:
        check, path = self._check, self._path
        old_crc, new_crc = self.file_end()
        if check.applied == self._count:  # every page applied: the file's crcs are comparable
            if check.old_crc != old_crc:
                raise DeltaError(f"{path} is not the content its delta was made against (crc {check.old_crc:08x} "
                                 f"of the {self._count} pages it changes, the delta expects {old_crc:08x})")
            if check.new_crc != new_crc:
                raise wrong_pages(path)

    def seek_file(self, path: str) -> tuple[int, int]:
        """Skip to the record of `path` (records come in the order they were written); its sizes."""
        while (got := self.next_file()) is not None:
            if got[0] == path:
                return got[1], got[2]
        raise DeltaError(f"{self.name} holds no delta for {path}")
