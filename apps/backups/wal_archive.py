"""Writes of the WAL archive: push a file PostgreSQL completed (archive_command), fetch one back (restore_command).

push() acknowledges a file only once it is stored (committed atomically by the storage backend) and
catalogued; anything less raises, so wal_push exits non-zero and PostgreSQL keeps the file and retries.
A file already archived with the same content is acknowledged again without being stored twice; a
different file under an archived name is refused, never overwritten.

fetch() writes nothing to its destination until every stored byte has been authenticated against the
catalog row, then renames a fsynced temporary file into place.
"""
import hashlib
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django import db
from django.db import IntegrityError, transaction

from apps.backups import layout, wal_names
from apps.backups.models import RestorePoint, WalSegment
from apps.core.durable import fsync_dir
from apps.core.errors import ConflictError, NotFound, UserError
from apps.databases.models import DatabaseTarget
from apps.storage import backends
from apps.storage.services import ensure_default_location

log = logging.getLogger(__name__)

CHUNK = 1 << 20
AHEAD_THREADS = 2
AHEAD_SECONDS = 30.0  # push_ahead stops starting files after this; PostgreSQL waits for the process to end
MARKER_MAX_AGE = 86400  # seconds: an unclaimed marker is removed after this


class WalNotArchived(NotFound):
    """The file is not in the archive: normal at the end of recovery (restore_command exits 1)."""


class WalConflict(ConflictError):
    """A different file is archived under this name."""


@dataclass(frozen=True)
class PushResult:
    segment: WalSegment
    stored: bool  # False: it was archived already, with the same content
    seconds: float
    warning: str = ""


def push(*, target: DatabaseTarget, path: Path | str) -> PushResult:
    """Archive the WAL file at `path` (PostgreSQL's %p) for `target`; raise unless it is stored and catalogued."""
    started = time.monotonic()
    path = Path(path)
    wal = wal_names.parse(path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror}.") from None
    header, start_lsn = None, ""
    if wal.kind in ("segment", "partial"):
        header = _checked_header(path, wal, size)
        start_lsn = wal_names.format_lsn(wal.start_lsn(size))

    existing = WalSegment.objects.select_related("storage_location").filter(
        database_target=target, name=wal.name).first()
    if existing is not None:
        if _file_sha256(path) != existing.sha256_raw:
            raise WalConflict(_conflict_message(target, wal.name))
        if _stored_intact(existing):
            return PushResult(segment=existing, stored=False, seconds=time.monotonic() - started)
        log.warning("%s is catalogued but missing or damaged in storage: storing it again", wal.name)
    location = existing.storage_location if existing else (target.storage_location or ensure_default_location())

    scan = None
    if header is not None:
        from apps.databases.engines import wal as wal_engine

        scan = wal_engine.scan_segment(path, segment_name=wal.name[:24], header=header)
    last_commit, warning = (scan.last_transaction_at, scan.warning) if scan else (None, "")

    stats, key = _store(target=target, location=location, wal=wal, path=path)
    if existing is not None and stats.sha256_raw != existing.sha256_raw:
        raise WalConflict(_conflict_message(target, wal.name))  # the file changed while it was re-stored
    fields = dict(
        timeline=wal.timeline, start_lsn=start_lsn, storage_location=location, key=key, size_raw=stats.size_raw,
        size_stored=stats.size_stored, sha256_raw=stats.sha256_raw, sha256_stored=stats.sha256_stored,
        compression=stats.compression, cipher=stats.cipher, key_id=stats.key_id, last_commit_at=last_commit,
    )
    segment = _record(target=target, name=wal.name, fields=fields, existing=existing,
                      restore_points=scan.restore_points if scan else [])
    return PushResult(segment=segment, stored=True, seconds=time.monotonic() - started, warning=warning)


