"""File-level incremental backups (as pgBackRest does): only files changed since the parent are stored.

Needs the cluster's data directory on the machine that runs the job. In one session:
pg_backup_start (non-exclusive) → walk the data directory, storing each file whose size or mtime differs
from the parent's file index, or whose mtime is not older than the parent's start (a file written in the
same second as the parent read it may have changed unseen) → pg_backup_stop, whose backup_label and
tablespace_map are stored → the WAL from the start to the stop LSN, copied from pg_wal, so the backup
restores on its own. A temporary replication slot, when the role may create one, keeps that WAL from
being recycled meanwhile. The output is one tar stream; `info.files` is the new file index (every file
of the cluster → the backup holding its content).
"""
import bisect
import hashlib
import itertools
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from apps.core.errors import UserError
from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.engines import tarstream
from apps.databases.engines.physical import (
    BaseBackupInfo, format_lsn, parse_backup_label, parse_lsn, segment_name,
)

CHUNK = 1 << 20
# Reading a page-cached file, per byte (0.28 ns measured on the 2026-11-27 Xeon, plus the encryption and stored hash
# of what it compresses to): the part of a writer's work that does not depend on how well the bytes compress
# (TarLayout.balanced_cuts). It was 0.8 ns while the tars also took their raw SHA-256 (docs/DECISIONS.md).
READ_SECONDS_PER_BYTE = 0.4e-9
ARTIFACT = "files.tar"
WAL_PAGE = 8192
# Directories whose contents PostgreSQL documents as not needed in a backup (the directory itself is kept).
EXCLUDED_DIR_CONTENTS = {"pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial",
                         "pg_snapshots", "pg_subtrans"}
EXCLUDED_FILES = {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map", "backup_manifest",
                  "postgresql.auto.conf.tmp", "current_logfiles.tmp"}
TEMP_REL = re.compile(r"^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$")


class IncrementalError(Exception):
    pass


def excluded_file(name: str) -> bool:
    return (name in EXCLUDED_FILES or name.startswith("pg_internal.init") or name.startswith("pgsql_tmp")
            or bool(TEMP_REL.match(name)))


def read_system_identifier(data_directory: Path) -> str:
    """The system identifier in global/pg_control (its first 8 bytes, in the server's byte order)."""
    with open(data_directory / "global" / "pg_control", "rb") as fh:
        return str(int.from_bytes(fh.read(8), sys.byteorder))


@dataclass
class IncrementalInfo(BaseBackupInfo):
    wal_segment_size: int = 0
    wal: list[str] = field(default_factory=list)
    stored_files: int = 0
    stored_bytes: int = 0
    delta_files: int = 0  # changed relation files stored as page deltas (pages.delta), not counted above
    delta_pages: int = 0


def deltable(rel: str, size: int, old: dict | None) -> bool:
    """Whether a changed file is stored as page deltas against the parent's version: a relation file (under
    base/ or global/, pg_control aside) of whole 8 KiB pages now and in the parent's index."""
    return (old is not None and old.get("type") == "file" and bool(old.get("backup"))
            and rel.startswith(("base/", "global/")) and rel != "global/pg_control"
            and size % 8192 == 0 and old["size"] % 8192 == 0)


