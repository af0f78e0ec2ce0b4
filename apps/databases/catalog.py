"""Read-only questions asked of a live PostgreSQL database."""
import psycopg
from psycopg import sql

from apps.core.errors import UserError
from apps.databases.connection import PgConn

USER_TABLES = """
    SELECT n.nspname, c.relname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
     ORDER BY 1, 2
"""


def connect(conn: PgConn, *, app_name: str = "backupsite", autocommit: bool = True) -> psycopg.Connection:
    try:
        return psycopg.connect(**conn.kwargs(app_name), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise UserError(f"Cannot connect to {conn.redacted()}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def user_tables(cur) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in cur.execute(USER_TABLES).fetchall()]


def row_counts(cur) -> dict[str, int]:
    """Exact row counts per table, in whatever snapshot the cursor's transaction sees."""
    counts = {}
    for schema, table in user_tables(cur):
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = cur.execute(query).fetchone()[0]
    return counts


def server_info(cur) -> dict:
    info = {"server_version": cur.execute("SHOW server_version").fetchone()[0]}
    # Asked first: a refused call would abort the caller's transaction (and its exported snapshot).
    if cur.execute("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')").fetchone()[0]:
        info["system_identifier"] = str(cur.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
    return info


def database_exists(conn: PgConn) -> bool:
    with connect(conn.with_db("postgres")) as c:
        return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [conn.dbname]).fetchone() is not None


def create_database(conn: PgConn) -> None:
    with connect(conn.with_db("postgres")) as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [conn.dbname]).fetchone():
            raise UserError(f"Database {conn.dbname!r} already exists; drop it or restore without --create.")
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(conn.dbname)))
