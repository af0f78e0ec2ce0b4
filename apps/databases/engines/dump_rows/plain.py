"""Row counts from a plain-format dump (pg_dump --format=plain, with or without --data-only)."""
from __future__ import annotations

from apps.databases.engines.dump_rows.base import RowCounter, _Unreadable
from apps.databases.engines.dump_rows.sql import (
    _BLOCK_COMMENT, _COMMENT_MARK, _DOLLAR, _EQUOTE, _EQUOTE_STOP, _IDENT, _QUOTE, _SET_ENCODING, _TO_EOL, _TOKEN,
    _TOP, parse_copy_line,
)

LINE_CAP = 1 << 20  # longest SQL line (outside COPY data) held to look at it whole
TEXT_DUMP_HEADER = b"--\n-- PostgreSQL database dump\n--\n"
DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
DATA_HEADER = b"-- Data for Name: "


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
