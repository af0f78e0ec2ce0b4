"""Per-table row counts taken from a pg_dump stream as it passes through.

Counting rows in the dump itself replaces a `SELECT count(*)` of every table
in pg_dump's snapshot (a second full scan of the database). Feed every raw
chunk of pg_dump's stdout, in order, to `feed()`; after the last one,
`result()` gives ``{"schema.table": rows}`` for every table whose data is in
the dump (empty tables included), or None when the stream was not understood
or was incomplete, so the caller can fall back to SQL counts. `feed()` never
raises: a parse error only makes `result()` None (logged at debug level).

Both counters work in constant memory and touch the COPY data only with
`bytes.count` / `bytes.find` over slices of the chunks they are given: no
copies of large data, no Python work per row of text. The one exception is
inherent to the custom format: pg_dump frames the data of a table as
length-prefixed blocks and, with --compress=0, writes one block per row, so
its framing has to be walked block by block (a few hundred nanoseconds each).

Layouts follow the PostgreSQL sources (src/bin/pg_dump): WriteHead/ReadHead,
WriteToc/ReadToc, WriteInt/ReadInt, WriteStr/ReadStr, WriteOffset/ReadOffset in
pg_backup_archiver.c; _StartData/_EndData, _StartBlobs/_StartBlob/_EndBlob/
_EndBlobs (later _StartLOs...), _WriteExtraToc and _CustomWriteFunc in
pg_backup_custom.c; dumpTableData_copy in pg_dump.c, which in PostgreSQL 15
ends each table's COPY data with "\\.\\n\\n\\n" (in the archive too, as its own
frame). Archive versions 1.13, 1.14 (PostgreSQL 12-15) and 1.15 (16) are read;
others give None.
"""
from __future__ import annotations

import codecs
import logging
import re
import struct

log = logging.getLogger(__name__)

__all__ = ["RowCounter", "CustomFormatCounter", "PlainFormatCounter", "counter_for"]

LINE_CAP = 1 << 20  # longest SQL line (outside COPY data) held to look at it whole
STRING_CAP = 1 << 24  # longest TOC string kept (names, COPY statements, ENCODING)


class _Unreadable(Exception):
    """The stream is not what we can count: result() becomes None."""


class RowCounter:
    """Base: feed() every chunk in order, then result()."""

    def __init__(self) -> None:
        self._failed: str | None = None
        self._counts: dict[str, int] = {}
        self._encoding = "utf-8"

    def feed(self, chunk: bytes) -> None:
        if self._failed is not None or not chunk:
            return
        try:
            self._feed(chunk)
        except Exception as exc:  # never let the counter break the dump it watches
            self._fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, _Unreadable) else str(exc))

    def result(self) -> dict[str, int] | None:
        if self._failed is not None:
            return None
        try:
            problem = self._incomplete()
        except Exception as exc:  # pragma: no cover - defensive
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            self._fail(problem)
            return None
        return dict(self._counts)

    # -- for subclasses ------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _incomplete(self) -> str | None:
        """Why the stream seen so far is not a complete dump, or None when it is."""
        raise NotImplementedError

    def _fail(self, reason: str) -> None:
        if self._failed is None:
            self._failed = reason
            log.debug("%s: cannot count rows from the dump stream: %s", type(self).__name__, reason)

    def _record(self, key: bytes | str, rows: int) -> None:
        name = key if isinstance(key, str) else key.decode(self._encoding, "surrogateescape")
        if name in self._counts:
            raise _Unreadable(f"data for {name!r} appears twice")
        self._counts[name] = rows

    def _set_encoding(self, pg_name: str) -> None:
        self._encoding = _python_codec(pg_name)


def counter_for(fmt: str) -> RowCounter | None:
    """The counter for one of logical.FORMATS, or None when that format holds no table data."""
    if fmt == "custom":
        return CustomFormatCounter()
    if fmt in ("plain", "data"):
        return PlainFormatCounter()
    return None


