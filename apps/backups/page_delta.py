"""The page-delta artifact of an incremental (`pages.delta`): the changed 8 KiB pages of relation files, each
stored as the non-zero runs of its XOR with the parent's version of the same page. See docs/FORMAT.md 7.1.

A stream of records (integers little-endian):

    magic  b"BSPD1\\n"
    F      u8 'F', u16 path length, path (UTF-8), u64 parent size, u64 new size   -- a file; its pages follow
    P      u8 'P', u32 page number, u32 crc32 of the parent page, u32 crc32 of the new page,
           u16 run count, runs: (u16 offset, u16 length, bytes)                    -- the XOR, non-zero runs
    Z      u8 'Z', u64 files, u64 pages                                            -- the end

A page at or past the parent's end is XORed against zeros; a file's pages come in ascending order. Applying
a record to a page whose crc32 is not the recorded parent's, or getting a page whose crc32 is not the new
one's, is an error: the delta was made against other content.
"""
import re
import struct
import zlib
from collections.abc import Iterator

PAGE = 8192
MAGIC = b"BSPD1\n"
NAME = "pages.delta"
ZERO_PAGE = bytes(PAGE)
_F = struct.Struct("<QQ")
_P = struct.Struct("<IIIH")
_RUN = struct.Struct("<HH")
_Z = struct.Struct("<QQ")
# Non-zero runs of the XOR; gaps of up to 8 zero bytes are kept inside a run (a run costs 4 bytes of header).
_RUNS = re.compile(rb"[^\x00]+(?:\x00{1,8}[^\x00]+)*")


class DeltaError(Exception):
    """A page-delta stream that is malformed, or that does not fit the content it is applied to."""


def crc(page: bytes) -> int:
    return zlib.crc32(page)


def file_record(path: str, parent_size: int, new_size: int) -> bytes:
    raw = path.encode()
    return b"F" + struct.pack("<H", len(raw)) + raw + _F.pack(parent_size, new_size)


def page_record(pageno: int, old: bytes, new: bytes, old_crc: int | None = None) -> bytes:
    """The record turning `old` (the parent's page) into `new`."""
    x = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(PAGE, "little")
    runs = [(m.start(), m.group()) for m in _RUNS.finditer(x)]
    out = [b"P", _P.pack(pageno, crc(old) if old_crc is None else old_crc, crc(new), len(runs))]
    for offset, data in runs:
        out.append(_RUN.pack(offset, len(data)))
        out.append(data)
    return b"".join(out)


def end_record(files: int, pages: int) -> bytes:
    return b"Z" + _Z.pack(files, pages)


class Page:
    __slots__ = ("number", "old_crc", "new_crc", "runs")

    def __init__(self, number: int, old_crc: int, new_crc: int, runs: list[tuple[int, bytes]]):
        self.number, self.old_crc, self.new_crc, self.runs = number, old_crc, new_crc, runs

    def apply(self, old: bytes, where: str) -> bytes:
        """The new page from the parent's `old`; DeltaError if either crc32 does not match."""
        if crc(old) != self.old_crc:
            raise DeltaError(f"page {self.number} of {where} is not the content its delta was made against "
                             f"(crc32 {crc(old):08x}, the delta expects {self.old_crc:08x})")
        x = bytearray(PAGE)
        for offset, data in self.runs:
            x[offset:offset + len(data)] = data
        new = (int.from_bytes(old, "little") ^ int.from_bytes(x, "little")).to_bytes(PAGE, "little")
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
        number, old_crc, new_crc, count = _P.unpack(self._in.read(_P.size))
        runs = []
        for _ in range(count):
            offset, length = _RUN.unpack(self._in.read(_RUN.size))
            if offset + length > PAGE:
                raise DeltaError(f"{self.name}: a run past the end of page {number}")
            runs.append((offset, self._in.read(length)))
        self.pages += 1
        self._tag = self._in.read(1)
        return Page(number, old_crc, new_crc, runs)

    def seek_file(self, path: str) -> tuple[int, int]:
        """Skip to the record of `path` (records come in the order they were written); its sizes."""
        while (got := self.next_file()) is not None:
            if got[0] == path:
                return got[1], got[2]
        raise DeltaError(f"{self.name} holds no delta for {path}")
