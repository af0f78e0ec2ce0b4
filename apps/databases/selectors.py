"""Reads about databases that other apps need, without importing engine internals."""
from __future__ import annotations

from typing import Protocol


class DumpRowCounter(Protocol):
    """Feed every raw chunk of a dump in order; then `result()` is {"schema.table": rows}, or None when
    the stream could not be read (not a pg_dump stream of that format, truncated, or dumped with --inserts)."""

    def feed(self, chunk: bytes) -> None: ...

    def result(self) -> dict[str, int] | None: ...


def dump_row_counter(*, fmt: str) -> DumpRowCounter | None:
    """A per-table row counter for the raw stream of a logical backup in format `fmt`, or None when that
    format holds no table data (schema-only) or is not a logical format."""
    from apps.databases.engines import dump_rows  # the parsers load only when a dump is read

    return dump_rows.counter_for(fmt)
