"""Single-table recovery: copy one table from a recovered (scratch) cluster back into a live database.

Rows stream with COPY from one connection into the other, never staged. The live side runs in
one transaction: either the whole table arrives, or nothing changes.

- Into a new name (`rename`): the new table is created LIKE the live original (same columns,
  defaults, constraints and indexes, with fresh index names), or from the recovered table's own
  definition when the live one is gone.
- In place: the live table's rows are replaced (DELETE, so foreign keys are honoured; a row still
  referenced elsewhere aborts the copy with the server's message), or the table is recreated from
  the recovered definition when it was dropped.
"""
import subprocess

import psycopg
from psycopg import sql

from apps.core.errors import UserError
from apps.databases import pgtools
from apps.databases.connection import PgConn


def copy_table(*, source: PgConn, dest: PgConn, schema: str, table: str, rename: str | None = None) -> dict:
    name = rename or table
    with psycopg.connect(**source.kwargs("backupsite-pitr-table")) as src:
        columns = _columns(src, schema, table)
        if not columns:
            raise UserError(f"The recovered database has no table {schema}.{table} at that point.")
        with psycopg.connect(**dest.kwargs("backupsite-pitr-table")) as dst:
            live_has_original = _exists(dst, schema, table)
            if rename and _exists(dst, schema, rename):
                raise UserError(f"{schema}.{rename} already exists in {dest.redacted()}; choose another name.")
            if rename and live_has_original:
                dst.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(schema, rename), sql.Identifier(schema, table)))
            elif live_has_original:
                dst.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
            else:
                dst.commit()  # the definition is created by pg_restore in its own transaction, below
                _create_from_recovered(source=source, dest=dest, schema=schema, table=table, rename=rename)
            rows = _copy_rows(src, dst, columns, source=(schema, table), dest=(schema, name))
            dst.commit()
    return {"table": f"{schema}.{name}", "rows": rows, "replaced": bool(live_has_original and not rename)}


def _columns(conn, schema: str, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum", (schema, table)).fetchall()]


def _exists(conn, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]


def _copy_rows(src, dst, columns: list[str], *, source: tuple[str, str], dest: tuple[str, str]) -> int:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    writer = dst.cursor()
    with src.cursor().copy(sql.SQL("COPY {} ({}) TO STDOUT").format(sql.Identifier(*source), cols)) as out, \
            writer.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(*dest), cols)) as inp:
        for data in out:
            inp.write(data)
    return writer.rowcount


def _create_from_recovered(*, source: PgConn, dest: PgConn, schema: str, table: str, rename: str | None) -> None:
    """The table's definition from the recovered cluster (pg_dump | pg_restore), renamed there first if asked."""
    if rename:
        with psycopg.connect(**source.kwargs("backupsite-pitr-table"), autocommit=True) as src:
            src.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(schema, table),
                                                                     sql.Identifier(rename)))
    name = rename or table
    dump = subprocess.Popen(
        # Names passed identifiers.check_name, so double quotes make them exact (not patterns).
        [pgtools.pg_bin("pg_dump"), "--format=custom", "--schema-only", "--no-owner", f'--table="{schema}"."{name}"'],
        env=source.env("backupsite-pitr-table"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    restore = subprocess.run(
        [pgtools.pg_bin("pg_restore"), "--no-owner", "--single-transaction", "--exit-on-error",
         f"--dbname={dest.dbname}"],
        env=dest.env("backupsite-pitr-table"), stdin=dump.stdout, capture_output=True, text=True,
    )
    dump.stdout.close()
    dump_err = dump.stderr.read().decode(errors="replace")
    if dump.wait() != 0 or restore.returncode != 0:
        raise UserError(f"Could not recreate {schema}.{name} from the recovered cluster: "
                        f"{(dump_err or restore.stderr).strip()[-500:]}")
