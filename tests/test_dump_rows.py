"""Row counts read from pg_dump's output stream, checked against SQL counts on real PostgreSQL 15 dumps."""
import random
import subprocess
import uuid

import psycopg
import pytest

from apps.databases import catalog
from apps.databases.engines.dump_rows import counter_for
from apps.databases.engines.dump_rows.base import RowCounter
from apps.databases.engines.dump_rows.custom import CustomFormatCounter
from apps.databases.engines.dump_rows.plain import PlainFormatCounter
from apps.databases.engines.dump_rows.sql import parse_copy_line
from apps.databases.engines.logical import FORMATS
from apps.databases.pgtools import pg_bin
from tests.helpers import create_database, drop_database

COUNTED_FORMATS = ["custom", "plain", "data"]

SCHEMA_SQL = r"""
CREATE SCHEMA sales;
CREATE SCHEMA "My Schema";

CREATE TABLE public.customers (id int PRIMARY KEY, name text);
INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 250) g;

CREATE TABLE sales.orders (id bigint, customer int, note text);
INSERT INTO sales.orders
SELECT g, g % 250 + 1,
       CASE g % 5 WHEN 0 THEN E'two\nlines' WHEN 1 THEN E'tab\there' WHEN 2 THEN E'back\\slash \\. \\N'
                  WHEN 3 THEN NULL ELSE E'\r\n\\.\n' END
  FROM generate_series(1, 1200) g;

CREATE TABLE public.empty_table (id int);

CREATE TABLE "My Schema"."Weird ""Name"".x" ("Col" text);
INSERT INTO "My Schema"."Weird ""Name"".x" VALUES ('a'), (''), (E'\\.');
CREATE TABLE "My Schema"."UPPER Case" (v int);
INSERT INTO "My Schema"."UPPER Case" SELECT generate_series(1, 4);
CREATE TABLE public."Ünïcode tåble" (v text);
INSERT INTO public."Ünïcode tåble" VALUES ('ä'), ('ö');

CREATE TABLE public.no_columns ();
INSERT INTO public.no_columns DEFAULT VALUES;
INSERT INTO public.no_columns DEFAULT VALUES;
INSERT INTO public.no_columns DEFAULT VALUES;

CREATE TABLE public.measurements (id int, at date) PARTITION BY RANGE (id);
CREATE TABLE public.measurements_low PARTITION OF public.measurements FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.measurements_high PARTITION OF public.measurements FOR VALUES FROM (1000) TO (MAXVALUE);
INSERT INTO public.measurements SELECT g, date '2024-01-01' + g FROM generate_series(1, 1500) g;

SELECT lo_from_bytea(0, E'blob data\n\n');

-- Traps for the plain-format reader: COPY-looking lines inside a comment string and a function body.
COMMENT ON TABLE public.customers IS E'not data;\nCOPY public.customers (id, name) FROM stdin;\n1\tfake\n\\.\n';
CREATE FUNCTION public.trap() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;
COPY sales.orders (id) FROM stdin;
\.
'::text $body$;
CREATE VIEW public.trap_view AS SELECT E'--;\n\\.\nCOPY sales.orders (id) FROM stdin;\n'::text AS t;
"""

# A table with more than 100k rows, and rows whose lengths put newline bytes into the
# custom format's frame headers (10 = 0x0a, 2826 = 0x0b0a, 2600 = 0x0a28, 70000 > 65535).
BIG_SQL = r"""
CREATE TABLE sales.big (id int, payload text);
INSERT INTO sales.big SELECT g, md5(g::text) FROM generate_series(1, 120000) g;
CREATE TABLE public.lengths (id int, v text);
INSERT INTO public.lengths VALUES (1, repeat('a', 7)), (2, repeat('b', 2823)), (3, repeat('c', 2597)),
                                  (4, repeat('d', 69997)), (5, repeat('e', 655367)), (6, repeat('f', 263));
-- Every frame length from 1 to 3001 (10 and 2560-2815 hold "\n\x00" in their length field), in shuffled
-- order, and lengths whose third byte is 0x0A: the cases the bulk counter must correct for.
CREATE TABLE public.every_length (v text);
INSERT INTO public.every_length SELECT repeat('x', g) FROM generate_series(0, 3000) g ORDER BY md5(g::text);
INSERT INTO public.every_length SELECT repeat('y', g) FROM generate_series(655355, 655365) g;
"""


def build(conn, *scripts) -> dict[str, int]:
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        for script in scripts:
            c.execute(script)
        return catalog.row_counts(c.cursor())


