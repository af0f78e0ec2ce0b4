"""Writes for backups: request, run, restore. Views, commands, admin actions and jobs call these."""
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.backups import layout, locks
from apps.backups.models import Backup, BackupArtifact, BackupFormat, BackupKind, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.databases.connection import PgConn
from apps.databases.engines import logical
from apps.databases.models import DatabaseTarget
from apps.jobs import services as jobs
from apps.jobs.progress import JobContext
from apps.pipeline import compression, manifest
from apps.pipeline.artifact import Encoder
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
