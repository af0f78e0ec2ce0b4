"""A backup as named steps, shared by every backup kind: lease → produce → put → manifest → record.

A kind supplies only its `Producer` (the `produce` step): the artifacts it streams
and, once they are streamed, what it has to say in the manifest and on the Backup
row. Everything else is here, once:

- `lease`: at most one backup per target; renewed by the job heartbeat; the
  backup id fences the final writes.
- `put`: raw chunks → compress → encrypt → hash → storage, committed under its
  key only when complete.
- `manifest`: written last, the commit marker (built by apps/pipeline/manifest.py).
- `record`: artifact, replica and backup rows in one transaction, on condition
  that the lease is still ours and the row still running.

Whatever happens (an exception, a lost lease, an unknown backend) the backup ends
`failed`, its stored objects are removed and the lease is released. A process
killed outright leaves a `running` row and a lease nobody renews: the next request
for the target reaps it (services.reap_abandoned).
"""
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from apps.backups import layout, locks
from apps.backups.models import (
    Backup,
    BackupArtifact,
    BackupStatus,
    Replica,
    ReplicaStatus,
)
from apps.jobs import liveness
from apps.jobs import services as jobs
from apps.jobs.progress import JobContext, drop_broken_connection
from apps.pipeline import compression, manifest
from apps.pipeline.artifact import ArtifactStats, Encoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends
from apps.storage.backends import StorageBackend

log = logging.getLogger(__name__)

ABANDONED = "Abandoned: the process running it died or stopped renewing its lease (killed or crashed)."


class Producer(Protocol):
    """The `produce` step of one backup kind (logical dump, base backup, WAL segment, document version)."""

    def artifacts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """(artifact name, raw chunks) for each artifact, in order; each stream is consumed before the next."""

    def manifest_fields(self) -> dict:
        """What the manifest says beyond the common fields (server, row counts, LSNs...); after the streams."""

    def backup_fields(self) -> dict:
        """Columns of the Backup row the kind fills in (server_version, row_counts, lsn_start...)."""

    # Instead of (name, chunks) a producer may yield `InProcesses` (artifacts written side by side, one forked
    # process each; only for a local storage location, see BackupWriter.put_in_processes).
    # Optional class attributes: `raw_hash`, how the raw SHA-256 of its streams is taken (Encoder: "inline" by
    # default, "thread" beside the compression, "off" for none: the physical tars); `zstd_level` and
    # `zstd_threads`, the zstd level and worker threads of its artifacts when the backup is zstd-compressed
    # (default 3 and settings.BACKUP_ZSTD_THREADS).


@dataclass(frozen=True)
class InProcesses:
    """Artifacts to write side by side: (name, a function returning its raw chunks) each, run in a child."""

    parts: list[tuple[str, Callable[[], Iterator[bytes]]]]
    zstd_threads: int | None = None
    # Fewer processes than parts: each takes the next part not yet taken (largest first), so they end together.
    workers: int | None = None


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    key: str
    stats: ArtifactStats