class IncrementalBackup:
    """Iterate `chunks()` for the tar of changed files, label and WAL; `info` is complete at its clean end.

    Without a `parent_index` the walk is a full backup: every file stored (pgBackRest's way of taking a full
    when the data directory is on this machine), and its entries carry no `sha256`, as a pg_basebackup full's.
    In steps, for a full written by several processes (apps/backups/producers.LocalFullProducer): `start()`,
    `listing()` (nothing read yet), its `layout()` whose byte ranges other processes write, `stop_chunks()`
    for the label, the WAL and the tar's end, and `close()` in any case. The ranges and the stop's chunks,
    concatenated, are one tar.
    """

    def __init__(self, conn: PgConn, *, data_directory: str, app_name: str, backup_id: str,
                 parent_index: dict | None, page_deltas: bool = False):
        self.conn, self.app_name, self.backup_id = conn, app_name, backup_id
        self.page_deltas = page_deltas  # changed relation files as page deltas (plan), else stored whole
        self.root = Path(data_directory)
        self.full = parent_index is None
        self.parent_files = {} if self.full else {f["path"]: f for f in parent_index["files"]}
        # A file whose mtime is not at least a second older than the parent's start may have changed unseen.
        self.parent_cutoff = 0 if self.full else int(parent_index["started_at"]) - 1
        self.info = IncrementalInfo()
        self._session = self._cur = None
        self._start_lsn = ""

    def chunks(self) -> Iterator[bytes]:
        try:
            self.start()
            yield from self.planned_chunks(self.plan(), {})  # a full: every entry "dir" or "whole"
        finally:
            self.close()

    def start(self) -> None:
        """Check the data directory against the server, reserve the WAL, pg_backup_start (non-exclusive)."""
        if not (self.root / "global" / "pg_control").is_file():
            raise UserError(f"The data directory {self.root} is not readable here (no global/pg_control).")
        self._session = catalog.connect(self.conn, app_name=self.app_name)
        try:
            cur = self._cur = self._session.cursor()
            self.info.server = catalog.server_info(cur)
            on_disk = read_system_identifier(self.root)
            if self.info.system_identifier and on_disk != self.info.system_identifier:
                raise UserError(f"The data directory {self.root} belongs to another cluster (system identifier "
                                f"{on_disk}, the server says {self.info.system_identifier}).")
            self.info.server.setdefault("system_identifier", on_disk)
            self.info.wal_segment_size = int(cur.execute(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()[0])
            self._reserve_wal(cur)
            self.info.started_at = time.time()
            try:
                self._start_lsn = cur.execute("SELECT pg_backup_start(%s, true)::text",
                                              [f"backupsite {self.backup_id}"]).fetchone()[0]
            except psycopg.Error as exc:
                hint = ""
                if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                    hint = (f" A backup read from the data directory needs a role that may run pg_backup_start and "
                            f"pg_backup_stop (GRANT EXECUTE ON FUNCTION pg_backup_start, pg_backup_stop TO "
                            f"{self.conn.user}; docs/OPERATIONS.md).")
                raise IncrementalError(f"pg_backup_start was refused: {catalog.first_line(exc)}.{hint}") from None
        except psycopg.Error as exc:
            raise IncrementalError(f"Source database error: {catalog.first_line(exc)}") from None

    def stop_chunks(self) -> Iterator[bytes]:
        """pg_backup_stop; the tar members of its backup_label (and tablespace_map), the WAL, the tar's end."""
        try:
            lsn, label, spcmap = self._cur.execute(
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)").fetchone()
        except psycopg.Error as exc:
            raise IncrementalError(f"Source database error: {catalog.first_line(exc)}") from None
        mtime = int(time.time())
        yield from tarstream.file_member("backup_label", size=len(label.encode()), mtime=mtime,
                                         chunks=[label.encode()])
        if spcmap:
            yield from tarstream.file_member("tablespace_map", size=len(spcmap.encode()), mtime=mtime,
                                             chunks=[spcmap.encode()])
        parsed = parse_backup_label(label)
        self.info.lsn_start = parsed.get("lsn_start", self._start_lsn)
        self.info.timeline = parsed.get("timeline")
        self.info.lsn_stop = lsn
        yield from self._wal(parse_lsn(self.info.lsn_start), parse_lsn(lsn))
        yield tarstream.end_of_archive()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()  # ends a backup still in progress (non-exclusive backups end with their session)
            self._session = self._cur = None

    def listing(self) -> list[tuple[str, str, os.stat_result]]:
        """Every directory and file to back up as (type, rel, stat), in walk order; the full's file index."""
        out = []
        for kind, rel, path, st in self._entries():
            out.append((kind, rel, st))
            if kind == "dir":
                self._dir(rel, st)
            else:
                self.info.files.append({"path": rel, "type": "file", "size": st.st_size, "mtime": int(st.st_mtime),
                                        "backup": self.backup_id})
                self.info.stored_files += 1
                self.info.stored_bytes += st.st_size
        return out

    def layout(self, listed: list[tuple[str, str, os.stat_result]]) -> "TarLayout":
        """The tar of the listed entries as it will be written (headers made now), to be cut in byte ranges."""
        return TarLayout(self.root, listed)

    def _reserve_wal(self, cur) -> None:
        try:
            cur.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                        [f"backupsite_{secrets.token_hex(6)}"])
        except psycopg.Error:
            pass  # no REPLICATION: the WAL is copied right after the stop, before it is normally recycled

    def _entries(self) -> Iterator[tuple[str, str, Path, os.stat_result]]:
        """("dir" | "file", rel, path, stat) of everything a backup holds, directories before their contents."""
        stack = [("", self.root)]
        while stack:
            rel_dir, directory = stack.pop()
            top = rel_dir.split("/", 1)[0]
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile (a dropped relation): WAL replay agrees
                if stat.S_ISLNK(st.st_mode):
                    if rel == "pg_wal":  # pg_wal elsewhere (initdb --waldir): an empty directory here
                        yield "dir", rel, Path(entry.path), st
                        continue
                    raise IncrementalError(f"{rel} is a link: tablespaces and linked directories are not "
                                           "supported by backups that read the data directory yet.")
                if stat.S_ISDIR(st.st_mode):
                    if entry.name.startswith("pgsql_tmp"):
                        continue
                    yield "dir", rel, Path(entry.path), st
                    if rel_dir == "" and entry.name in EXCLUDED_DIR_CONTENTS:
                        if entry.name == "pg_wal":
                            yield "dir", "pg_wal/archive_status", Path(entry.path), st
                        continue
                    stack.append((rel, Path(entry.path)))
                elif stat.S_ISREG(st.st_mode) and not excluded_file(entry.name) and top not in EXCLUDED_DIR_CONTENTS:
                    yield "file", rel, Path(entry.path), st

    def _dir(self, rel: str, st: os.stat_result) -> bytes:
        self.info.files.append({"path": rel, "type": "dir", "size": 0, "mtime": int(st.st_mtime),
                                "backup": self.backup_id})
        return tarstream.dir_member(rel, int(st.st_mtime))

    def _unchanged(self, rel: str, st: os.stat_result) -> dict | None:
        """The parent's entry of a file that has not changed since (same size and mtime, older than the parent)."""
        old = self.parent_files.get(rel)
        mtime = int(st.st_mtime)
        if (old is not None and old["type"] == "file" and old["size"] == st.st_size and old["mtime"] == mtime
                and mtime < self.parent_cutoff):
            return old
        return None

    def plan(self) -> list[tuple[str, str, Path, os.stat_result, str]]:
        """Every entry as (kind, rel, path, stat, action), in walk order, after start(): action "dir", "same"
        (the parent's entry stands), "delta" (a changed relation file the parent has: stored as page deltas,
        apps/backups/delta_source.py) or "whole"."""
        out = []
        for kind, rel, path, st in self._entries():
            if kind == "dir":
                action = "dir"
            elif self._unchanged(rel, st) is not None:
                action = "same"
            else:
                action = ("delta" if self.page_deltas and deltable(rel, st.st_size, self.parent_files.get(rel))
                          else "whole")
            out.append((kind, rel, path, st, action))
        return out

    def planned_chunks(self, plan: list, delta_entries: dict[str, dict]) -> Iterator[bytes]:
        """The tar of a planned incremental, after its deltas were written (`delta_entries`: their index entries):
        the directories, the files stored whole, the label and the WAL; `info.files` in walk order."""
        for kind, rel, path, st, action in plan:
            if action == "dir":
                yield self._dir(rel, st)
            elif action == "same":
                self.info.files.append({**self.parent_files[rel], "path": rel})
            elif action == "delta":
                if rel not in delta_entries:
                    raise IncrementalError(f"No page delta was written for {rel}.")
                self.info.files.append(delta_entries[rel])
                self.info.delta_files += 1
            else:
                yield from self._file(rel, path, st)
        yield from self.stop_chunks()

    def _file(self, rel: str, path: Path, st: os.stat_result) -> Iterator[bytes]:
        size, mtime = st.st_size, int(st.st_mtime)
        entry = {"path": rel, "type": "file", "size": size, "mtime": mtime, "backup": self.backup_id}
        if self.full:  # as a pg_basebackup full's index: no per-file hash (the artifact's SHA-256 covers it)
            yield from _stored(path, rel, st)
        else:
            digest, read = hashlib.sha256(), [0]
            try:
                fh = open(path, "rb")
            except FileNotFoundError:
                return
            with fh:
                yield from tarstream.file_member(rel, size=size, mtime=mtime,
                                                 chunks=_hashed(fh, digest, size, read))
            if read[0] < size:  # the file shrank: the zero padding stored is part of its content
                digest.update(bytes(size - read[0]))
            entry["sha256"] = digest.hexdigest()
        self.info.files.append(entry)
        self.info.stored_files += 1
        self.info.stored_bytes += size

    def _wal(self, start: int, stop: int) -> Iterator[bytes]:
        """The WAL segments from the start to the stop LSN; the last cut after the stop LSN's page."""
        segsize, tli = self.info.wal_segment_size, self.info.timeline or 1
        wal_dir = self.root / "pg_wal"
        for name in sorted(os.listdir(wal_dir)):
            if name.endswith(".history"):
                yield from self._copy_wal(wal_dir / name, f"pg_wal/{name}", None)
        first, last = start // segsize, stop // segsize
        for segno in range(first, last + 1):
            name = segment_name(tli, segno, segsize)
            # The stop LSN ends the backup-end record; one page more than needed, for safety.
            used = segsize if segno < last else min(segsize, (stop % segsize // WAL_PAGE + 2) * WAL_PAGE)
            yield from self._copy_wal(wal_dir / name, f"pg_wal/{name}", used)
        if not self.info.wal:
            raise IncrementalError(f"No WAL between {format_lsn(start)} and {format_lsn(stop)} was found.")

    def _copy_wal(self, path: Path, rel: str, used: int | None) -> Iterator[bytes]:
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise IncrementalError(f"WAL file {path.name}, needed by this backup, is already gone from pg_wal; "
                                   "raise wal_keep_size or give the backup role REPLICATION.") from None
        with fh:
            size = used if used is not None else os.fstat(fh.fileno()).st_size
            yield from tarstream.file_member(rel, size=size, mtime=int(time.time()), chunks=_read(fh, size))
        if used is not None:
            self.info.wal.append(path.name)


class TarLayout:
    """The tar members of listed entries at fixed offsets (each file at its listed size: cut, or zero-padded
    if it shrank or is gone), so that any byte range of the tar can be written on its own, by another process.
    Only each header's length is kept (a header is made again where it is written): memory grows with the
    number of files by a small tuple each, not by their headers."""

    def __init__(self, root: Path, listed: list[tuple[str, str, os.stat_result]]):
        self.root = root
        self.members = []  # (offset, header length, rel, size: -1 for a directory, mtime)
        pos = 0
        for kind, rel, st in listed:
            size, mtime = (st.st_size if kind == "file" else -1), int(st.st_mtime)
            header_len = _header_len(rel, size, mtime)
            self.members.append((pos, header_len, rel, size, mtime))
            pos += header_len + max(size, 0) + (-max(size, 0) % tarstream.BLOCK)
        self.size = pos
        self._offsets = [m[0] for m in self.members]

    def cuts(self, n: int) -> list[int]:
        """n + 1 offsets cutting the tar into n ranges of about equal size (anywhere, even inside a file's data,
        never inside a header: such a cut is moved to the header's start)."""
        return self._at_headers([self.size * i // n for i in range(n + 1)])

    def _at_headers(self, cuts: list[int]) -> list[int]:
        """The cuts, each one that falls inside a member's header moved to that header's start (a part then
        starts in a file's data or padding, or at a header: what its extractor can begin with, part_start)."""
        out = []
        for cut in cuts:
            i = bisect.bisect_right(self._offsets, cut) - 1
            if 0 <= i < len(self.members) and cut < self.size:
                pos, header_len = self.members[i][:2]
                if pos < cut < pos + header_len:
                    cut = pos
            out.append(cut)
        return out

    def part_start(self, cut: int) -> dict:
        """What an extractor starting at tar offset `cut` needs (docs/FORMAT.md, "tar_parts"): `member`, the
        position (in the listing, so in the file index) of the first member whose header lies at or after the
        cut; and when the cut falls inside a member's data or padding, that member's `path`, `mtime`, the
        `file_offset` of the cut in its data, the data bytes `left` after it and the `pad` bytes after those."""
        record = {"offset": cut, "member": len(self.members), "path": "", "mtime": 0, "file_offset": 0,
                  "left": 0, "pad": 0}
        if cut >= self.size:
            return record
        i = bisect.bisect_right(self._offsets, cut) - 1
        pos, header_len, rel, size, mtime = self.members[i]
        if cut == pos:
            record["member"] = i
            return record
        data, length = pos + header_len, max(size, 0)
        if cut < data:
            raise ValueError(f"A cut at {cut} falls inside the tar header of {rel}.")
        record.update(member=i + 1, path=rel, mtime=mtime)
        if cut < data + length:
            record.update(file_offset=cut - data, left=data + length - cut, pad=-length % tarstream.BLOCK)
        else:
            record.update(file_offset=length, pad=data + length + (-length % tarstream.BLOCK) - cut)
        return record

    def balanced_cuts(self, n: int, *, every: int = 8 << 20, sample: int = 64 << 10) -> list[int]:
        """n + 1 offsets cutting the tar into n ranges of about equal work, anywhere. The work of each `every`
        bytes is estimated from the CPU time zstd level 1 takes on a `sample` of them (rows that compress 30:1
        cost a third less than rows that compress 10:1: equal halves of pgbench took 1.2 and 1.7 s), plus a
        per-byte cost for reading; about 1 % of the data is read for it."""
        import zstandard

        if n < 2 or self.size < 2 * every:
            return self.cuts(n)
        compressor = zstandard.ZstdCompressor(level=1)
        regions = []  # (start, end, estimated seconds)
        for start in range(0, self.size, every):
            end = min(self.size, start + every)
            data = b"".join(self.chunks(start, min(end, start + sample)))
            t = time.process_time()
            compressor.compress(data)
            per_byte = (time.process_time() - t) / max(1, len(data)) + READ_SECONDS_PER_BYTE
            regions.append((start, end, (end - start) * per_byte))
        share = sum(w for *_, w in regions) / n
        cuts, done = [0], 0.0
        for start, end, w in regions:
            while len(cuts) < n and done + w >= share * len(cuts):
                cuts.append(start + int((end - start) * (share * len(cuts) - done) / w) if w else start)
            done += w
        while len(cuts) < n:
            cuts.append(self.size)
        cuts.append(self.size)
        return self._at_headers(cuts)

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """The tar's bytes from `start` to `stop`."""
        first = max(0, bisect.bisect_right(self._offsets, start) - 1)
        for pos, header_len, rel, size, mtime in itertools.islice(self.members, first, None):
            data, length = pos + header_len, max(size, 0)
            end = data + length + (-length % tarstream.BLOCK)
            if end <= start:
                continue
            if pos >= stop:
                break
            lo, hi = max(start, pos), min(stop, data)
            if lo < hi:
                yield _header(rel, size, mtime)[lo - pos:hi - pos]
            lo, hi = max(start, data), min(stop, data + length)
            if lo < hi:
                yield from _read_range(self.root / rel, lo - data, hi - data)
            lo, hi = max(start, data + length), min(stop, end)
            if lo < hi:
                yield bytes(hi - lo)


def _header(rel: str, size: int, mtime: int) -> bytes:
    """The tar header of a directory (size -1) or of a file of `size` bytes, as _dir and _stored write them."""
    if size < 0:
        return tarstream.dir_member(rel, mtime)
    return tarstream.file_header(rel, size=size, mtime=mtime)


# A PAX header is one ustar block when every field fits it: an ASCII name of at most 100 characters (a directory's
# with its "/"), and size and mtime below 8**11 (tarfile.TarInfo.create_pax_header).
_USTAR_NUMBER_LIMIT = 8 ** 11


def _header_len(rel: str, size: int, mtime: int) -> int:
    """len(_header(rel, size, mtime)), without making the header in the common case (a full's layout is made
    before its writer processes start: ~30 ms for 1,300 headers)."""
    name_len = len(rel) + (1 if size < 0 and not rel.endswith("/") else 0)
    if name_len <= 100 and rel.isascii() and size < _USTAR_NUMBER_LIMIT and 0 <= mtime < _USTAR_NUMBER_LIMIT:
        return tarstream.BLOCK
    return len(_header(rel, size, mtime))


def _read_range(path: Path, offset: int, end: int) -> Iterator[bytes]:
    """Bytes offset..end of a file, zero-padded past its end (a file that shrank, or is gone, since listed)."""
    left = end - offset
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        fh = None
    if fh is not None:
        with fh:
            if offset:
                fh.seek(offset)
            while left and (chunk := fh.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
    while left:
        zeros = min(left, CHUNK)
        yield bytes(zeros)
        left -= zeros


def _stored(path: Path, rel: str, st: os.stat_result) -> Iterator[bytes]:
    """The tar member of one file of a full, at the size it was listed with; a file removed since (a dropped
    relation) is stored empty at that size, zero-padded like a file that shrank: WAL replay removes it."""
    return tarstream.file_member(rel, size=st.st_size, mtime=int(st.st_mtime), chunks=_read_range(path, 0, st.st_size))


def _read(fh, limit: int) -> Iterator[bytes]:
    left = limit
    while left and (chunk := fh.read(min(CHUNK, left))):
        left -= len(chunk)
        yield chunk


def _hashed(fh, digest, limit: int, read: list[int]) -> Iterator[bytes]:
    for chunk in _read(fh, limit):
        digest.update(chunk)
        read[0] += len(chunk)
        yield chunk

