"""Writes for restores: request one, stream an artifact back authenticated, restore it, compare row counts."""
from dataclasses import dataclass

from apps.backups.models import Backup, BackupArtifact, BackupFormat, BackupStatus
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.engines import logical
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext
from apps.pipeline.artifact import Decoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends

@dataclass(frozen=True)
class RestoreRequest:
    table: str | None = None  # "schema.table" or "table"
    schema: str | None = None
    create: bool = False
    no_owner: bool = False

    def split_table(self) -> tuple[str | None, str | None]:
        if not self.table:
            return self.schema, None
        schema, dot, name = self.table.partition(".")
        return (schema, name) if dot else (self.schema, schema)


def request_restore(
    *, backup: Backup, destination: str, request: RestoreRequest, actor: Actor, target: DatabaseTarget | None = None,
    dbname: str | None = None,
) -> dict:
    """Validate and audit a restore request; returns the arguments of its job (RestoreDatabaseJob).

    `destination` is a redacted DSN; credentials come from `target` or at run time, never from the job row.
    """
    if backup.status != BackupStatus.SUCCEEDED:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only a succeeded backup can be restored.")
    if (request.table or request.schema) and backup.format != BackupFormat.CUSTOM:
        raise UserError("Restoring a single table or schema needs a backup in the custom format.")
    args = {"backup_id": backup.pk, "destination": destination, "table": request.table, "schema": request.schema,
            "create": request.create, "no_owner": request.no_owner}
    if target is not None:
        args.update(target_id=target.pk, dbname=dbname or target.dbname)
    audit(actor=actor, action="backup.restore.requested", obj=backup, details={k: v for k, v in args.items()})
    return args


def artifact_stream(*, backup: Backup, artifact: BackupArtifact, ctx: JobContext | None = None):
    """Raw bytes of an artifact, authenticated frame by frame; unencrypted ones are checksummed first."""
    backend = backends.for_location(backup.storage_location)
    keyring = configured_keyring()
    if artifact.cipher == "none":
        # Without AEAD, a corrupt byte would only show at the end: check the whole file before using any of it.
        verify_stored_checksum(backend=backend, artifact=artifact)
    decoder = Decoder(keyring=keyring, expected_sha256_stored=artifact.sha256_stored,
                      expected_sha256_raw=artifact.sha256_raw)
    stream = decoder.decode(backend.get_stream(artifact.key))
    if ctx is not None:
        ctx.progress(0, artifact.size_raw, force=True)
        stream = ctx.count(stream)
    return stream


def verify_stored_checksum(*, backend, artifact: BackupArtifact) -> None:
    if backend.sha256(artifact.key)[0] != artifact.sha256_stored:
        raise UserError(f"{artifact.key} fails its SHA-256 check; it will not be restored.")


def run_restore(*, backup: Backup, conn: PgConn, request: RestoreRequest, ctx: JobContext) -> dict:
    schema, table = request.split_table()
    if request.create:
        catalog.create_database(conn)
        ctx.log(f"created database {conn.dbname}")
    elif not catalog.database_exists(conn):
        raise UserError(f"Database {conn.dbname!r} does not exist; pass --create to create it.")
    logical.check_restorable_into(conn, table=table, schema=schema)
    artifact = backup.artifacts.get()
    ctx.log(f"restoring {artifact.key} into {conn.redacted()}" + (f" (table {request.table})" if table else ""))
    logical.restore(conn, artifact_stream(backup=backup, artifact=artifact, ctx=ctx), fmt=backup.format,
                    table=table, schema=schema, no_owner=request.no_owner)
    compared = _compare_row_counts(backup=backup, conn=conn, schema=schema, table=table)
    ctx.log(f"restore complete; row counts match for {len(compared)} tables")
    return {"backup_id": backup.pk, "destination": conn.redacted(), "tables_compared": len(compared),
            "rows_compared": sum(compared.values())}


def _compare_row_counts(*, backup: Backup, conn: PgConn, schema: str | None, table: str | None) -> dict[str, int]:
    if backup.format in (BackupFormat.SCHEMA, BackupFormat.DATA):
        return {}
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
