"""A document backup as named steps, the shape of apps/backups/steps.py: lease → produce → manifest → record.

- `lease`: at most one backup per source (the lease of apps/backups/locks.py), renewed by the job heartbeat.
- `produce`: walk the tree; a file whose (size, mtime_ns, inode) equals the parent version's is taken from
  the parent's manifest without being read; any other file is read, cut into content-defined chunks, and its
  chunks not yet in this location's repository are packed (packer.py) by worker threads.
- `manifest`: written last, the commit marker.
- `record`: the version row, its packs and their chunks in one transaction, while the lease is still ours.

Whatever happens the version ends succeeded or failed; a failed one's packs and manifest are removed.
A process killed outright leaves packs nobody references (no chunk row points into them) and a running row
whose lease nobody renews: the next request for the source settles it.
"""
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from apps.backups import locks
from apps.documents import chunking, gcpause, layout, manifest
from apps.documents.models import (
    DocumentChunk,
    DocumentPack,
    DocumentVersion,
    VersionStatus,
)
from apps.documents.packer import Packer
from apps.documents.walk import Entry, Skipped, object_mtime_ns, walk, walk_objects
from apps.jobs import services as jobs
from apps.jobs.progress import JobContext, note
from apps.pipeline.keys import configured_keyring
from apps.storage import backends

log = logging.getLogger(__name__)

ABANDONED = "Abandoned: the process running it died or stopped renewing its lease (killed or crashed)."
WORKERS = max(2, (os.cpu_count() or 1) + 1)  # one more than the CPUs: a reader may wait on the disk


@dataclass
class Produced:
    entries: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    files_new: int = 0
    files_changed: int = 0
    files_removed: int = 0
    bytes_total: int = 0


def _file_entry(e: Entry, *, size: int, sha256: str, chunks: list[str]) -> dict:
    if e.obj is not None:  # an object of an object-store source
        return {"path": e.path, "type": "file", "size": size, "mtime_ns": object_mtime_ns(e.obj), "mode": 0o644,
                "etag": e.obj.etag, "sha256": sha256, "chunks": chunks}
    st = e.st
    return {"path": e.path, "type": "file", "size": size, "mtime_ns": st.st_mtime_ns, "mode": st.st_mode & 0o7777,
            "inode": st.st_ino, "ctime_ns": st.st_ctime_ns, "sha256": sha256, "chunks": chunks}


_FILE_KEYS = 9  # keys of a file entry of a local source (_file_entry)


def _unchanged(old: dict | None, e: Entry) -> bool:
    """Whether the parent's entry can stand for this file without reading it: same size, mtime, inode and
    ctime (a file rewritten in place keeping its mtime still gets a new ctime), as restic decides; for an
    object, same size, modification time and ETag."""
    if old is None or old.get("type") != "file":
        return False
    if e.obj is not None:
        return (old.get("size") == e.obj.size and old.get("mtime_ns") == object_mtime_ns(e.obj)
                and old.get("etag", "") == e.obj.etag)
    st = e.st
    return (old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns
            and old.get("inode") == st.st_ino and old.get("ctime_ns", st.st_ctime_ns) == st.st_ctime_ns)