def _python_codec(pg_name: str) -> str:
    """Python codec for a PostgreSQL encoding name (names are decoded with it; UTF-8 when unknown)."""
    name = pg_name.strip().upper().replace("-", "_")
    special = {
        "UTF8": "utf-8", "SQL_ASCII": "ascii", "LATIN1": "latin-1", "LATIN2": "iso8859-2",
        "LATIN3": "iso8859-3", "LATIN4": "iso8859-4", "LATIN5": "iso8859-9", "LATIN6": "iso8859-10",
        "LATIN7": "iso8859-13", "LATIN8": "iso8859-14", "LATIN9": "iso8859-15", "LATIN10": "iso8859-16",
        "WIN866": "cp866", "WIN874": "cp874", "KOI8R": "koi8-r", "KOI8U": "koi8-u", "SJIS": "shift_jis",
        "EUC_JIS_2004": "euc_jis_2004", "SHIFT_JIS_2004": "shift_jis_2004", "UHC": "cp949",
        "JOHAB": "johab", "GB18030": "gb18030", "GBK": "gbk", "BIG5": "big5", "EUC_JP": "euc_jp",
        "EUC_KR": "euc_kr", "EUC_CN": "gb2312",
    }
    candidate = special.get(name)
    if candidate is None and name.startswith("WIN"):
        candidate = "cp" + name[3:]
    if candidate is None and name.startswith("ISO_8859_"):
        candidate = "iso8859-" + name[9:]
    try:
        return codecs.lookup(candidate or name.lower()).name
    except LookupError:
        return "utf-8"


# ---------------------------------------------------------------------------
# Custom format (pg_dump --format=custom --compress=0)
# ---------------------------------------------------------------------------

K_VERS_1_13, K_VERS_1_14, K_VERS_1_15 = (1, 13), (1, 14), (1, 15)
SUPPORTED_VERSIONS = {K_VERS_1_13, K_VERS_1_14, K_VERS_1_15}
ARCH_CUSTOM = 1  # ArchiveFormat archCustom
BLK_DATA, BLK_BLOBS = 1, 3
PG_COMPRESSION_NONE = 0

# States of the data section (after the TOC).
_BLOCK_TYPE, _BLOCK_ID, _FRAME_LEN, _FRAME_DATA, _LO_OID, _LO_FRAME_LEN, _LO_FRAME_DATA = range(7)

# The end of a table's COPY data in a custom archive: the "\\.\n\n\n" frame's payload, then length 0.
_COPY_TERMINATOR = b"\\.\n\n\n\x00\x00\x00\x00\x00"
# A row end, a sign byte, and a newline byte within the following 4-byte length field.
_ODD_HEADER = re.compile(rb"\n\x00(?=[^\n]{0,3}\n)")

# Frame lengths below 65536 whose 4-byte little-endian form holds a newline byte.
_NL_IN_LEN16 = bytes(1 if 10 in (n & 0xFF, n >> 8) else 0 for n in range(65536))


