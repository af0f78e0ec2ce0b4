"""What both row counters share: feed()/result(), failure handling, encodings."""
from __future__ import annotations

import codecs
import logging

log = logging.getLogger("apps.databases.engines.dump_rows")


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


