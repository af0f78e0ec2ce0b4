"""Row counts from a custom-format archive (pg_dump --format=custom --compress=0)."""
from __future__ import annotations

import re
import struct

from apps.databases.engines.dump_rows.base import RowCounter, _Unreadable

STRING_CAP = 1 << 24  # longest TOC string kept (names, COPY statements, ENCODING)

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

# Frames at least this long are walked one by one rather than scanned in bulk (see _feed_data).
WALK_FROM_ROW_BYTES = 384

# Frame lengths below 65536 whose 4-byte little-endian form holds a newline byte.
_NL_IN_LEN16 = bytearray(65536)
_NL_IN_LEN16[10::256] = b"\x01" * 256  # low byte 0x0A
_NL_IN_LEN16[0x0A00:0x0B00] = b"\x01" * 256  # high byte 0x0A
_NL_IN_LEN16 = bytes(_NL_IN_LEN16)



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
                # Long rows (text documents, attachments): stepping from frame to frame touches a few
                # bytes per row, far less than the bulk scan's regex over every byte. Short rows: bulk.
                if self._frame.unpack_from(buf, pos)[1] < WALK_FROM_ROW_BYTES:
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
        except newline bytes inside length fields. The run stops before the block's
        end-of-data frame, or at a row end that cannot be inside a length field; the frame
        walker does the rest.

        Usually two byte counts prove that no length field holds a newline: a frame has at
        most 4 NUL bytes (its sign byte and at most 3 of its 4 length bytes, as the length
        is not 0), so with F frames and H newlines in length fields, NULs <= 4F while
        newlines = F + H. NULs == 4 x newlines therefore means H = 0 (and every frame
        shorter than 256 bytes: the short rows this path is for). Otherwise a regex finds
        the rare headers whose length holds a newline: they can only follow a row-end
        newline and the sign byte ("\n\x00" then 0-3 bytes then "\n").
        """
        if self._int_size != 4 or self._block_type != BLK_DATA or buf[pos:pos + 5] == b"\x00\x00\x00\x00\x00":
            return pos  # (the block's zero length, i.e. its end, is the walker's business)
        end = len(buf)
        # The terminator begins with a backslash: where there is none (short numeric rows), memchr says so
        # at a fraction of the cost of searching for the whole terminator.
        term = buf.find(_COPY_TERMINATOR, pos) if buf.find(b"\\", pos) >= 0 else -1
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
        newlines = buf.count(b"\n", pos, cut)
        if buf.count(b"\x00", pos, cut) != 4 * newlines:  # else no length field holds a newline (see above)
            newlines -= self._newlines_in_lengths(buf, pos, cut)
        self._rows += newlines
        self._last_len, self._last_tail = -2, buf[max(pos, cut - 8):cut]
        return cut

    @staticmethod
    def _newlines_in_lengths(buf: bytes, pos: int, cut: int) -> int:
        """The newline bytes inside the length fields of the whole frames in buf[pos:cut] (see _bulk_frames)."""
        internal = buf.count(b"\n", pos + 1, pos + 5)  # in the length field of the first frame
        inside_until = pos + 4
        for match in _ODD_HEADER.finditer(buf, pos + 5, cut):
            anchor = match.start()
            if anchor <= inside_until:  # itself a pair of bytes inside the previous length field
                continue
            internal += buf.count(b"\n", anchor + 2, anchor + 6)
            inside_until = anchor + 5
        return internal

    def _frames(self, buf: bytes, pos: int) -> int:
        """Walk the complete frames of a TABLE DATA block from pos (a frame header); return where it stopped.

        Newlines are counted over the walked bytes, except in long frames that end with a newline:
        such a frame is one COPY row (pg_dump 12-16 write one frame per row, and COPY text escapes
        every other newline in a row), so it counts 1 without scanning its payload.
        """
        end = len(buf)
        head = 1 + self._int_size
        unpack = self._frame.unpack_from
        nl_in_len = _NL_IN_LEN16
        start = pos
        last = -1
        odd = []  # headers whose length field may hold newline bytes
        limit = end - head
        rows = 0
        seg = start  # bytes from here on are still to be counted
        long_row = WALK_FROM_ROW_BYTES
        while pos <= limit:
            sign, length = unpack(buf, pos)
            if sign or length == 0:
                break
            if length >= 65536 or nl_in_len[length]:
                odd.append(pos)
            nxt = pos + head + length
            if nxt > end:
                break
            if length >= long_row and buf[nxt - 1] == 10:
                rows += buf.count(b"\n", seg, pos + head) + 1  # the bytes before its payload, then the row
                seg = nxt
            last = pos
            pos = nxt
        if pos > start:
            rows += buf.count(b"\n", seg, pos)
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