class VersionWriter:
    def __init__(self, *, version: DocumentVersion, ctx: JobContext | None):
        self.version, self.ctx = version, ctx
        self.source = version.source
        self.backend = backends.for_location(version.storage_location)
        self.keyring = configured_keyring()
        self.compression = "zstd"
        self.packer: Packer | None = None
        self.index: dict[str, int] = {}
        self.manifest_key = ""

    # --- produce -----------------------------------------------------------------------------------

    def produce(self, *, lease: locks.Lease, parent: DocumentVersion | None) -> Produced:
        location = self.version.storage_location
        # The location's index: chunk -> pack (packs verify found damaged are not offered for reuse).
        self.index = dict(DocumentChunk.objects.filter(location=location, pack__damaged=False).values_list(
            "sha256", "pack_id"))
        known = self.index.keys()
        self.packer = Packer(backend=self.backend, keyring=self.keyring, compression_name=self.compression,
                             known=known)
        old = {}
        if parent is not None:
            old = {e["path"]: e for e in manifest.load(parent, keyring=self.keyring)["entries"]
                   if isinstance(e, dict) and "path" in e}
        out = Produced()
        root = self.source.root_path
        slots: list = []  # entries in walk order; a read file's slot is its future until it is done
        reused = 0
        if self.source.object_location_id:
            objects = backends.for_location(self.source.object_location)
            items = walk_objects(objects, self.source.prefix, include=self.source.include,
                                 exclude=self.source.exclude)
            base = self.source.prefix.strip("/")
            read = lambda item: self._read_object(objects, f"{base}/{item.path}" if base else item.path, item)
        else:
            items = walk(root, include=self.source.include, exclude=self.source.exclude,
                         follow_symlinks=self.source.follow_symlinks)
            read = lambda item: self._read(os.path.join(root, item.path), item)
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="docs-backup") as pool:
            for item in items:
                lease.check()
                if isinstance(item, Skipped):
                    out.problems.append({"path": item.path, "problem": item.problem})
                    continue
                if item.type == "dir":
                    slots.append({"path": item.path, "type": "dir", "mode": item.st.st_mode & 0o7777,
                                  "mtime_ns": item.st.st_mtime_ns})
                elif item.type == "symlink":
                    slots.append({"path": item.path, "type": "symlink", "target": item.target,
                                  "mtime_ns": item.st.st_mtime_ns})
                else:
                    prev = old.get(item.path)
                    # Reused only while its chunks are still offered (not in a pack verify found damaged).
                    if _unchanged(prev, item) and all(c in known for c in prev["chunks"]):
                        # The parent's entry as it is when it says all this entry would (ctime unchanged:
                        # neither mode nor content changed); rebuilt for objects and older manifests.
                        same = (item.obj is None and "ctime_ns" in prev and len(prev) == _FILE_KEYS
                                and prev.get("mode") == item.st.st_mode & 0o7777)
                        slots.append(prev if same else _file_entry(item, size=prev["size"], sha256=prev["sha256"],
                                                                   chunks=list(prev["chunks"])))
                        reused += 1
                    else:
                        slots.append((item, prev, pool.submit(read, item)))
            entries = []
            for slot in slots:
                if isinstance(slot, dict):
                    entries.append(slot)
                    continue
                item, prev, future = slot
                entry, problem = future.result()
                if problem:
                    out.problems.append({"path": item.path, "problem": problem})
                if entry is None:
                    continue
                entries.append(entry)
                if prev is None:
                    out.files_new += 1
                elif prev.get("sha256") != entry["sha256"]:
                    out.files_changed += 1
        self.packer.close()
        present = {e["path"] for e in entries if e["type"] == "file"}
        out.files_removed = sum(1 for p, e in old.items() if e.get("type") == "file" and p not in present)
        out.entries = entries
        out.bytes_total = sum(e["size"] for e in entries if e["type"] == "file")
        note(self.ctx, f"{len(present)} files ({reused} unchanged since the parent, {out.files_new} new, "
                       f"{out.files_changed} changed, {out.files_removed} removed); "
                       f"{len(self.packer.stored)} packs written; {len(out.problems)} problems", logger=log)
        return out

    def _read(self, path: str, item: Entry) -> tuple[dict | None, str]:
        """(entry, problem) of one file read now; a file that vanished is (None, why), one that changed while
        being read is kept as read, with a note."""
        flags = os.O_RDONLY | (0 if self.source.follow_symlinks else os.O_NOFOLLOW)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None, "vanished before it was read"
        except OSError as exc:
            return None, f"not readable: {exc.strerror}"
        with os.fdopen(fd, "rb", buffering=0) as fh:
            before = os.fstat(fd)
            if before.st_ino != item.st.st_ino:
                item.st = before  # replaced since the walk: what we read is the file now at this path
            try:
                got = chunking.chunks_of(fh, self.packer.add, size_hint=before.st_size)
            except OSError as exc:
                return None, f"read failed: {exc.strerror}"
            after = os.fstat(fd)
        problem = ""
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or got.size != before.st_size:
            problem = "changed while being read: stored as read"
        elif not os.path.lexists(path):
            problem = "vanished while being read: stored as read"
        return _file_entry(item, size=got.size, sha256=got.sha256, chunks=got.chunks), problem

    def _read_object(self, objects, key: str, item: Entry) -> tuple[dict | None, str]:
        """(entry, problem) of one object streamed now (never whole in memory beyond the chunker's window)."""
        try:
            got = chunking.chunks_of(_StreamFile(objects.get_stream(key)), self.packer.add)
        except backends.ObjectMissing:
            return None, "vanished before it was read"
        except backends.StorageError as exc:
            return None, f"read failed: {exc}"
        problem = "" if got.size == item.obj.size else "changed while being read: stored as read"
        return _file_entry(item, size=got.size, sha256=got.sha256, chunks=got.chunks), problem

    # --- manifest ----------------------------------------------------------------------------------

    def write_manifest(self, *, produced: Produced, parent: DocumentVersion | None, finished_at):
        v, s = self.version, self.source
        body = {
            "version_id": v.pk, "source": {"name": s.name, "root_path": s.root_path, **(
                {"location": s.object_location.name, "prefix": s.prefix} if s.object_location_id else {})}, "parent": parent and parent.pk,
            "created_at": v.created_at.isoformat(), "started_at": v.started_at.isoformat(),
            "finished_at": finished_at.isoformat(), "problems": produced.problems, "entries": produced.entries,
            "packs": [{"key": p.key, **p.stats.as_manifest(), "chunks": [list(c) for c in p.chunks]}
                      for p in self.packer.stored],
        }
        data, encoder = manifest.encode(body, compression_name=self.compression, keyring=self.keyring)
        key = layout.manifest_key(s.name, v.pk, compression_name=self.compression, encrypted=self.keyring is not None)
        self.backend.put_bytes(key, data)  # written last: the commit marker
        self.manifest_key = key
        return encoder.stats

    # --- record ------------------------------------------------------------------------------------

    def record(self, *, lease: locks.Lease, produced: Produced, manifest_stats, finished_at) -> None:
        v, location = self.version, self.version.storage_location
        stored = _referenced_bytes(self, produced.entries)
        with transaction.atomic():
            lease.confirm()
            packs = DocumentPack.objects.bulk_create([
                DocumentPack(location=location, version=v, key=p.key, chunks=len(p.chunks), size_raw=p.stats.size_raw,
                             size_stored=p.stats.size_stored, sha256_raw=p.stats.sha256_raw,
                             sha256_stored=p.stats.sha256_stored, compression=p.stats.compression,
                             cipher=p.stats.cipher, key_id=p.stats.key_id)
                for p in self.packer.stored
            ])
            by_key = {p.key: p for p in packs}
            insert_chunks([(location.pk, sha, by_key[p.key].pk, off, length)
                            for p in self.packer.stored for sha, off, length in p.chunks])
            added = sum(p.stats.size_stored for p in self.packer.stored) + manifest_stats.size_stored
            updated = DocumentVersion.objects.filter(pk=v.pk, status=VersionStatus.RUNNING).update(
                status=VersionStatus.SUCCEEDED, finished_at=finished_at, files=sum(
                    1 for e in produced.entries if e["type"] == "file"),
                files_new=produced.files_new, files_changed=produced.files_changed,
                files_removed=produced.files_removed, bytes_total=produced.bytes_total, bytes_added=added,
                bytes_stored=stored + manifest_stats.size_stored,
                problems=produced.problems[:1000], manifest_key=self.manifest_key,
                manifest_sha256_stored=manifest_stats.sha256_stored, manifest_sha256_raw=manifest_stats.sha256_raw,
                manifest_compression=manifest_stats.compression, manifest_cipher=manifest_stats.cipher,
                manifest_key_id=manifest_stats.key_id, error="",
            )
            if not updated:
                raise locks.LeaseLost(f"Version {v.pk} was settled by someone else while it ran.")

    def discard(self) -> None:
        """Remove what this backup stored, manifest first, so nothing half-made looks complete."""
        keys = ([self.manifest_key] if self.manifest_key else []) + (self.packer.stored_keys() if self.packer else [])
        for key in keys:
            try:
                self.backend.delete(key)
            except Exception:  # unreferenced either way: no chunk row points into it
                log.exception("Could not remove %s after a failed document backup", key)