class CustomFormatCounter(RowCounter):
    """Counts the newline-terminated COPY rows in each TABLE DATA block of a custom-format archive.

    Header and TOC are parsed by a generator that asks for bytes; the data
    section by a small state machine whose hot loop walks complete frames
    ((sign byte, intSize-byte length) + payload) with struct and counts the
    newlines of a run of frames with one bytes.count, minus the rare newline
    bytes inside length fields. COPY text escapes newlines inside values, so
    every raw newline in the data ends a row.
    """

    def __init__(self) -> None:
        super().__init__()
        self._int_size = 4
        self._in_toc = True
        self._parser = self._parse_head_and_toc()
        self._want: int = next(self._parser)  # > 0: read that many bytes; < 0: skip that many
        self._acc = bytearray()
        # TOC facts we keep: dumpId -> "schema.table" of TABLE DATA entries, dumpIds of BLOBS entries.
        self._tables: dict[int, bytes] = {}
        self._blobs: set[int] = set()
        self._seen: set[int] = set()
        # Data section.
        self._state = _BLOCK_TYPE
        self._pending = bytearray()  # a block type byte or integer split across chunks
        self._block_type = 0
        self._current = 0  # dumpId of the block being read
        self._rows = 0  # newlines so far in the current TABLE DATA block
        self._remaining = 0  # payload bytes left in the current frame
        self._last_len = -1  # payload length of the last complete frame of this block (-1: none yet)
        self._last_tail = b""  # its last bytes (up to 8)
        self._frame_len = 0
        self._frame_tail = b""

    # -- stream driving ------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        pos = 0
        if self._in_toc:
            pos = self._feed_toc(chunk)
            if self._in_toc:
                return
        self._feed_data(chunk, pos)

    def _incomplete(self) -> str | None:
        if self._in_toc:
            return "the stream ended inside the archive header or TOC"
        if self._state != _BLOCK_TYPE or self._pending:
            return "the stream ended inside a data block"
        missing = set(self._tables) - self._seen
        if missing:
            return f"the stream ended before the data of {len(missing)} table(s)"
        return None

    def _feed_toc(self, buf: bytes) -> int:
        pos, end = 0, len(buf)
        acc = self._acc
        while pos < end:
            want = self._want
            if want < 0:
                step = min(-want, end - pos)
                pos += step
                if step < -want:
                    self._want = want + step
                    return pos
                value = None
            else:
                step = min(want - len(acc), end - pos)
                acc += buf[pos:pos + step]
                pos += step
                if len(acc) < want:
                    return pos
                value = bytes(acc)
                acc.clear()
            try:
                self._want = self._parser.send(value)
            except StopIteration:
                self._in_toc = False
                return pos
        return pos

    # -- header and TOC ------------------------------------------------------

    def _int(self):
        raw = yield 1 + self._int_size
        sign = raw[0]
        if sign not in (0, 1):
            raise _Unreadable(f"bad integer sign byte {sign}")
        value = int.from_bytes(raw[1:], "little")
        return -value if sign else value

    def _string(self, keep: bool):
        """A TOC string: None for NULL; bytes when keep, else skipped (b"")."""
        length = yield from self._int()
        if length == -1:
            return None
        if length < 0:
            raise _Unreadable(f"bad string length {length}")
        if length == 0:
            return b""
        if not keep:
            yield -length
            return b""
        if length > STRING_CAP:
            raise _Unreadable(f"TOC string of {length} bytes")
        return (yield length)

    def _parse_head_and_toc(self):
        # ReadHead
        if (yield 5) != b"PGDMP":
            raise _Unreadable("not a custom-format archive (no PGDMP magic)")
        vmaj, vmin, vrev = (yield 3)
        version = (vmaj, vmin)
        if version not in SUPPORTED_VERSIONS:
            raise _Unreadable(f"unsupported archive version {vmaj}.{vmin}.{vrev}")
        int_size, off_size, fmt = (yield 3)
        if int_size not in (4, 8) or not 1 <= off_size <= 16:
            raise _Unreadable(f"unsupported integer/offset sizes {int_size}/{off_size}")
        if fmt != ARCH_CUSTOM:
            raise _Unreadable(f"archive format {fmt} is not custom")
        self._int_size = int_size
        self._frame = struct.Struct("<BI" if int_size == 4 else "<BQ")
        if version >= K_VERS_1_15:
            algorithm = (yield 1)[0]  # compression_spec.algorithm
            if algorithm != PG_COMPRESSION_NONE:
                raise _Unreadable(f"compressed archive (algorithm {algorithm})")
        else:
            level = yield from self._int()  # compression level
            if level != 0:
                raise _Unreadable(f"compressed archive (level {level})")
        for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
            yield from self._int()
        for _ in range(3):  # database name, server version, pg_dump version
            yield from self._string(keep=False)

        # ReadToc
        count = yield from self._int()
        if count < 0:
            raise _Unreadable(f"bad TOC entry count {count}")
        for _ in range(count):
            dump_id = yield from self._int()
            if dump_id <= 0:
                raise _Unreadable(f"bad TOC entry id {dump_id}")
            yield from self._int()  # hadDumper
            yield from self._string(keep=False)  # catalogId.tableoid
            yield from self._string(keep=False)  # catalogId.oid
            tag = yield from self._string(keep=True)
            desc = yield from self._string(keep=True)
            yield from self._int()  # section
            defn = yield from self._string(keep=desc == b"ENCODING")
            yield from self._string(keep=False)  # dropStmt
            copy_stmt = yield from self._string(keep=desc == b"TABLE DATA")
            namespace = yield from self._string(keep=True)
            yield from self._string(keep=False)  # tablespace
            if version >= K_VERS_1_14:
                yield from self._string(keep=False)  # tableam
            yield from self._string(keep=False)  # owner
            yield from self._string(keep=False)  # withOids ("false")
            while (yield from self._string(keep=False)) is not None:  # dependencies, NULL-terminated
                pass
            yield -(1 + off_size)  # _ReadExtraToc: ReadOffset = flag byte + offSize bytes

            if desc == b"ENCODING" and defn:
                match = re.search(rb"'([^']*)'", defn)
                if match:
                    self._set_encoding(match.group(1).decode("ascii", "replace"))
            elif desc == b"TABLE DATA":
                if not (copy_stmt or b"").startswith(b"COPY "):
                    raise _Unreadable(f"TABLE DATA of {tag!r} is not COPY data (dumped with --inserts?)")
                if tag is None or namespace is None:
                    raise _Unreadable("TABLE DATA entry without a name or schema")
                self._tables[dump_id] = namespace + b"." + tag
            elif desc == b"BLOBS":
                self._blobs.add(dump_id)

    # -- data blocks ---------------------------------------------------------

    def _feed_data(self, buf: bytes, pos: int) -> None:
        end = len(buf)
        head = 1 + self._int_size
        while pos < end:
            state = self._state
            if state == _FRAME_DATA or state == _LO_FRAME_DATA:
                step = min(self._remaining, end - pos)
                if state == _FRAME_DATA:
                    self._rows += buf.count(b"\n", pos, pos + step)
                    self._frame_tail = (self._frame_tail + buf[max(pos, pos + step - 8):pos + step])[-8:]
                pos += step
                self._remaining -= step
                if self._remaining == 0:
                    if state == _FRAME_DATA:
                        self._last_len, self._last_tail = self._frame_len, self._frame_tail
                        self._state = _FRAME_LEN
                    else:
                        self._state = _LO_FRAME_LEN
                continue
            if state == _FRAME_LEN and not self._pending and end - pos >= head:
                pos = self._bulk_frames(buf, pos)
                if end - pos >= head:
                    pos = self._frames(buf, pos)
                continue
            # Slow path: a block type byte or an integer, possibly split across chunks.
            size = 1 if state == _BLOCK_TYPE else head
            step = min(size - len(self._pending), end - pos)
            self._pending += buf[pos:pos + step]
            pos += step
            if len(self._pending) < size:
                return
            raw = bytes(self._pending)
            self._pending.clear()
            if state == _BLOCK_TYPE:
                self._start_block(raw[0])
            else:
                if raw[0] not in (0, 1):
                    raise _Unreadable(f"bad integer sign byte {raw[0]}")
                value = int.from_bytes(raw[1:], "little")
                self._integer(-value if raw[0] else value)

    def _start_block(self, block_type: int) -> None:
        if block_type not in (BLK_DATA, BLK_BLOBS):
            raise _Unreadable(f"unknown data block type {block_type}")
        self._block_type = block_type
        self._state = _BLOCK_ID

    def _integer(self, value: int) -> None:
        state = self._state
        if state == _BLOCK_ID:
            if value in self._seen:
                raise _Unreadable(f"second data block for entry {value}")
            if self._block_type == BLK_DATA:
                if value not in self._tables:
                    raise _Unreadable(f"data block for unknown TABLE DATA entry {value}")
                self._rows, self._last_len, self._last_tail = 0, -1, b""
                self._state = _FRAME_LEN
            else:
                if value not in self._blobs:
                    raise _Unreadable(f"large-object block for unknown BLOBS entry {value}")
                self._state = _LO_OID
            self._seen.add(value)
            self._current = value
        elif state == _FRAME_LEN:
            if value < 0:
                raise _Unreadable(f"bad data length {value}")
            if value == 0:
                self._end_block()
            else:
                self._remaining, self._frame_len, self._frame_tail = value, value, b""
                self._state = _FRAME_DATA
        elif state == _LO_OID:
            self._state = _BLOCK_TYPE if value == 0 else _LO_FRAME_LEN
        elif state == _LO_FRAME_LEN:
            if value < 0:
                raise _Unreadable(f"bad large-object data length {value}")
            if value == 0:
                self._state = _LO_OID
            else:
                self._remaining = value
                self._state = _LO_FRAME_DATA

    def _bulk_frames(self, buf: bytes, pos: int) -> int:
        """Count the rows of many frames at once, without stepping through them; return a frame boundary.

        Every frame is a 0x00 sign byte, a 4-byte length and a row ending in its only
        newline; rows hold no NUL bytes. So every newline in a run of frames ends a row,
        except newline bytes inside length fields, and those can only follow a row-end
        newline and the sign byte ("\n\x00" then 0-3 bytes then "\n"): a regex finds these
        rare headers in C. The run stops before the block's end-of-data frame, or at a
        row end that cannot be inside a length field; the frame walker does the rest.
        """
        if self._int_size != 4 or self._block_type != BLK_DATA or buf[pos:pos + 5] == b"\x00\x00\x00\x00\x00":
            return pos  # (the block's zero length, i.e. its end, is the walker's business)
        end = len(buf)
        term = buf.find(_COPY_TERMINATOR, pos)
        if term >= 0:
            cut = term - 5  # the header of the "\\.\n\n\n" frame
            if cut < pos + 6 or buf[cut - 1] != 10 or buf[cut:term] != b"\x00\x05\x00\x00\x00":
                return pos
        else:
            q = buf.rfind(b"\n\x00", pos + 5, end - 6)
            # A "\n\x00" with no newline 2-5 bytes before it cannot sit inside a length field.
            while q >= pos + 5 and buf.find(b"\n", q - 5, q - 1) >= 0:
                q = buf.rfind(b"\n\x00", pos + 5, q)
            if q < pos + 5:
                return pos
            cut = q + 1
        internal = buf.count(b"\n", pos + 1, pos + 5)  # in the length field of the first frame
        inside_until = pos + 4
        for match in _ODD_HEADER.finditer(buf, pos + 5, cut):
            anchor = match.start()
            if anchor <= inside_until:  # itself a pair of bytes inside the previous length field
                continue
            internal += buf.count(b"\n", anchor + 2, anchor + 6)
            inside_until = anchor + 5
        self._rows += buf.count(b"\n", pos, cut) - internal
        self._last_len, self._last_tail = -2, buf[max(pos, cut - 8):cut]
        return cut

    def _frames(self, buf: bytes, pos: int) -> int:
        """Walk the complete frames of a TABLE DATA block from pos (a frame header); return where it stopped."""
        end = len(buf)
        head = 1 + self._int_size
        unpack = self._frame.unpack_from
        nl_in_len = _NL_IN_LEN16
        start = pos
        last = -1
        odd = []  # headers whose length field may hold newline bytes
        limit = end - head
        while pos <= limit:
            sign, length = unpack(buf, pos)
            if sign or length == 0:
                break
            if length >= 65536 or nl_in_len[length]:
                odd.append(pos)
            nxt = pos + head + length
            if nxt > end:
                break
            last = pos
            pos = nxt
        if pos > start:
            rows = buf.count(b"\n", start, pos)
            for header in odd:
                if header < pos:
                    rows -= buf.count(b"\n", header + 1, header + head)
            self._rows += rows
            self._last_len = pos - last - head
            self._last_tail = buf[max(last + head, pos - 8):pos]
        if pos <= limit:
            sign, length = unpack(buf, pos)
            pos += head
            if sign:
                raise _Unreadable(f"bad data length -{length}")
            if length == 0:
                self._end_block()
            else:  # a frame that continues in the next chunk
                self._remaining, self._frame_len, self._frame_tail = length, length, b""
                self._state = _FRAME_DATA
        return pos

    def _end_block(self) -> None:
        rows = self._rows
        tail = self._last_tail
        # dumpTableData_copy ends the data with "\.\n\n\n" (written as its own frame): not rows.
        stripped = tail.rstrip(b"\n")
        trailing = len(tail) - len(stripped)
        if trailing and stripped.endswith(b"\\.") and (
            self._last_len == len(tail) == trailing + 2 or stripped.endswith(b"\n\\.")
        ):
            rows -= trailing
        elif self._last_len > 0 and not tail.endswith(b"\n"):
            raise _Unreadable(f"COPY data of entry {self._current} does not end with a newline")
        self._record(self._tables[self._current], rows)
        self._state = _BLOCK_TYPE


