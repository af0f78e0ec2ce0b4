"""The `produce` step of each backup method (steps.Producer): what it streams and what it records.

A new method (physical base backup, WAL segment, document version) is a new class
registered in PRODUCERS; the lease, put, manifest and record steps are shared.
Producers connect lazily, inside the steps, so a failure to connect (or to unseal
a password) fails the backup like any other error.
"""
import functools
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from apps.backups import file_index, page_delta, steps
from apps.backups.models import Backup, BackupFormat, BackupKind
from apps.databases.connection import PgConn
from apps.databases.engines import logical


class LogicalProducer:
    """pg_dump in the backup's format, in an exported snapshot; row counts per table from the same snapshot."""

    # The raw SHA-256 beside the compression: on rows that compress 20-170x (pgbench) hashing is a large share
    # of the main thread's work (docs/BENCHMARKS.md, logical backup).
    raw_hash = "thread"  # logical restores recompute it

    def __init__(self, backup: Backup):
        self.backup = backup
        self.dump: logical.LogicalDump | None = None

    def artifacts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        conn = PgConn.for_target(self.backup.database_target)
        self.dump = logical.LogicalDump(conn, fmt=self.backup.format, app_name=f"backupsite-backup-{self.backup.pk}",
                                        hash_max_bytes=settings.VERIFY_HASH_MAX_TABLE_BYTES)
        yield self.dump.artifact_name, self.dump.chunks()

    def manifest_fields(self) -> dict:
        return {"postgres": self.dump.info.server, "row_counts": self.dump.info.row_counts,
                "content_hashes": self.dump.info.content_hashes}

    def backup_fields(self) -> dict:
        return {"server_version": self.dump.info.server.get("server_version", ""),
                "row_counts": self.dump.info.row_counts, "content_hashes": self.dump.info.content_hashes}


class _PhysicalFields:
    """What every physical backup records: LSNs, timeline, system identifier, server version."""

    info = None
    stored: tuple | list = ()  # the artifacts stored so far (steps.StoredArtifact), set by the run_backup step

    def headers(self) -> dict[str, str]:
        """The header digest of each AES-GCM artifact stored so far, for the file index (written after them, and
        authenticated against the catalog like them): the restore then holds each tar to its header instead of
        re-hashing every stored byte (Decoder `expected_header`, docs/FORMAT.md)."""
        return {a.name: a.stats.header_sha256 for a in self.stored
                if a.stats.cipher == "aes-256-gcm" and a.stats.header_sha256}
    # No raw SHA-256 of the tars: nothing reads it (restores and incrementals take the bytes as the AES-GCM tags,
    # the header the file index records and zstd's content checksum authenticate them), and without SHA extensions
    # it was a third of a full's CPU (Encoder raw_hash, docs/DECISIONS.md).
    raw_hash = "off"
    # zstd level 1: a half to a third of level 3's CPU; about as small on real rows (text, jsonb, bytea: +2-4 %),
    # larger on rows that compress 20:1 (pgbench after updates: +41 %). docs/DECISIONS.md, docs/BENCHMARKS.md.
    zstd_level = 1

    def manifest_fields(self) -> dict:
        i = self.info
        return {"postgres": i.server, "lsn_start": i.lsn_start, "lsn_stop": i.lsn_stop, "timeline": i.timeline,
                "system_identifier": i.system_identifier,
                "file_index": {"artifact": file_index.NAME, "files": len(i.files)}}

    def backup_fields(self) -> dict:
        i = self.info
        return {"server_version": i.server.get("server_version", ""), "lsn_start": i.lsn_start,
                "lsn_stop": i.lsn_stop, "timeline": i.timeline, "system_identifier": i.system_identifier}


class PhysicalProducer(_PhysicalFields):
    """pg_basebackup's tar of the whole cluster (with its WAL), then the file index read from its headers."""

    def __init__(self, backup: Backup):
        self.backup = backup

    def artifacts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        from apps.databases.engines import physical

        conn = PgConn.for_target(self.backup.database_target)
        base = physical.BaseBackup(conn, app_name=f"backupsite-backup-{self.backup.pk}", backup_id=self.backup.pk)
        yield physical.ARTIFACT, base.chunks()
        self.info = base.info  # complete: the base tar has been consumed
        yield file_index.NAME, iter([file_index.dumps(
            backup_id=self.backup.pk, parent=None, started_at=base.info.started_at, files=base.info.files,
            headers=self.headers())])


