"""Writes for restores: request one, stream an artifact back authenticated, restore it, compare row counts."""
from collections.abc import Iterator
from dataclasses import dataclass

from apps.backups import sources
from apps.backups.models import Backup, BackupArtifact, BackupFormat, BackupStatus
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases.connection import PgConn
from apps.databases.identifiers import check_name, check_table
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext
from apps.pipeline.artifact import Decoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends
from apps.storage.backends import StorageBackend


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore. Names are checked on creation, whoever builds one (API, console, CLI, job handler)."""

    table: str | None = None  # "schema.table" or "table"
    schema: str | None = None
    create: bool = False
    no_owner: bool = False

    def __post_init__(self):
        if self.schema:
            check_name(self.schema, what="schema")
        if self.table:
            table_schema, _ = check_table(self.table)
            if table_schema and self.schema and table_schema != self.schema:
                raise UserError(f"Table {self.table!r} is not in schema {self.schema!r}.")

    def split_table(self) -> tuple[str | None, str | None]:
        if not self.table:
            return self.schema, None
        schema, name = check_table(self.table)
        return schema or self.schema, name

    def check_in_backup(self, backup: Backup) -> None:
        """Refuse a table or schema the backup does not hold: pg_restore would "succeed" restoring nothing.

        The backup's row counts list every table whose data is in the dump (empty ones included), read
        from the dump itself when it was taken; they are the catalog's record, not the stored bytes.
        """
        schema, table = self.split_table()
        if not table and not schema:
            return
        held = [name.split(".", 1) for name in backup.row_counts]
        if not any((schema is None or s == schema) and (table is None or t == table) for s, t in held):
            what = f"table {self.table!r}" if table else f"schema {schema!r}"
            raise UserError(f"Backup {backup.pk} holds no {what}; nothing would be restored.")


def request_restore(
    *, backup: Backup, destination: str, request: RestoreRequest, actor: Actor, target: DatabaseTarget | None = None,
    dbname: str | None = None,
) -> dict:
    """Validate and audit a restore request; returns the arguments of its job (RestoreDatabaseJob).

    `destination` is a redacted DSN; credentials come from `target` or at run time, never from the job row.
    `dbname` is the destination database (default: the target's); the CLI passes it too, to have it checked.
    """
    if backup.status != BackupStatus.SUCCEEDED:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only a succeeded backup can be restored.")
    if (request.table or request.schema) and backup.format != BackupFormat.CUSTOM:
        raise UserError("Restoring a single table or schema needs a backup in the custom format.")
    request.check_in_backup(backup)
    if dbname or target is not None:
        check_name(dbname or target.dbname)
    args = {"backup_id": backup.pk, "destination": destination, "table": request.table, "schema": request.schema,
            "create": request.create, "no_owner": request.no_owner}
    if target is not None:
        args.update(target_id=target.pk, dbname=dbname or target.dbname)
    audit(actor=actor, action="backup.restore.requested", obj=backup, details={k: v for k, v in args.items()})
    return args


def artifact_stream(*, backup: Backup, artifact: BackupArtifact, ctx: JobContext | None = None,
                    backend: StorageBackend | None = None, hash_raw: bool = True,
                    threaded: bool = False, expected_header: str | None = None) -> Iterator[bytes]:
    """Raw bytes of a backup's artifact, authenticated against the catalog (see stored_stream).

    Read from `backend`, or (None) from the first healthy copy of the backup (apps/backups/sources.py).
    `expected_header`: its header's SHA-256 from an authenticated record (Decoder.for_record).
    """
    if backend is None:
        backend = sources.source_for(backup, ctx)
    return stored_stream(backend=backend, record=artifact, ctx=ctx, hash_raw=hash_raw, threaded=threaded,
                         expected_header=expected_header)


def stored_stream(*, record, ctx: JobContext | None = None, location=None,
                  backend: StorageBackend | None = None, hash_raw: bool = True,
                  threaded: bool = False, expected_header: str | None = None) -> Iterator[bytes]:
    """Raw bytes of a stored object (read from `backend`, or from `location`), held to the catalog's `record`
    of it and authenticated frame by frame.

    `record` is anything with key, sizes, checksums, compression, cipher and key id (a BackupArtifact, a
    WalSegment). The first chunk is decoded before returning, so a refused header (downgraded, substituted)
    or a frame 0 that fails authentication raises before the caller creates a database or starts a tool.
    """
    if backend is None:
        backend = backends.for_location(location)
    keyring = configured_keyring()
    if record.cipher == "none":
        if keyring is not None:  # the decoder would refuse it too, but only after the checksum read below
            raise UserError(f"{record.key} is not encrypted, but encryption keys are configured: an artifact "
                            "that cannot be authenticated is not restored.")
        # Without AEAD, a corrupt byte would only show at the end: check the whole file before using any of it.
        verify_stored_checksum(backend=backend, artifact=record)
    # hash_raw=False (Decoder.for_record): the raw SHA-256 is not recomputed; the stored bytes still are checked.
    stream = Decoder.for_record(record, keyring=keyring, hash_raw=hash_raw, threaded=threaded,
                                expected_header=expected_header).decode(backend.get_stream(record.key))
    first = next(stream, None)
    if ctx is not None:
        ctx.progress(0, record.size_raw, force=True)
    return _resume(first, stream, ctx)


def _resume(first: bytes | None, rest: Iterator[bytes], ctx: JobContext | None) -> Iterator[bytes]:
    def chunks():
        if first is not None:
            yield first
        yield from rest

    return ctx.count(chunks()) if ctx is not None else chunks()


def verify_stored_checksum(*, backend, artifact: BackupArtifact) -> None:
    if backend.sha256(artifact.key)[0] != artifact.sha256_stored:
        raise UserError(f"{artifact.key} fails its SHA-256 check; it will not be restored.")


def run_restore(*, backup: Backup, conn: PgConn, request: RestoreRequest, ctx: JobContext) -> dict:
    # Imported here: they bring psycopg, which a physical restore (this module's artifact_stream) never needs.
    from apps.databases import catalog
    from apps.databases.engines import logical

    check_name(conn.dbname)  # again here: a job may have been recorded before names were checked
    request.check_in_backup(backup)
    schema, table = request.split_table()
    artifact = backup.artifacts.get()
    stream = artifact_stream(backup=backup, artifact=artifact, ctx=ctx)  # header and frame 0 authenticated
    if request.create:
        catalog.create_database(conn)
        ctx.log(f"created database {conn.dbname}")
    elif not catalog.database_exists(conn):
        raise UserError(f"Database {conn.dbname!r} does not exist; pass --create to create it.")
    logical.check_restorable_into(conn, table=table, schema=schema)
    ctx.log(f"restoring {artifact.key} into {conn.redacted()}" + (f" (table {request.table})" if table else ""))
    logical.restore(conn, stream, fmt=backup.format, table=table, schema=schema, no_owner=request.no_owner)
    compared = _compare_row_counts(backup=backup, conn=conn, schema=schema, table=table)
    ctx.log(f"restore complete; row counts match for {len(compared)} tables")
    return {"backup_id": backup.pk, "destination": conn.redacted(), "tables_compared": len(compared),
            "rows_compared": sum(compared.values()), "location": sources.source_name(backup)}


def _compare_row_counts(*, backup: Backup, conn: PgConn, schema: str | None, table: str | None) -> dict[str, int]:
    if backup.format in (BackupFormat.SCHEMA, BackupFormat.DATA):
        return {}
    from apps.databases import catalog
    from apps.databases.engines import logical

    expected = {
        name: n for name, n in backup.row_counts.items()
        if (table is None or name.split(".", 1)[1] == table) and (schema is None or name.split(".", 1)[0] == schema)
    }
    with catalog.connect(conn) as c:
        actual = catalog.row_counts(c.cursor())
    wrong = {name: (n, actual.get(name)) for name, n in expected.items() if actual.get(name) != n}
    if wrong:
        detail = ", ".join(f"{name}: expected {exp}, found {got}" for name, (exp, got) in sorted(wrong.items())[:5])
        raise logical.RestoreError(f"Restored row counts differ from the backup: {detail}")
    return expected