# ---------------------------------------------------------------------------
# Plain format (pg_dump --format=plain, with or without --data-only)
# ---------------------------------------------------------------------------

TEXT_DUMP_HEADER = b"--\n-- PostgreSQL database dump\n--\n"
DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
DATA_HEADER = b"-- Data for Name: "
COPY_END = b" FROM stdin;"

# Lexer states for the SQL between COPY blocks.
_TOP, _QUOTE, _EQUOTE, _IDENT, _DOLLAR, _BLOCK_COMMENT, _TO_EOL = range(7)

_TOKEN = re.compile(
    rb"""(?P<nl>\n)
    |(?P<ws>[ \t\r\f\v]+)
    |(?P<lc>--)
    |(?P<bc>/\*)
    |(?P<eq>[Ee]')
    |(?P<q>')
    |(?P<dq>")
    |(?P<dol>\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)
    |(?P<semi>;)
    |(?P<meta>\\)
    |(?P<word>[A-Za-z0-9_\x80-\xff$]+)
    |(?P<other>.)""",
    re.X | re.S,
)
_EQUOTE_STOP = re.compile(rb"['\\]")
_COMMENT_MARK = re.compile(rb"/\*|\*/")
_UNQUOTED = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_SET_ENCODING = re.compile(rb"SET client_encoding = '([^']*)';")