class _StreamFile:
    """read(n) over a backend's stream of byte pieces: what the chunker reads an object through."""

    def __init__(self, pieces):
        self._it, self._buf = iter(pieces), bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            piece = next(self._it, None)
            if piece is None:
                break
            self._buf += piece
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


def insert_chunks(rows: list[tuple]) -> None:
    """Index rows in one executemany: a first backup adds tens of thousands, and model instances for each
    cost more than the insert. A chunk already indexed points to the new pack: the old one was damaged
    (not offered for reuse), or a concurrent backup of another source packed it too (both are committed)."""
    qn = connection.ops.quote_name
    table = DocumentChunk._meta.db_table
    sql = (f"INSERT INTO {qn(table)} ({qn('location_id')}, {qn('sha256')}, {qn('pack_id')}, {qn('offset')}, "
           f"{qn('length')}) VALUES (%s, %s, %s, %s, %s) ON CONFLICT ({qn('location_id')}, {qn('sha256')}) DO UPDATE "
           f"SET {qn('pack_id')} = excluded.{qn('pack_id')}, {qn('offset')} = excluded.{qn('offset')}, "
           f"{qn('length')} = excluded.{qn('length')}")
    with connection.cursor() as cursor:
        for i in range(0, len(rows), 5000):
            cursor.executemany(sql, rows[i:i + 5000])


