"""Writes for backups: request, run, restore. Views, commands, admin actions and jobs call these."""
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.backups import layout, locks
from apps.backups.models import Backup, BackupArtifact, BackupFormat, BackupKind, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.engines import logical
from apps.databases.models import DatabaseTarget
from apps.jobs import services as jobs
from apps.jobs.models import Job
from apps.jobs.progress import JobContext
from apps.pipeline import compression, manifest
from apps.pipeline.artifact import Decoder, Encoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends
from apps.storage.services import ensure_default_location

log = logging.getLogger(__name__)

LOGICAL_FORMATS = [BackupFormat.CUSTOM, BackupFormat.PLAIN, BackupFormat.SCHEMA, BackupFormat.DATA]


# --- request -------------------------------------------------------------------------------------


def request_database_backup(*, target: DatabaseTarget, fmt: str = BackupFormat.CUSTOM, actor: Actor) -> Backup:
    """Record a pending backup and its job; the caller enqueues the job or runs it inline."""
    if fmt not in LOGICAL_FORMATS:
        raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(LOGICAL_FORMATS)}.")
    if not target.enabled:
        raise UserError(f"Target {target.name} is disabled.")
    reap_abandoned(target=target)
    running = locks.holder(target=target)
    if running:
        raise ConflictError(f"A backup of {target.name} is already running (backup {running}).")
    queued = (
        Backup.objects.filter(database_target=target, status=BackupStatus.PENDING, created_at__gte=locks.stale_before())
        .values_list("pk", flat=True)
        .first()
    )
    if queued:
        raise ConflictError(f"A backup of {target.name} is already queued (backup {queued}).")
    location = target.storage_location or ensure_default_location()
    with transaction.atomic():
        backup = Backup.objects.create(
            database_target=target,
            kind=BackupKind.FULL,
            format=fmt,
            storage_location=location,
            compression=settings.BACKUP_COMPRESSION,
        )
        backup.job = jobs.create_job(job_type="backup.database", args={"backup_id": backup.pk}, actor=actor)
        backup.save(update_fields=["job"])
        audit(actor=actor, action="backup.requested", obj=backup, details={"target": target.name, "format": fmt})
    return backup


# --- run -----------------------------------------------------------------------------------------


def run_database_backup(*, backup: Backup, ctx: JobContext) -> Backup:
    target = backup.database_target
    displaced = locks.acquire(target=target, backup_id=backup.pk)
    if displaced:
        _fail(displaced, ABANDONED)
    ctx.on_heartbeat = lambda: locks.heartbeat(target=target, backup_id=backup.pk)
    committed: list[str] = []
    backend = backends.for_location(backup.storage_location)
    try:
        Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.RUNNING, started_at=timezone.now())
        backup.refresh_from_db()
        conn = PgConn.for_target(target)
        keyring = configured_keyring()
        dump = logical.LogicalDump(conn, fmt=backup.format, app_name=f"backupsite-backup-{backup.pk}")
        encoder = Encoder(compression_name=backup.compression, keyring=keyring)
        name = layout.stored_name(dump.artifact_name, compression.SUFFIX[backup.compression], keyring is not None)
        key = layout.artifact_key(target.name, backup.pk, name)
        ctx.log(f"dumping {conn.redacted()} ({backup.format}) to {backup.storage_location.name}:{key}")
        stored = backend.put_stream(key, encoder.encode(ctx.count(dump.chunks())))
        committed.append(key)
        st = encoder.stats
        ctx.log(f"artifact committed: {st.size_raw} raw bytes, {stored.size} stored, sha256 {st.sha256_stored}")
        finished = timezone.now()
        body = {
            "backup_id": backup.pk,
            "target": {"name": target.name, "host": target.host, "port": target.port, "dbname": target.dbname},
            "kind": backup.kind,
            "format": backup.format,
            "parent": backup.parent_id,
            "created_at": backup.created_at.isoformat(),
            "started_at": backup.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "postgres": dump.info.server,
            "row_counts": dump.info.row_counts,
            "artifacts": [{"name": dump.artifact_name, "key": key, **st.as_manifest()}],
        }
        mkey = layout.manifest_key(target.name, backup.pk)
        backend.put_bytes(mkey, manifest.dumps(body))  # written last: the commit marker
        committed.append(mkey)
        with transaction.atomic():
            BackupArtifact.objects.create(
                backup=backup, name=dump.artifact_name, key=key, size_raw=st.size_raw, size_stored=st.size_stored,
                sha256_raw=st.sha256_raw, sha256_stored=st.sha256_stored, compression=st.compression,
                cipher=st.cipher, key_id=st.key_id,
            )
            Replica.objects.create(
                backup=backup, location=backup.storage_location, status=ReplicaStatus.PRESENT,
                bytes=st.size_stored, attempts=1,
            )
            Backup.objects.filter(pk=backup.pk).update(
                status=BackupStatus.SUCCEEDED, finished_at=finished, size_raw=st.size_raw,
                size_stored=st.size_stored, sha256=st.sha256_stored, encryption_key_id=st.key_id,
                server_version=dump.info.server.get("server_version", ""), row_counts=dump.info.row_counts,
                manifest_key=mkey, error="",
            )
        ctx.progress(st.size_raw, st.size_raw, force=True)
    except BaseException as exc:
        for key in reversed(committed):
            try:
                backend.delete(key)
            except Exception:  # the failed row still says so; verification would reject leftovers
                log.exception("Could not remove %s after a failed backup", key)
        _fail(backup.pk, str(exc) or type(exc).__name__)
        raise
    finally:
        locks.release(target=target, backup_id=backup.pk)
    backup.refresh_from_db()
    return backup