class _WalkFields(_PhysicalFields):
    """A backup read from the data directory also records its WAL segments and how much it stored."""

    def manifest_fields(self) -> dict:
        i = self.info
        fields = {**super().manifest_fields(), "wal_segment_size": i.wal_segment_size, "wal": i.wal,
                  "stored_files": i.stored_files, "stored_file_bytes": i.stored_bytes}
        if self.backup.kind == BackupKind.INCREMENTAL:
            fields.update(delta_files=i.delta_files, delta_pages=i.delta_pages)
        return fields


class LocalFullProducer(_WalkFields):
    """A physical full read from the cluster's data directory on this machine, as pgBackRest takes one: every
    file of the walk of an incremental (pg_backup_start, files, pg_backup_stop, label, WAL), no parent.

    To a local location with BACKUP_PROCESSES = n > 1 the tar of the files is cut into byte ranges (anywhere,
    even inside a file: one large table file is shared too): n of equal estimated work for a small tar
    (TarLayout.balanced_cuts samples how well each region compresses), else 5n of decreasing size
    (piece_cuts) that n processes take one after the other so that they end together. Each range is written as an
    artifact by a forked process (`base.tar`, `base.tar.1`, ...), while this process holds the
    backup's session; then the label, the WAL and the tar's end after pg_backup_stop as the last part. The
    parts, decoded and concatenated in order, are one tar; the file index records where each part starts
    (`tar_parts`: a cut inside a file's data is resumable there), so that physical_restore extracts the parts
    side by side. Otherwise one `base.tar`.
    """

    def __init__(self, backup: Backup):
        self.backup = backup

    def artifacts(self) -> Iterator:
        from apps.databases.engines import incremental, physical

        target = self.backup.database_target
        walk = incremental.IncrementalBackup(
            PgConn.for_target(target), data_directory=target.data_directory, parent_index=None,
            app_name=f"backupsite-backup-{self.backup.pk}", backup_id=self.backup.pk,
        )
        processes = _processes(self.backup)
        parts = {}  # where each part of the tar starts: "tar_parts" of the file index (docs/FORMAT.md)
        if processes < 2:
            yield physical.ARTIFACT, walk.chunks()
        else:
            try:
                walk.start()
                layout = walk.layout(walk.listing())
                cuts = piece_cuts(layout, processes)  # never inside a header (TarLayout.cuts, balanced_cuts)
                parts["tar_parts"] = [{"name": part_name(i), **layout.part_start(cut)}
                                      for i, cut in enumerate(cuts)]  # the last: label, WAL, end, at layout.size
                # zstd in each process's own thread: the processes already fill the cores.
                yield steps.InProcesses([(part_name(i), functools.partial(layout.chunks, cuts[i], cuts[i + 1]))
                                         for i in range(len(cuts) - 1)], zstd_threads=0, workers=processes)
                yield part_name(len(cuts) - 1), walk.stop_chunks()
            finally:
                walk.close()
        self.info = i = walk.info
        yield file_index.NAME, iter([file_index.dumps(
            backup_id=self.backup.pk, parent=None, started_at=i.started_at, files=i.files,
            wal=i.wal, wal_segment_size=i.wal_segment_size, headers=self.headers(), **parts)])


# A full of at least this many bytes is cut into more parts than processes (piece_cuts); a smaller one into one
# part per process (the time an uneven end can cost is small there).
PIECES_MIN_BYTES = 256 << 20
# Of n processes' work, in parts taken in this order (in units of 1 / (20 n) of the tar's bytes): n large parts
# (70 %), then 2n of 2 units (20 %) and 2n of 1 unit (10 %). The last part any process takes is then at most
# 1/40 of the work of two, so the processes end within about that of each other, where two fixed halves ended
# 0.1-0.3 s apart on an 800 MB pgbench full (and more on a loaded machine; docs/BENCHMARKS.md).
PIECE_UNITS = (14, 2, 1)


def piece_cuts(layout, processes: int) -> list[int]:
    """The cuts of a full's tar into the parts `processes` processes write (steps.InProcesses.workers): equal
    work each for a small tar (TarLayout.balanced_cuts), else decreasing parts (PIECE_UNITS) that the processes
    take one after the other, largest first. Those are cut by bytes (TarLayout.cuts): the work a byte costs
    differs by up to a third between regions (rows that compress 30:1 or 10:1), which the small parts make up
    for, so the sampling of balanced_cuts (~30 ms before the processes start) is not needed. An empty part (two
    cuts at one place) is dropped."""
    if processes < 2 or layout.size < PIECES_MIN_BYTES:
        return layout.balanced_cuts(processes)
    large, middle, small = PIECE_UNITS
    sizes = [large] * processes + [middle] * (2 * processes) + [small] * (2 * processes)
    units = layout.cuts(sum(sizes))
    cuts, k = [0], 0
    for size in sizes:
        k += size
        if units[k] > cuts[-1]:
            cuts.append(units[k])
    if cuts[-1] != layout.size:  # (balanced_cuts always ends at the size)
        cuts.append(layout.size)
    return cuts