class BackupWriter:
    """The put / manifest / record steps of one backup, and the clean-up of what it stored."""

    def __init__(self, *, backup: Backup, ctx: JobContext):
        self.backup, self.ctx = backup, ctx
        self.backend: StorageBackend = backends.for_location(backup.storage_location)
        self.keyring = configured_keyring()
        self.slug = backup.database_target.name
        self.stored: list[StoredArtifact] = []
        self._committed_keys: list[str] = []

    def _encoder(self, *, raw_hash: str, zstd_level: int | None, zstd_threads: int | None) -> Encoder:
        zstd = self.backup.compression == "zstd"
        return Encoder(compression_name=self.backup.compression, keyring=self.keyring, raw_hash=raw_hash,
                       compression_level=zstd_level if zstd else None, compression_threads=zstd_threads if zstd else None)

    def _key(self, name: str) -> str:
        stored_name = layout.stored_name(name, compression.SUFFIX[self.backup.compression], self.keyring is not None)
        return layout.artifact_key(self.slug, self.backup.pk, stored_name)

    def put(self, name: str, raw_chunks: Iterator[bytes], *, raw_hash: str = "inline",
            zstd_level: int | None = None, zstd_threads: int | None = None) -> StoredArtifact:
        encoder = self._encoder(raw_hash=raw_hash, zstd_level=zstd_level, zstd_threads=zstd_threads)
        key = self._key(name)
        self.ctx.log(f"writing {name} to {self.backup.storage_location.name}:{key}")
        done = sum(a.stats.size_raw for a in self.stored)
        info = self.backend.put_stream(key, encoder.encode(self.ctx.count(raw_chunks, start=done)))
        self._committed_keys.append(key)
        st = encoder.stats
        self.ctx.log(f"artifact committed ({name}): {st.size_raw} raw bytes, {info.size} stored, "
                     f"sha256 {st.sha256_stored}")
        artifact = StoredArtifact(name=name, key=key, stats=st)
        self.stored.append(artifact)
        return artifact

    def put_in_processes(self, group: InProcesses, *, raw_hash: str = "inline", zstd_level: int | None = None,
                         check: Callable[[], None] | None = None) -> list[StoredArtifact]:
        """Each artifact of `group` through the same pipeline as `put`, in a forked child of its own (two
        streams to read, compress, encrypt and hash on two cores; apps/documents/forked.py), or with
        `group.workers` in that many children taking the artifacts one after the other. A child opens its
        own storage and touches neither the database nor the job; each object is committed under its key only
        when complete. Every key is listed for `discard` before the fork, so a child that fails, or dies after
        its commit, leaves nothing behind the failed backup; a failure of any child fails the backup.
        `check()` runs at each progress report: what it raises (a lost lease) stops the children at once."""
        from apps.documents import forked

        keys = [self._key(name) for name, _ in group.parts]
        self._committed_keys.extend(keys)
        location, name_of = self.backup.storage_location, [n for n, _ in group.parts]
        processes = min(group.workers or len(keys), len(keys))
        self.ctx.log("writing " + ", ".join(f"{n} to {location.name}:{k}" for n, k in zip(name_of, keys))
                     + f" in {processes} processes")

        def work(i: int, report) -> dict:
            encoder = self._encoder(raw_hash=raw_hash, zstd_level=zstd_level,
                                    zstd_threads=group.zstd_threads)
            try:
                backends.for_location(location).put_stream(keys[i], encoder.encode(_reported(group.parts[i][1](), report)))
            except Exception as exc:  # noqa: BLE001 (reported to the parent, which fails the backup)
                return {"error": f"{name_of[i]}: {str(exc) or type(exc).__name__}"}
            return {"stats": asdict(encoder.stats)}

        done = sum(a.stats.size_raw for a in self.stored)

        def progress(n: int) -> None:
            if check is not None:
                check()  # raised here, forked.run kills the children and re-raises
            self.ctx.progress(done + n)

        try:
            results = forked.run(list(range(len(keys))), work, on_progress=progress, workers=group.workers)
            errors = [got["error"] for got in results if got is not None and "error" in got]
            if errors:  # before any part left undone: with workers, one that failed is why others were not taken
                raise StepError(f"Writing {errors[0]}")
            for name, got in zip(name_of, results):
                if got is None:
                    raise StepError(f"The process writing {name} died; the backup is not complete.")
        except BaseException:
            # A child killed mid-upload (a lost lease stops them with SIGKILL) cannot remove its partial file;
            # the children are gone now, and no other upload of this job runs meanwhile.
            self._remove_partials(location)
            raise
        stored = []
        for name, key, got in zip(name_of, keys, results):
            st = ArtifactStats(**got["stats"])
            self.ctx.log(f"artifact committed ({name}): {st.size_raw} raw bytes, {st.size_stored} stored, "
                         f"sha256 {st.sha256_stored}")
            stored.append(StoredArtifact(name=name, key=key, stats=st))
        self.stored.extend(stored)
        return stored

    def _remove_partials(self, location) -> None:
        job_id = liveness.current_job()
        try:
            for key in backends.for_location(location).remove_partials(job_id) if job_id else []:
                log.warning("Removed %s, the unfinished upload of a writer process of job %s", key, job_id)
        except OSError as exc:  # never read as an artifact; the dead-job sweep may still remove it
            log.error("Could not remove the unfinished uploads of job %s: %s", job_id, exc)

    def write_manifest(self, *, fields: dict, finished_at) -> str:
        backup, target = self.backup, self.backup.database_target
        body = manifest.backup_manifest(
            backup_id=backup.pk,
            target={"name": target.name, "host": target.host, "port": target.port, "dbname": target.dbname},
            kind=backup.kind, fmt=backup.format, parent=backup.parent_id,
            created_at=backup.created_at, started_at=backup.started_at, finished_at=finished_at,
            artifacts=[{"name": a.name, "key": a.key, **a.stats.as_manifest()} for a in self.stored],
            extra=fields,
        )
        key = layout.manifest_key(self.slug, backup.pk)
        self.backend.put_bytes(key, body)  # written last: the commit marker
        self._committed_keys.append(key)
        return key

    def record(self, *, lease: locks.Lease, manifest_key: str, fields: dict, finished_at) -> None:
        backup = self.backup
        main = self.stored[0].stats
        with transaction.atomic():
            lease.confirm()  # fencing: nothing is recorded by a backup that lost its lease
            updated = Backup.objects.filter(pk=backup.pk, status=BackupStatus.RUNNING).update(
                status=BackupStatus.SUCCEEDED, finished_at=finished_at,
                size_raw=sum(a.stats.size_raw for a in self.stored),
                size_stored=sum(a.stats.size_stored for a in self.stored),
                sha256=main.sha256_stored, encryption_key_id=main.key_id, manifest_key=manifest_key, error="",
                **fields,
            )
            if not updated:
                raise locks.LeaseLost(f"Backup {backup.pk} was settled by someone else while it ran.")
            for a in self.stored:
                st = a.stats
                BackupArtifact.objects.create(
                    backup=backup, name=a.name, key=a.key, size_raw=st.size_raw, size_stored=st.size_stored,
                    sha256_raw=st.sha256_raw, sha256_stored=st.sha256_stored, compression=st.compression,
                    cipher=st.cipher, key_id=st.key_id,
                )
            Replica.objects.create(
                backup=backup, location=backup.storage_location, status=ReplicaStatus.PRESENT,
                bytes=sum(a.stats.size_stored for a in self.stored), attempts=1,
            )

    def discard(self) -> None:
        """Remove what this backup stored, manifest first (newest first), so nothing half-made looks complete."""
        for key in reversed(self._committed_keys):
            try:
                self.backend.delete(key)
            except Exception:  # the failed row still says so; verification would reject leftovers
                log.exception("Could not remove %s after a failed backup", key)


