"""Names of databases, schemas and tables given by users: plain identifiers, never connection strings.

libpq and its tools read a database name containing `=` or starting with
`postgresql://` as a whole connection string (other host, port, sslmode...),
so a name is checked here before it goes anywhere. The rule is stricter than
PostgreSQL's (ASCII letters, digits, `_`, `$` and `-`, not starting with a
digit, `$` or `-`, at most 63 bytes) so a name never needs quoting or escaping
on its way to a tool.
"""
import re

from apps.core.errors import UserError

MAX_LEN = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]*")


def check_name(value: str, *, what: str = "database") -> str:
    """Return `value` if it is an acceptable `what` name, else raise UserError saying why."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value) or len(value) > MAX_LEN:
        # The value is not echoed: a would-be connection string may hold a password.
        raise UserError(
            f"That is not an acceptable {what} name: use 1 to {MAX_LEN} ASCII letters, digits, "
            f"'_', '$' or '-', starting with a letter or '_'."
        )
    return value


def check_table(value: str) -> tuple[str | None, str]:
    """"schema.table" or "table" -> (schema or None, table), each part checked."""
    schema, dot, table = value.partition(".") if isinstance(value, str) else ("", "", "")
    if not dot:
        return None, check_name(value, what="table")
    return check_name(schema, what="schema"), check_name(table, what="table")