ABANDONED = "Abandoned: the worker running it stopped reporting progress (killed or crashed)."


def reap_abandoned(*, target: DatabaseTarget | None = None) -> int:
    """Mark running backups whose worker died as failed: they hold no live lease on their target."""
    running = Backup.objects.filter(status=BackupStatus.RUNNING, database_target__isnull=False)
    if target is not None:
        running = running.filter(database_target=target)
    reaped = 0
    for backup in running.select_related("database_target"):
        if locks.holder(target=backup.database_target) != backup.pk:
            _fail(backup.pk, ABANDONED)
            reaped += 1
    return reaped


def _fail(backup_id: str, error: str) -> None:
    Backup.objects.filter(pk=backup_id, status__in=[BackupStatus.PENDING, BackupStatus.RUNNING]).update(
        status=BackupStatus.FAILED, error=error, finished_at=timezone.now()
    )
    job_id = Backup.objects.filter(pk=backup_id).values_list("job_id", flat=True).first()
    if job_id:
        jobs.fail_abandoned(job_id=job_id, reason=error)


def set_legal_hold(*, backup: Backup, hold: bool, actor: Actor) -> Backup:
    """A backup on legal hold is never deleted by retention, whatever its age."""
    # Compared with the stored value: a form may already have set the attribute on this instance.
    if Backup.objects.filter(pk=backup.pk).exclude(legal_hold=hold).update(legal_hold=hold):
        audit(actor=actor, action="backup.legal_hold.set" if hold else "backup.legal_hold.released", obj=backup)
    backup.legal_hold = hold
    return backup


# --- restore -------------------------------------------------------------------------------------


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
) -> Job:
    """Record a restore job. `destination` is a redacted DSN; credentials come from `target` or at run time."""
    if backup.status != BackupStatus.SUCCEEDED:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only a succeeded backup can be restored.")
    if (request.table or request.schema) and backup.format != BackupFormat.CUSTOM:
        raise UserError("Restoring a single table or schema needs a backup in the custom format.")
    args = {"backup_id": backup.pk, "destination": destination, "table": request.table, "schema": request.schema,
            "create": request.create, "no_owner": request.no_owner}
    if target is not None:
        args.update(target_id=target.pk, dbname=dbname or target.dbname)
    job = jobs.create_job(job_type="restore.database", args=args, actor=actor)
    audit(actor=actor, action="backup.restore.requested", obj=backup, details={k: v for k, v in args.items()})
    return job


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