def _parse_qualified_name(line: bytes, pos: int) -> tuple[list[bytes], int]:
    """Identifiers of a dotted name starting at pos (quoted ones unescaped, unquoted ones folded)."""
    parts = []
    while True:
        if line[pos:pos + 1] == b'"':
            out = bytearray()
            pos += 1
            while True:
                close = line.find(b'"', pos)
                if close < 0:
                    raise _Unreadable("unterminated quoted identifier")
                out += line[pos:close]
                if line[close + 1:close + 2] == b'"':
                    out += b'"'
                    pos = close + 2
                else:
                    pos = close + 1
                    break
            parts.append(bytes(out))
        else:
            match = _UNQUOTED.match(line, pos)
            if not match:
                raise _Unreadable("bad identifier")
            parts.append(match.group().translate(_ASCII_LOWER))
            pos = match.end()
        if line[pos:pos + 1] != b".":
            return parts, pos
        pos += 1


_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def parse_copy_line(line: bytes) -> bytes | None:
    """b"schema.table" for pg_dump's `COPY schema.table (cols) FROM stdin;` line (without newline), else None."""
    if not line.startswith(b"COPY ") or not line.endswith(COPY_END):
        return None
    try:
        parts, pos = _parse_qualified_name(line, 5)
    except _Unreadable:
        return None
    rest = line[pos:]
    # "COPY %s %s FROM stdin;" with an empty column list for a table without columns.
    if rest != b"  FROM stdin;" and not (rest.startswith(b" (") and rest.endswith(b")" + COPY_END)):
        return None
    if len(parts) != 2:
        return None
    return parts[0] + b"." + parts[1]


