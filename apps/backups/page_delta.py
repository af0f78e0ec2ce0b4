"""The page-delta artifact of an incremental (`pages.delta`): the changed 8 KiB pages of relation files, each
stored as the byte runs in which it differs from the parent's version of the same page. See docs/FORMAT.md 7.1.

A stream of records (integers little-endian):

    magic  b"BSPD1\\n"
    F      u8 'F', u16 path length, path (UTF-8), u64 parent size, u64 new size   -- a file; its pages follow
    P      u8 'P', u32 page number, u32 crc32 of the parent page, u32 crc32 of the new page,
           u16 run count n, u16 data length, n x (u16 bytes kept before the run, u16 run length),
           the new bytes of the runs one after the other
    Z      u8 'Z', u64 files, u64 pages                                            -- the end

The runs are where the pages differ, split at 9 or more equal bytes. A page at or past the parent's end is
compared with zeros; a file's pages come in ascending order. Applying a record to a page whose crc32 is not
the recorded parent's, or getting a page whose crc32 is not the new one's, is an error: the delta was made
against other content.
"""
import array
import binascii
import itertools
import re
import struct
import sys
from collections.abc import Iterator

PAGE = 8192
MAGIC = b"BSPD1\n"
NAME = "pages.delta"
ZERO_PAGE = bytes(PAGE)
_F = struct.Struct("<QQ")
_P = struct.Struct("<IIIHH")
_Z = struct.Struct("<QQ")
# The gaps between runs: 9 zero bytes or more (a shorter gap stays inside a run: a run costs 4 bytes of
# header). Splitting on the gaps (a literal prefix, C-level) is 3x faster than matching the runs.
_GAPS = re.compile(rb"(\x00{9,})")
_SWAP = sys.byteorder == "big"  # the u16 arrays are little-endian


class DeltaError(Exception):
    """A page-delta stream that is malformed, or that does not fit the content it is applied to."""


def crc(page: bytes) -> int:
    return binascii.crc32(page)


def file_record(path: str, parent_size: int, new_size: int) -> bytes:
    raw = path.encode()
    return b"F" + struct.pack("<H", len(raw)) + raw + _F.pack(parent_size, new_size)


def page_record(pageno: int, old: bytes, new: bytes, old_crc: int | None = None) -> bytes:
    """The record turning `old` (the parent's page) into `new` (which differ): the runs where they differ (the
    zero runs of their XOR are where they agree), with the new bytes."""
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
    return b"".join((b"P", _P.pack(pageno, crc(old) if old_crc is None else old_crc, crc(new), len(runs), len(data)),
                     header.tobytes(), data))


def end_record(files: int, pages: int) -> bytes:
    return b"Z" + _Z.pack(files, pages)


class Page:
    __slots__ = ("count", "new_crc", "number", "old_crc", "raw")

    def __init__(self, number: int, old_crc: int, new_crc: int, count: int, raw: bytes):
        self.number, self.old_crc, self.new_crc, self.count, self.raw = number, old_crc, new_crc, count, raw

    def apply(self, old: bytes, where: str) -> bytes:
        """The new page from the parent's `old`; DeltaError if either crc32 does not match, or the runs do not
        fit the page or their record."""
        if crc(old) != self.old_crc:
            raise DeltaError(f"page {self.number} of {where} is not the content its delta was made against "
                             f"(crc32 {crc(old):08x}, the delta expects {self.old_crc:08x})")
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
        if crc(new) != self.new_crc:
            raise DeltaError(f"page {self.number} of {where}: the delta does not give the page it recorded")
        return new


class _Buffered:
    """Exact reads from an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = bytearray()
        self._pos = 0

    def read(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise DeltaError("the page-delta stream ends early")
            if self._pos:
                del self._buf[:self._pos]
                self._pos = 0
            self._buf += chunk
        out = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return out


class Reader:
    """Records of a page-delta stream, in order: `next_file()` → (path, parent size, new size) or None at the
    end; `next_page()` → the file's next Page, or None after its last. Pages left unread are skipped."""

    def __init__(self, chunks: Iterator[bytes], name: str = NAME):
        self.name = name
        self._in = _Buffered(iter(chunks))
        if self._in.read(len(MAGIC)) != MAGIC:
            raise DeltaError(f"{name} is not a page-delta stream")
        self._tag = self._in.read(1)
        self.files = self.pages = 0
        self.ended = False

    def next_file(self) -> tuple[str, int, int] | None:
        while self._tag == b"P":
            self.next_page()
        if self._tag == b"Z":
            files, pages = _Z.unpack(self._in.read(_Z.size))
            if (files, pages) != (self.files, self.pages):
                raise DeltaError(f"{self.name} ends with {files} files and {pages} pages, but holds "
                                 f"{self.files} and {self.pages}")
            self.ended = True
            return None
        if self._tag != b"F":
            raise DeltaError(f"{self.name}: unknown record {self._tag!r}")
        (length,) = struct.unpack("<H", self._in.read(2))
        path = self._in.read(length).decode()
        parent_size, new_size = _F.unpack(self._in.read(_F.size))
        self.files += 1
        self._tag = self._in.read(1)
        return path, parent_size, new_size

    def peek_page(self) -> bool:
        return self._tag == b"P"

    def next_page(self) -> Page | None:
        if self._tag != b"P":
            return None
        number, old_crc, new_crc, count, length = _P.unpack(self._in.read(_P.size))
        raw = self._in.read(4 * count + length + 1)  # the runs' header and bytes, and the next record's tag
        self.pages += 1
        self._tag = raw[-1:]
        return Page(number, old_crc, new_crc, count, raw[:-1])

    def seek_file(self, path: str) -> tuple[int, int]:
        """Skip to the record of `path` (records come in the order they were written); its sizes."""
        while (got := self.next_file()) is not None:
            if got[0] == path:
                return got[1], got[2]
        raise DeltaError(f"{self.name} holds no delta for {path}")
