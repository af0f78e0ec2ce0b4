"""The SQL lexer tokens of the plain-format counter and the parser of pg_dump's COPY lines."""
from __future__ import annotations

import re

from apps.databases.engines.dump_rows.base import _Unreadable

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


