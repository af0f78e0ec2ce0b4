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
length-prefixed blocks and, with --compress=0, writes one block per row. Runs
of short rows are counted in bulk (newline count, corrected for length fields
that hold a newline byte); long rows are walked block by block (a few hundred
nanoseconds each), and a long block ending in a newline counts as one row
without scanning it, since COPY text escapes every other newline.

Layouts follow the PostgreSQL sources (src/bin/pg_dump): WriteHead/ReadHead,
WriteToc/ReadToc, WriteInt/ReadInt, WriteStr/ReadStr, WriteOffset/ReadOffset in
pg_backup_archiver.c; _StartData/_EndData, _StartBlobs/_StartBlob/_EndBlob/
_EndBlobs (later _StartLOs...), _WriteExtraToc and _CustomWriteFunc in
pg_backup_custom.c; dumpTableData_copy in pg_dump.c, which in PostgreSQL 15
ends each table's COPY data with "\\.\\n\\n\\n" (in the archive too, as its own
frame). Archive versions 1.13, 1.14 (PostgreSQL 12-15) and 1.15 (16) are read;
others give None.

Modules: `base` (RowCounter, shared helpers), `custom` (the custom-format
archive parser), `plain` (the plain-SQL parser) and `sql` (its lexer tokens
and the COPY-line parser). Other apps do not import these: they go through
apps.databases.selectors.dump_row_counter.
"""
from apps.databases.engines.dump_rows.base import RowCounter
from apps.databases.engines.dump_rows.custom import CustomFormatCounter
from apps.databases.engines.dump_rows.plain import PlainFormatCounter
from apps.databases.engines.dump_rows.sql import parse_copy_line

__all__ = ["RowCounter", "CustomFormatCounter", "PlainFormatCounter", "counter_for", "parse_copy_line"]


def counter_for(fmt: str) -> RowCounter | None:
    """The counter for one of logical.FORMATS, or None when that format holds no table data."""
    if fmt == "custom":
        return CustomFormatCounter()
    if fmt in ("plain", "data"):
        return PlainFormatCounter()
    return None