def pg_dump(conn, *args) -> bytes:
    result = subprocess.run([pg_bin("pg_dump"), "--no-password", *args], env=conn.env("test-dump-rows"),
                            stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return result.stdout


def dump(conn, fmt: str) -> bytes:
    return pg_dump(conn, *FORMATS[fmt][0])


def count(fmt: str, data: bytes, sizes) -> dict[str, int] | None:
    """Feed data in pieces: sizes is an int, or a random.Random to draw sizes from."""
    counter = counter_for(fmt)
    pos = 0
    while pos < len(data):
        if isinstance(sizes, int):
            size = sizes
        else:
            size = sizes.choice([sizes.randint(1, 12), sizes.randint(1, 300), sizes.randint(1, 150_000)])
        counter.feed(data[pos:pos + size])
        pos += size
    return counter.result()


@pytest.fixture(scope="module")
def big(pg_cluster):
    """A database with every case, including a table of 120k rows: (SQL counts, {format: dump})."""
    name = f"dumprows_{uuid.uuid4().hex[:10]}"
    create_database(pg_cluster, name)
    try:
        conn = pg_cluster.conn(name)
        expected = build(conn, SCHEMA_SQL, BIG_SQL)
        yield expected, {fmt: dump(conn, fmt) for fmt in COUNTED_FORMATS}
    finally:
        drop_database(pg_cluster, name)


@pytest.fixture
def small(fresh_db):
    """The same cases without the big tables: (SQL counts, conn)."""
    conn = fresh_db()
    return build(conn, SCHEMA_SQL), conn


def test_counter_for_each_format():
    assert isinstance(counter_for("custom"), CustomFormatCounter)
    assert isinstance(counter_for("plain"), PlainFormatCounter)
    assert isinstance(counter_for("data"), PlainFormatCounter)
    assert counter_for("schema") is None
    assert set(FORMATS) == {"custom", "plain", "schema", "data"}


def test_sql_counts_cover_the_interesting_tables(big):
    expected, _ = big
    assert expected["sales.big"] == 120_000
    assert expected["public.empty_table"] == 0
    assert expected['My Schema.Weird "Name".x'] == 3
    assert expected["My Schema.UPPER Case"] == 4
    assert expected["public.Ünïcode tåble"] == 2
    assert expected["public.no_columns"] == 3
    # Partitions are plain tables (relkind 'r'); the partitioned parent ('p') holds no rows of its own,
    # is not counted by SQL and has no TABLE DATA entry in the dump either.
    assert expected["public.measurements_low"] == 999 and expected["public.measurements_high"] == 501
    assert "public.measurements" not in expected


@pytest.mark.parametrize("fmt", COUNTED_FORMATS)
def test_counts_in_one_piece_match_sql(big, fmt):
    expected, dumps = big
    assert count(fmt, dumps[fmt], len(dumps[fmt])) == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fmt", COUNTED_FORMATS)
def test_counts_in_random_chunks_match_sql(big, fmt, seed):
    expected, dumps = big
    assert count(fmt, dumps[fmt], random.Random(seed)) == expected


def test_partitioned_parent_has_no_table_data(big):
    _, dumps = big
    assert b"COPY public.measurements_low (id, at) FROM stdin;" in dumps["plain"]
    assert b"COPY public.measurements (" not in dumps["plain"]
    counts = count("custom", dumps["custom"], 1 << 20)
    assert "public.measurements" not in counts and counts["public.measurements_high"] == 501


@pytest.mark.parametrize("fmt", COUNTED_FORMATS)
def test_counts_in_one_byte_chunks_of_a_small_dump(small, fmt):
    expected, conn = small
    data = dump(conn, fmt)
    assert count(fmt, data, 1) == expected
    assert count(fmt, data, 2) == expected
    assert count(fmt, data, 3) == expected


def test_plain_reader_is_not_fooled_by_copy_lines_in_strings(small):
    expected, conn = small
    data = dump(conn, "plain")
    assert data.count(b"\nCOPY public.customers (id, name) FROM stdin;\n") == 2  # one is inside a comment
    assert data.count(b"\nCOPY sales.orders (id) FROM stdin;\n") == 2  # function body, view
    assert count("plain", data, len(data)) == expected


# -- failure paths ------------------------------------------------------------


@pytest.mark.parametrize("fmt", COUNTED_FORMATS)
@pytest.mark.parametrize("garbage", [b"", b"hello world\n", bytes(range(256)) * 40, b"PGDMP" + b"\x00" * 100])
def test_garbage_gives_none(fmt, garbage):
    counter = counter_for(fmt)
    counter.feed(garbage)
    assert counter.result() is None


def test_random_bytes_never_raise():
    rnd = random.Random(7)
    for _ in range(200):
        for fmt in COUNTED_FORMATS:
            counter = counter_for(fmt)
            counter.feed(rnd.randbytes(rnd.randint(1, 400)))
            counter.feed(rnd.randbytes(rnd.randint(1, 400)))
            assert counter.result() is None


def toc_end(data: bytes) -> int:
    """Offset of the first data block of a PG15 custom archive (walks header and TOC as ReadHead/ReadToc do)."""
    return _walk(data)[1]


def _walk(data: bytes, *, drop_tableam: bool = False) -> tuple[bytes, int]:
    """Copy of a version 1.14 archive's header and TOC (without the tableam strings when asked), and where it ended."""
    int_size, off_size = data[8], data[9]
    out = bytearray(data[:11])
    pos = 11

    def integer():
        nonlocal pos
        raw = data[pos:pos + 1 + int_size]
        value = int.from_bytes(raw[1:], "little")
        pos += 1 + int_size
        out.extend(raw)
        return -value if raw[0] else value

    def string(keep=True):
        nonlocal pos
        start = pos
        length = integer()
        pos += max(length, 0)
        if keep:
            out.extend(data[start + 1 + int_size:pos])
        else:
            del out[len(out) - (1 + int_size):]
        return length

    integer()  # compression
    for _ in range(7):
        integer()
    for _ in range(3):
        string()
    for _ in range(integer()):
        integer(), integer()
        for _ in range(4):  # tableoid, oid, tag, desc
            string()
        integer()  # section
        for _ in range(5):  # defn, dropStmt, copyStmt, namespace, tablespace
            string()
        string(keep=not drop_tableam)
        string(), string()  # owner, withOids
        while string() != -1:
            pass
        out.extend(data[pos:pos + 1 + off_size])
        pos += 1 + off_size
    return bytes(out), pos


def test_truncated_custom_dump_gives_none(small):
    expected, conn = small
    data = dump(conn, "custom")
    end = toc_end(data)
    assert data[end] == 1  # BLK_DATA follows the TOC
    for cut in (3, 40, end // 2, end - 1, end, end + 3, len(data) - 20, len(data) - 1):
        assert count("custom", data[:cut], 997) is None, cut
    assert count("custom", data, 997) == expected
    assert count("custom", data + b"\x07", 997) is None  # trailing bytes are not a data block


@pytest.mark.parametrize("fmt", ["plain", "data"])
def test_truncated_plain_dump_gives_none(small, fmt):
    expected, conn = small
    data = dump(conn, fmt)
    inside_copy = data.index(b"\nCOPY sales.orders (id, customer, note) FROM stdin;\n") + 200
    before_end = data.rindex(b"-- PostgreSQL database dump complete")
    for cut in (10, inside_copy, before_end):
        assert count(fmt, data[:cut], 1000) is None
    assert count(fmt, data, 1000) == expected


@pytest.mark.parametrize("version", [(0, 9), (1, 12), (1, 16), (1, 99), (2, 14)])
def test_unknown_archive_version_gives_none(small, version):
    _, conn = small
    data = bytearray(dump(conn, "custom"))
    assert data[5:8] == bytes([1, 14, 0])
    data[5:7] = bytes(version)
    assert count("custom", bytes(data), 4096) is None


def test_archive_versions_1_13_and_1_15(small):
    """1.13 has no tableam string in TOC entries; 1.15 (PostgreSQL 16) stores a compression
    algorithm byte instead of the int level. Both are rewritten from a real 1.14 archive."""
    expected, conn = small
    data = dump(conn, "custom")
    head_toc, end = _walk(data, drop_tableam=True)
    v13 = bytearray(head_toc + data[end:])
    v13[6] = 13
    assert count("custom", bytes(v13), 1000) == expected
    assert count("custom", bytes(v13), 1) == expected
    assert data[11:16] == b"\x00\x00\x00\x00\x00"  # compression level 0
    v15 = data[:6] + bytes([15]) + data[7:11] + b"\x00" + data[16:]
    assert count("custom", v15, 1000) == expected
    gzip15 = data[:6] + bytes([15]) + data[7:11] + b"\x01" + data[16:]
    assert count("custom", gzip15, 1000) is None


def test_compressed_or_insert_dumps_give_none(small):
    _, conn = small
    assert count("custom", pg_dump(conn, "--format=custom", "--compress=1"), 4096) is None
    assert count("custom", pg_dump(conn, "--format=custom", "--compress=0", "--inserts"), 4096) is None
    assert count("plain", pg_dump(conn, "--format=plain", "--inserts"), 4096) is None


def test_failure_is_logged_at_debug(caplog):
    counter = CustomFormatCounter()
    with caplog.at_level("DEBUG", logger="apps.databases.engines.dump_rows"):
        counter.feed(b"not an archive")
        assert counter.result() is None
    assert "cannot count rows" in caplog.text and "PGDMP" in caplog.text


def test_copy_line_names():
    assert parse_copy_line(b'COPY "My Schema"."Weird ""Name"".x" ("Col") FROM stdin;') == b'My Schema.Weird "Name".x'
    assert parse_copy_line(b"COPY public.no_columns  FROM stdin;") == b"public.no_columns"
    assert parse_copy_line(b'COPY public."a.b" (x, "y) FROM stdin;") FROM stdin;') == b"public.a.b"
    assert parse_copy_line(b"COPY public.t (a) TO stdout;") is None
    assert parse_copy_line(b"COPY t (a) FROM stdin;") is None  # pg_dump always qualifies
    assert parse_copy_line(b'COPY public."unterminated (a) FROM stdin;') is None


# -- speed -----------------------------------------------------------------------


def test_plain_counter_streams_200_mb():
    """No timing assertion: this only has to finish (it takes about a second)."""
    row = b"1234567\tsome text value with a few words\t2024-01-01 12:00:00+00\t\\N\n"
    block = row * ((1 << 20) // len(row))
    counter = PlainFormatCounter()
    counter.feed(b"--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\n\n"
                 b"COPY public.big (id, t, at, n) FROM stdin;\n")
    for _ in range(200):
        counter.feed(block)
    counter.feed(b"\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n")
    assert counter.result() == {"public.big": 200 * (len(block) // len(row))}


def test_base_class_is_abstract():
    counter = RowCounter()
    counter.feed(b"x")  # the error is swallowed
    assert counter.result() is None


@pytest.mark.parametrize("chunk", [None, 1 << 20, 65536, 4099, 517, "seed-7", "seed-8", "seed-9", "seed-10"])
def test_bulk_counting_does_the_work_and_agrees_with_the_frame_walker(big, monkeypatch, chunk):
    """The bulk path (newline counts corrected in C for length fields holding 0x0A) credits nearly every
    row, and gives the same counts as stepping through every frame, wherever the chunks are cut."""
    expected, dumps = big
    data = dumps["custom"]

    def sizes():
        if isinstance(chunk, str):
            return random.Random(int(chunk.split("-")[1]))
        return chunk or len(data)

    size = sizes()
    bulk_rows = []
    real_bulk = CustomFormatCounter._bulk_frames

    def spy(self, buf, pos):
        before = self._rows
        cut = real_bulk(self, buf, pos)
        bulk_rows.append(self._rows - before)
        return cut

    monkeypatch.setattr(CustomFormatCounter, "_bulk_frames", spy)
    assert count("custom", data, size) == expected
    if not isinstance(chunk, str) and chunk != 517:  # tiny chunks leave much of the work to the walker
        assert sum(bulk_rows) > 0.95 * sum(expected.values())
    monkeypatch.setattr(CustomFormatCounter, "_bulk_frames", lambda self, buf, pos: pos)
    assert count("custom", data, sizes()) == expected


@pytest.mark.parametrize("chunk", [1 << 20, 65536, 4099, "seed-11", "seed-12"])
def test_byte_count_proof_agrees_with_the_header_regex(big, monkeypatch, chunk):
    """Where the bulk path skips the regex because NULs == 4 x newlines, the regex would have found no newline in
    a length field; the proof holds on the short-row runs and fails where lengths hold 0x0A (10, 266, 2560-2815)."""
    expected, dumps = big
    data = dumps["custom"]
    proved, regexed = [], []
    real_bulk = CustomFormatCounter._bulk_frames

    def spy(self, buf, pos):
        cut = real_bulk(self, buf, pos)
        if cut > pos:
            internal = CustomFormatCounter._newlines_in_lengths(buf, pos, cut)
            if buf.count(b"\x00", pos, cut) == 4 * buf.count(b"\n", pos, cut):
                proved.append(internal)
            else:
                regexed.append(internal)
        return cut

    monkeypatch.setattr(CustomFormatCounter, "_bulk_frames", spy)
    sizes = random.Random(int(chunk.split("-")[1])) if isinstance(chunk, str) else chunk
    assert count("custom", data, sizes) == expected
    assert proved and not any(proved)
    assert any(regexed)  # the every_length table's headers with 0x0A bytes went through the regex


def test_databases_selector_hands_out_counters():
    """Other apps (verification) get a counter through apps.databases.selectors, not the engine internals."""
    from apps.databases.selectors import dump_row_counter

    assert isinstance(dump_row_counter(fmt="custom"), CustomFormatCounter)
    assert isinstance(dump_row_counter(fmt="plain"), PlainFormatCounter)
    assert isinstance(dump_row_counter(fmt="data"), PlainFormatCounter)
    assert dump_row_counter(fmt="schema") is None
    assert dump_row_counter(fmt="basebackup") is None