class PlainFormatCounter(RowCounter):
    """Counts the lines between each `COPY ... FROM stdin;` line and its `\\.` terminator.

    COPY data is scanned with bytes.find / bytes.count only. The SQL around it
    is lexed (quotes, dollar quotes, comments, statement boundaries) so that a
    COPY-looking line inside a string, a function body or a comment is not
    taken for data; only the current, unfinished line is ever held (at most
    LINE_CAP bytes: a longer line is not a COPY line).
    """

    def __init__(self) -> None:
        super().__init__()
        self._head = b""  # first bytes, to check pg_dump's header
        self._complete = False  # saw "-- PostgreSQL database dump complete"
        self._data_headers = 0  # "-- Data for Name: ...; Type: TABLE DATA; ..." comments seen
        self._copies = 0  # COPY statements seen
        self._in_copy = False
        # COPY data state.
        self._key = b""
        self._rows = 0
        self._data_line_start = True
        self._maybe_end = b""  # b"\\" or b"\\." at the start of a data line, split across chunks
        # SQL state.
        self._carry = b""  # unconsumed SQL (an unfinished line or token)
        self._lex = _TOP
        self._dollar_tag = b""
        self._depth = 0
        self._stmt_start = True
        self._line_start = True
        self._long_line = False  # the current line went past LINE_CAP: not a COPY line

    def _incomplete(self) -> str | None:
        if len(self._head) < len(TEXT_DUMP_HEADER):
            return "too short for a pg_dump plain-format dump"
        if self._in_copy:
            return "the stream ended inside COPY data"
        if not self._complete:
            return "no 'dump complete' line: the dump is truncated"
        if self._data_headers > self._copies:
            return "table data that is not COPY data (dumped with --inserts?)"
        return None

    def _feed(self, buf: bytes) -> None:
        if len(self._head) < len(TEXT_DUMP_HEADER):
            self._head += buf[:len(TEXT_DUMP_HEADER) - len(self._head)]
            if not TEXT_DUMP_HEADER.startswith(self._head):
                raise _Unreadable("not a pg_dump plain-format dump (header)")
        pos, end = 0, len(buf)
        while pos < end:
            if self._in_copy:
                pos = self._copy_data(buf, pos, end)
            elif self._carry:
                pos = self._finish_carry(buf, pos, end)
            else:
                stop = self._sql(buf, pos, end, more=True)
                if self._in_copy or stop == end:
                    pos = stop
                elif end - stop <= LINE_CAP:
                    self._keep(buf[stop:end])  # an unfinished line or token: wait for the next chunk
                    return
                elif self._lex == _TOP and self._line_start and not self._long_line:
                    self._long_line = True  # held to look at a whole line, but too long for COPY
                    pos = stop
                else:
                    raise _Unreadable("an SQL token longer than LINE_CAP")

    # -- COPY data -----------------------------------------------------------

    def _copy_data(self, buf: bytes, pos: int, end: int) -> int:
        if self._maybe_end:  # "\" or "\." began a line at the end of the last chunk
            need = b"\\.\n"[len(self._maybe_end):]
            got = buf[pos:pos + len(need)]
            if need.startswith(got):
                if len(got) == len(need):
                    return self._end_copy(pos + len(need))
                self._maybe_end += got
                return end
            self._maybe_end = b""
            self._data_line_start = False
        if self._data_line_start:
            if buf.startswith(b"\\.\n", pos):
                return self._end_copy(pos + 3)
            if end - pos < 3 and b"\\.\n".startswith(buf[pos:end]):
                self._maybe_end = buf[pos:end]
                return end
        found = buf.find(b"\n\\.\n", pos, end)
        if found >= 0:
            self._rows += buf.count(b"\n", pos, found + 1)
            return self._end_copy(found + 4)
        self._rows += buf.count(b"\n", pos, end)
        if buf.endswith(b"\n\\.", pos, end):
            self._maybe_end = b"\\."
        elif buf.endswith(b"\n\\", pos, end):
            self._maybe_end = b"\\"
        else:
            self._data_line_start = buf.endswith(b"\n", pos, end)
        return end

    def _end_copy(self, pos: int) -> int:
        self._record(self._key, self._rows)
        self._in_copy = False
        self._maybe_end = b""
        self._stmt_start = self._line_start = True
        self._lex = _TOP
        return pos

    # -- SQL -----------------------------------------------------------------

    def _keep(self, rest: bytes) -> None:
        if len(rest) > LINE_CAP:
            raise _Unreadable("lexer kept too much")  # never expected: lines are capped below
        self._carry = rest

    def _finish_carry(self, buf: bytes, pos: int, end: int) -> int:
        """Complete the carried, unfinished line with this chunk (up to its next newline) and lex it."""
        newline = buf.find(b"\n", pos, end)
        upto = end if newline < 0 else newline + 1
        upto = min(upto, pos + max(LINE_CAP - len(self._carry), 0) + 1)
        data = self._carry + buf[pos:upto]
        self._carry = b""
        more = not data.endswith(b"\n")
        if more and len(data) > LINE_CAP:
            self._long_line = True  # too long for a COPY line: lex it as ordinary SQL
        stop = self._sql(data, 0, len(data), more=more)
        if self._in_copy:
            if stop < len(data):  # not expected: the COPY line ends with the newline appended last
                self._copy_data(data, stop, len(data))
            return upto
        if stop < len(data):
            self._keep(data[stop:])
        return upto

    def _sql(self, data: bytes, pos: int, end: int, more: bool) -> int:
        """Lex SQL from pos; return where it stopped: end, an unfinished token or line (when more
        input may follow), or the first byte of COPY data (then self._in_copy is set)."""
        while pos < end:
            lex = self._lex
            if lex == _TOP:
                if self._line_start and not self._long_line:
                    stop = self._line_checks(data, pos, end, more)
                    if stop is not None:
                        return stop
                match = _TOKEN.match(data, pos, end)
                kind = match.lastgroup
                if more and match.end() == end and (
                    kind == "word" or (kind == "other" and match.group() in (b"-", b"/"))
                ):
                    return pos  # may go on in the next chunk ("-" + "-", "E" + "'", "$tag" + "$", ...)
                pos = match.end()
                if kind == "nl":
                    self._line_start = True
                    self._long_line = False
                    continue
                self._line_start = False
                if kind == "ws":
                    continue
                if kind == "lc" or kind == "meta":  # -- comment, psql meta-command (\restrict, \connect)
                    self._lex = _TO_EOL
                elif kind == "bc":
                    self._lex, self._depth = _BLOCK_COMMENT, 1
                elif kind == "semi":
                    self._stmt_start = True
                else:
                    self._stmt_start = False
                    if kind == "q":
                        self._lex = _QUOTE
                    elif kind == "eq":
                        self._lex = _EQUOTE
                    elif kind == "dq":
                        self._lex = _IDENT
                    elif kind == "dol":
                        self._lex, self._dollar_tag = _DOLLAR, match.group()
            elif lex == _TO_EOL:
                newline = data.find(b"\n", pos, end)
                if newline < 0:
                    return end
                pos = newline
                self._lex = _TOP
            elif lex == _QUOTE or lex == _IDENT:
                quote = b"'" if lex == _QUOTE else b'"'
                close = data.find(quote, pos, end)
                if close < 0:
                    return end
                if close + 1 == end:
                    if more:
                        return close  # a doubled quote may be split across chunks
                    pos, self._lex = end, _TOP
                elif data[close + 1:close + 2] == quote:
                    pos = close + 2
                else:
                    pos, self._lex = close + 1, _TOP
            elif lex == _EQUOTE:
                match = _EQUOTE_STOP.search(data, pos, end)
                if match is None:
                    return end
                at = match.start()
                if at + 1 == end and more:
                    return at
                if data[at] == 0x5C:  # backslash escapes the next byte
                    pos = at + 2
                elif data[at + 1:at + 2] == b"'":
                    pos = at + 2
                else:
                    pos, self._lex = at + 1, _TOP
            elif lex == _DOLLAR:
                tag = self._dollar_tag
                close = data.find(tag, pos, end)
                if close < 0:
                    return max(pos, end - len(tag) + 1) if more else end
                pos, self._lex = close + len(tag), _TOP
            else:  # _BLOCK_COMMENT (they nest)
                match = _COMMENT_MARK.search(data, pos, end)
                if match is None:
                    return end - 1 if more and data[end - 1:end] in (b"/", b"*") else end
                pos = match.end()
                self._depth += 1 if match.group() == b"/*" else -1
                if self._depth == 0:
                    self._lex = _TOP
        return end

    def _line_checks(self, data: bytes, pos: int, end: int, more: bool) -> int | None:
        """At the start of a line outside any quote: COPY, client encoding, the completion comment.
        Returns a position to stop at (the line is not complete yet), or None to go on lexing."""
        first = data[pos:pos + 1]
        if first == b"-":
            prefix = b"-- "
        elif self._stmt_start and first == b"C":
            prefix = b"COPY "
        elif self._stmt_start and first == b"S":
            prefix = b"SET client_encoding = "
        else:
            return None
        if not data.startswith(prefix, pos, end):
            if more and end - pos < len(prefix) and prefix.startswith(data[pos:end]):
                return pos
            return None
        newline = data.find(b"\n", pos, end)
        if newline < 0:
            return pos if more else None
        line = data[pos:newline]
        if first == b"-":
            if line == DUMP_COMPLETE:
                self._complete = True
            elif line.startswith(DATA_HEADER) and b"; Type: TABLE DATA; " in line:
                self._data_headers += 1
            return None
        if prefix == b"COPY ":
            key = parse_copy_line(line)
            if key is None:
                if b" FROM stdin" in line:
                    raise _Unreadable(f"COPY line not understood: {line[:200]!r}")
                return None
            self._key, self._rows = key, 0
            self._copies += 1
            self._in_copy, self._data_line_start, self._maybe_end = True, True, b""
            self._line_start = True
            return newline + 1
        match = _SET_ENCODING.fullmatch(line)
        if match:
            self._set_encoding(match.group(1).decode("ascii", "replace"))
        return None