def part_name(i: int) -> str:
    """Part i of a full's tar written in parts: base.tar, base.tar.1, base.tar.2, ..."""
    return "base.tar" if i == 0 else f"base.tar.{i}"


def _processes(backup: Backup) -> int:
    from apps.documents import forked

    if backup.storage_location.kind != "local" or not forked.available():
        return 1  # a child opens its own storage: cloud SDKs are left out of forks, as for restores
    return settings.BACKUP_PROCESSES


def reads_data_directory(target) -> bool:
    """Whether a physical full of `target` is read from its data directory here (pg_basebackup otherwise): the
    target names one, and its global/pg_control is readable by this process."""
    if not target.data_directory:
        return False
    return os.access(Path(target.data_directory) / "global" / "pg_control", os.R_OK)


# zstd level of pages.delta: a few MB where the files it replaces are hundreds. On pgbench's (XOR runs, 20.9 MB
# raw for 40,000 pages): level 1 5.65 MB, 3 5.30, 7 4.79 (0.6 s CPU), 9 4.72 (0.75 s), 12 4.52 (1.5 s).
DELTA_ZSTD_LEVEL = 7


class IncrementalProducer(_WalkFields):
    """The files changed since the parent, the backup label and the WAL to make them consistent; the new index."""

    def __init__(self, backup: Backup):
        self.backup = backup

    def artifacts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        from apps.databases.engines import incremental

        target = self.backup.database_target
        parent_index = file_index.load(self.backup.parent)  # authenticated before anything is read
        walk = incremental.IncrementalBackup(
            PgConn.for_target(target), data_directory=target.data_directory, parent_index=parent_index,
            app_name=f"backupsite-backup-{self.backup.pk}", backup_id=self.backup.pk,
            page_deltas=settings.BACKUP_PAGE_DELTAS,
        )
        try:
            walk.start()
            plan = walk.plan()
            # The run_backup step reads zstd_level as each artifact is put: the deltas, small and dense, a level up.
            self.zstd_level = DELTA_ZSTD_LEVEL
            yield page_delta.NAME, self._deltas(walk, plan)
            self.zstd_level = _PhysicalFields.zstd_level
            yield incremental.ARTIFACT, walk.planned_chunks(plan, self._writer.entries)
        finally:
            walk.close()
        self.info = i = walk.info
        i.delta_pages = self._writer.pages
        yield file_index.NAME, iter([file_index.dumps(
            backup_id=self.backup.pk, parent=self.backup.parent_id, started_at=i.started_at, files=i.files,
            wal=i.wal, wal_segment_size=i.wal_segment_size, headers=self.headers())])

    def _deltas(self, walk, plan: list) -> Iterator[bytes]:
        """pages.delta: the changed relation files against the parent's version of them (delta_source.py)."""
        from apps.backups import delta_source
        from apps.databases.engines.incremental import IncrementalError

        candidates = [delta_source.Candidate(rel, path, st.st_size, int(st.st_mtime), walk.parent_files[rel])
                      for _kind, rel, path, st, action in plan if action == "delta"]
        chain, open_tar, open_delta = delta_source.chain_openers(self.backup.parent)
        self._writer = delta_source.DeltaWriter(backup_id=self.backup.pk, candidates=candidates, chain=chain,
                                                open_tar=open_tar, open_delta=open_delta)
        try:
            yield from self._writer.chunks()
        except page_delta.DeltaError as exc:
            raise IncrementalError(f"The parent's content, read back for the page deltas, does not fit: {exc}. "
                                   "Take a full backup to start a new chain.") from None


PRODUCERS = {"logical": LogicalProducer, "physical": PhysicalProducer, "local-full": LocalFullProducer,
             "incremental": IncrementalProducer}


def method_of(backup: Backup) -> str:
    if backup.format != BackupFormat.BASEBACKUP:
        return "logical"
    if backup.kind == BackupKind.INCREMENTAL:
        return "incremental"
    return "local-full" if reads_data_directory(backup.database_target) else "physical"


def producer_for(backup: Backup):
    return PRODUCERS[method_of(backup)](backup)
