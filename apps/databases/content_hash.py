"""A content hash per table: md5 of the table's rows as text, sorted, in one fixed output format.

Taken at backup time in the backup's own snapshot (engines/logical.py) for tables up to a size limit, and
again on the database a restore-level verification rebuilt: equal hashes mean the same rows, where equal
row counts only mean as many. The text of a row depends on session settings (dates, time zone, float
digits, bytea) and its sort order on the collation, so both are fixed here, the same on both sides.
"""
from psycopg import sql

from apps.databases import catalog

FIXED_OUTPUT = ["SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL TimeZone = 'UTC'", "SET LOCAL extra_float_digits = 3",
                "SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL bytea_output = 'hex'"]
SIZES = """
    SELECT n.nspname, c.relname, pg_table_size(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
     ORDER BY 1, 2
"""


def table_hash(cur, schema: str, table: str) -> str:
    query = sql.SQL(
        "SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) "
        "FROM (SELECT t::text AS r FROM {}.{} AS t) AS s"
    ).format(sql.Identifier(schema), sql.Identifier(table))
    return cur.execute(query).fetchone()[0]


def fix_output(cur) -> None:
    """Inside a transaction: the session settings the row text depends on (SET LOCAL: ends with it)."""
    for statement in FIXED_OUTPUT:
        cur.execute(statement)


def small_table_hashes(cur, *, max_bytes: int) -> dict[str, str]:
    """{"schema.table": md5} of every user table of at most `max_bytes`, in the cursor's transaction."""
    fix_output(cur)
    return {f"{schema}.{table}": table_hash(cur, schema, table)
            for schema, table, size in cur.execute(SIZES).fetchall() if size <= max_bytes}


def hashes_of(cur, names: list[str]) -> dict[str, str | None]:
    """The hash of each named table ("schema.table"), None for a table that is not there."""
    fix_output(cur)
    present = {f"{s}.{t}" for s, t in catalog.user_tables(cur)}
    out = {}
    for name in names:
        schema, table = name.split(".", 1)
        out[name] = table_hash(cur, schema, table) if name in present else None
    return out