def _referenced_bytes(writer: "VersionWriter", entries: list[dict]) -> int:
    """Stored bytes of the packs holding this version's chunks (whole packs: a pack is the unit stored)."""
    new_packs = {sha: p.key for p in writer.packer.stored for sha, _, _ in p.chunks}
    old_ids, new_keys = set(), set()
    for e in entries:
        if e["type"] == "file":
            for sha in e["chunks"]:
                if sha in new_packs:
                    new_keys.add(new_packs[sha])
                else:
                    old_ids.add(writer.index.get(sha))
    sizes = dict(DocumentPack.objects.filter(location=writer.version.storage_location).values_list("pk", "size_stored"))
    return (sum(sizes.get(i, 0) for i in old_ids)
            + sum(p.stats.size_stored for p in writer.packer.stored if p.key in new_keys))


def parent_of(version: DocumentVersion) -> DocumentVersion | None:
    """The source's latest committed version in the same location: its files are the ones to compare with."""
    return (DocumentVersion.objects.filter(source=version.source, storage_location=version.storage_location,
                                           status=VersionStatus.SUCCEEDED)
            .exclude(pk=version.pk).select_related("storage_location").order_by("-created_at", "-id").first())


def run_backup(*, version: DocumentVersion, ctx: JobContext | None) -> DocumentVersion:
    """Run the steps for a pending version; the row ends succeeded or failed, never pending or running."""
    writer = None
    try:
        with locks.lease(target=version.source, backup_id=version.pk, ctx=ctx or _NoJob()) as lease:
            if lease.displaced:
                fail_version(lease.displaced, ABANDONED)
            started = DocumentVersion.objects.filter(pk=version.pk, status=VersionStatus.PENDING).update(
                status=VersionStatus.RUNNING, started_at=timezone.now())
            if not started:
                raise locks.LeaseLost(f"Version {version.pk} is no longer pending; not running it.")
            version.refresh_from_db()
            parent = parent_of(version)
            if parent is not None:
                DocumentVersion.objects.filter(pk=version.pk).update(parent=parent)
                version.parent = parent
            writer = VersionWriter(version=version, ctx=ctx)
            with gcpause.paused():
                produced = writer.produce(lease=lease, parent=parent)
                lease.check()
                finished = timezone.now()
                stats = writer.write_manifest(produced=produced, parent=parent, finished_at=finished)
                writer.record(lease=lease, produced=produced, manifest_stats=stats, finished_at=finished)
    except BaseException as exc:
        if writer is not None:
            writer.discard()
        fail_version(version.pk, str(exc) or type(exc).__name__)
        raise
    version.refresh_from_db()
    return version


class _NoJob:
    """The lease's heartbeat hook when a backup runs without a job (tests, the shell): nothing renews it."""

    def on_beat(self, callback):
        return callback

    def remove_beat(self, callback) -> None:
        pass


def fail_version(version_id: str, error: str) -> None:
    """Settle a pending or running version as failed, and its job with it."""
    DocumentVersion.objects.filter(pk=version_id, status__in=[VersionStatus.PENDING, VersionStatus.RUNNING]).update(
        status=VersionStatus.FAILED, error=error, finished_at=timezone.now())
    job_id = DocumentVersion.objects.filter(pk=version_id).values_list("job_id", flat=True).first()
    if job_id:
        jobs.fail_abandoned(job_id=job_id, reason=error)