def fetch(*, target: DatabaseTarget, name: str, dest: Path | str, scratch: bool = False) -> WalSegment:
    """Write archived file `name` (PostgreSQL's %f) to `dest` (%p), authenticated first; WalNotArchived if absent.

    `scratch`: `dest` is in a recovery's private spool, read once and thrown away: not fsynced, and the raw
    SHA-256 not recomputed (every frame is still authenticated, and the stored SHA-256 checked, before the
    file appears under its name).
    """
    from apps.backups.restores import stored_stream  # the decoder (cryptography) loads only when used

    wal_names.parse(name)
    segment = WalSegment.objects.select_related("storage_location").filter(
        database_target=target, name=name).first()
    if segment is None:
        raise WalNotArchived(f"{name} is not in the WAL archive of {target.name}.")
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.fetch-{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as fh:
            for chunk in stored_stream(location=segment.storage_location, record=segment, hash_raw=not scratch):
                fh.write(chunk)
            fh.flush()
            if not scratch:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)  # only after the decoder ended cleanly: every frame and both checksums passed
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not scratch:
        fsync_dir(dest.parent)
    return segment


def prefetch(*, target: DatabaseTarget, after: str, spool: Path | str, count: int) -> list[str]:
    """Fetch the archived segments that follow `after` on its timeline into `spool`, up to `count`, stopping at the
    first one not archived. Each is authenticated and written atomically like any fetch; a failure only ends the
    prefetch (that segment's own request then reports it). Returns the names fetched."""
    from apps.backups import wal_selectors

    wal = wal_names.parse(after)
    if not wal.is_segment or count <= 0:
        return []
    size = wal_selectors.segment_size(target)
    names = [wal_names.segment_name(wal.timeline, wal.segno(size) + i, size) for i in range(1, count + 1)]
    archived = set(WalSegment.objects.filter(database_target=target, name__in=names).values_list("name", flat=True))
    spool, fetched = Path(spool), []
    for name in names:
        if name not in archived:
            break
        if (spool / name).exists():
            continue
        try:
            fetch(target=target, name=name, dest=spool / name)
        except Exception as exc:
            log.warning("Prefetch of %s stopped: %s", name, exc)
            break
        fetched.append(name)
    return fetched


def push_ahead(*, target: DatabaseTarget, path: Path | str, spool: Path | str, limit: int,
               budget: float = AHEAD_SECONDS) -> list[str]:
    """Archive up to `limit` more files PostgreSQL has marked ready (`archive_status/*.ready` beside `path`),
    and leave for each a marker in `spool` holding its SHA-256.

    PostgreSQL calls archive_command once per file, and a wal_push process costs about a second to start; the
    archive_command that archive_config prints with a spool acknowledges a file by its marker in the shell
    (after checking the file still has the marker's SHA-256) and starts wal_push only when there is none.
    One process so archives a whole backlog. A marker is written only after the file is stored and
    catalogued, so it never claims more than push() would; a failure stops the run (PostgreSQL's own call for
    that file then fails and retries as usual).
    """
    path, spool = Path(path), Path(spool)
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep_markers(spool)
    deadline = time.monotonic() + budget
    ready = sorted(p.name[:-len(".ready")] for p in (path.parent / "archive_status").glob("*.ready"))
    todo = [name for name in ready if name != path.name and not (spool / f"{name}.ok").exists()
            and _archivable(name)][:limit]

    def one(name: str) -> str:
        try:
            if time.monotonic() > deadline:
                return ""
            result = push(target=target, path=path.parent / name)
            _write_marker(spool / f"{name}.ok", result.segment.sha256_raw)
            return name
        finally:
            db.connection.close()  # this thread's own connection

    done: list[str] = []
    # Two at a time: compression, encryption, hashing and pg_waldump run outside the GIL.
    with ThreadPoolExecutor(max_workers=AHEAD_THREADS, thread_name_prefix="wal-ahead") as pool:
        futures = [pool.submit(one, name) for name in todo]
        try:
            for future in futures:
                name = future.result()
                if name:
                    done.append(name)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return done


def _archivable(name: str) -> bool:
    try:
        wal_names.parse(name)
    except UserError:
        return False  # PostgreSQL names only WAL files there; anything else is not ours to archive
    return True