def run_backup(*, backup: Backup, producer: Producer, ctx: JobContext) -> Backup:
    """Run the steps for a pending backup; the row ends succeeded or failed, never pending or running."""
    writer = None
    try:
        with locks.lease(target=backup.database_target, backup_id=backup.pk, ctx=ctx) as lease:
            if lease.displaced:
                fail_backup(lease.displaced, ABANDONED)
            started = Backup.objects.filter(pk=backup.pk, status=BackupStatus.PENDING).update(
                status=BackupStatus.RUNNING, started_at=timezone.now()
            )
            if not started:
                raise locks.LeaseLost(f"Backup {backup.pk} is no longer pending; not running it.")
            backup.refresh_from_db()
            writer = BackupWriter(backup=backup, ctx=ctx)
            producer.stored = writer.stored  # what it yielded so far, once stored (a file index names their headers)
            items = producer.artifacts()
            try:
                for item in items:
                    if isinstance(item, InProcesses):
                        writer.put_in_processes(item, raw_hash=getattr(producer, "raw_hash", "inline"),
                                                zstd_level=getattr(producer, "zstd_level", None), check=lease.check)
                        lease.check()
                        continue
                    name, chunks = item
                    writer.put(name, _fenced(chunks, lease), raw_hash=getattr(producer, "raw_hash", "inline"),
                               zstd_level=getattr(producer, "zstd_level", None),
                               zstd_threads=getattr(producer, "zstd_threads", None))
            finally:
                if hasattr(items, "close"):
                    items.close()  # a producer's session (a backup in progress) ends now, not when collected
            lease.check()
            finished = timezone.now()
            mkey = writer.write_manifest(fields=producer.manifest_fields(), finished_at=finished)
            writer.record(lease=lease, manifest_key=mkey, fields=producer.backup_fields(), finished_at=finished)
    except BaseException as exc:
        if writer is not None:
            writer.discard()
        drop_broken_connection()  # the metadata server restarted: record the failure on a new connection
        fail_backup(backup.pk, str(exc) or type(exc).__name__)
        raise
    backup.refresh_from_db()
    ctx.progress(backup.size_raw or 0, backup.size_raw or 0, force=True)
    return backup


class StepError(Exception):
    pass


def _reported(chunks: Iterator[bytes], report: Callable[[int], None]) -> Iterator[bytes]:
    """Pass chunks through, reporting their sizes to the parent every few MiB (a forked child's progress)."""
    pending = 0
    for chunk in chunks:
        pending += len(chunk)
        if pending >= 8 << 20:
            report(pending)
            pending = 0
        yield chunk
    report(pending)


def _fenced(chunks: Iterator[bytes], lease: locks.Lease) -> Iterator[bytes]:
    """Stop streaming as soon as a heartbeat finds the lease taken over."""
    for chunk in chunks:
        lease.check()
        yield chunk


def fail_backup(backup_id: str, error: str) -> None:
    """Settle a pending or running backup as failed, and its job with it."""
    Backup.objects.filter(pk=backup_id, status__in=[BackupStatus.PENDING, BackupStatus.RUNNING]).update(
        status=BackupStatus.FAILED, error=error, finished_at=timezone.now()
    )
    job_id = Backup.objects.filter(pk=backup_id).values_list("job_id", flat=True).first()
    if job_id:
        jobs.fail_abandoned(job_id=job_id, reason=error)