def _write_marker(marker: Path, sha256: str) -> None:
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
    tmp.write_text(sha256)
    os.replace(tmp, marker)  # the shell reads a whole marker or none


def _sweep_markers(spool: Path) -> None:
    """Markers PostgreSQL never asked for (the cluster went away, or archived the file another way)."""
    old = time.time() - MARKER_MAX_AGE
    for marker in spool.glob("*.ok"):
        try:
            if marker.stat().st_mtime < old:
                marker.unlink()
        except FileNotFoundError:
            pass


def _checked_header(path: Path, wal: wal_names.WalFileName, size: int):
    from apps.databases.engines import wal as wal_engine  # imported when a segment is pushed

    wal_names.check_segment_size(size)
    try:
        return wal_engine.check_segment(path, start_lsn_of=wal.start_lsn, size=size)
    except wal_engine.WalFileError as exc:
        raise UserError(f"{wal.name}: {exc} Not archived.") from None


def _store(*, target: DatabaseTarget, location, wal: wal_names.WalFileName, path: Path):
    """Stream the file through the pipeline to its key, committed atomically; (stats, key)."""
    from apps.pipeline import compression
    from apps.pipeline.artifact import Encoder
    from apps.pipeline.keys import configured_keyring

    keyring = configured_keyring()
    name = settings.BACKUP_COMPRESSION
    encoder = Encoder(compression_name=name, keyring=keyring)
    key = layout.wal_key(target.name, wal.timeline,
                         layout.stored_name(wal.name, compression.SUFFIX[name], keyring is not None))
    with open(path, "rb") as fh:
        backends.for_location(location).put_stream(key, encoder.encode(iter(lambda: fh.read(CHUNK), b"")))
    return encoder.stats, key


def _record(*, target: DatabaseTarget, name: str, fields: dict, existing: WalSegment | None,
            restore_points: list[tuple[str, str]]) -> WalSegment:
    """Insert the catalog row of a file just stored (or update the row of one stored again after damage), with the
    restore points it holds, in one transaction.

    A concurrent push of the same name is settled here; a row with other content is never changed.
    """
    if existing is not None:
        with transaction.atomic():
            WalSegment.objects.filter(pk=existing.pk, sha256_raw=fields["sha256_raw"]).update(**fields)
            _catalog_restore_points(target, name, fields["timeline"], restore_points)
        existing.refresh_from_db()
        return existing
    try:
        with transaction.atomic():
            segment = WalSegment.objects.create(database_target=target, name=name, **fields)
            _catalog_restore_points(target, name, fields["timeline"], restore_points)
            return segment
    except IntegrityError:
        pass
    # Another push of this name inserted first, and its object or ours is now under the key: keep the row
    # that describes what storage holds.
    other = WalSegment.objects.select_related("storage_location").get(database_target=target, name=name)
    if other.sha256_raw != fields["sha256_raw"]:
        raise WalConflict(_conflict_message(target, name))
    if not _stored_intact(other):
        WalSegment.objects.filter(pk=other.pk).update(**fields)
        other.refresh_from_db()
    return other


def _catalog_restore_points(target: DatabaseTarget, segment: str, timeline: int,
                            points: list[tuple[str, str]]) -> None:
    for name, lsn in points:
        RestorePoint.objects.get_or_create(database_target=target, segment=segment, lsn=lsn,
                                           defaults={"name": name, "timeline": timeline})


def _stored_intact(segment: WalSegment) -> bool:
    backend = backends.for_location(segment.storage_location)
    info = backend.stat(segment.key)
    if info is None or info.size != segment.size_stored:
        return False
    return backend.sha256(segment.key)[0] == segment.sha256_stored


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _conflict_message(target: DatabaseTarget, name: str) -> str:
    return (f"A different {name} is already archived for {target.name}: refusing to overwrite it. Two clusters "
            "may be archiving to the same target, or this cluster was restored without a new target; "
            "give each cluster history its own target.")
