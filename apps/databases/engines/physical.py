"""Physical full backups with pg_basebackup: one tar stream of the whole cluster, with the WAL it needs.

`pg_basebackup -D - -Ft -X fetch` writes the base tar (data files, backup_label, the WAL from start to
stop in pg_wal/) to stdout; we pass it on in chunks, never to disk. On the way a header scan lists
every file (path, size, mtime): the parent list of the next incremental. The start LSN and timeline
come from the backup_label in the stream, the stop LSN from pg_basebackup's `-v` messages.
The password travels in the environment (PGPASSWORD), never on the command line.
"""
import fcntl
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.lsn import parse as parse_lsn, segment_name, to_text as format_lsn  # noqa: F401
from apps.databases.engines.tarstream import TarScanner
from apps.databases.pgtools import pg_bin

CHUNK = 1 << 20
# pg_basebackup's stdout pipe is grown from the default 64 KiB to this (Linux: at most fs.pipe-max-size, 1 MiB by
# default, for an unprivileged user): pg_basebackup keeps streaming while we compress a chunk, and each read
# returns a whole chunk instead of 16 pieces of 64 KiB.
PIPE_SIZE = 1 << 20
ARTIFACT = "base.tar"
INDEX_ARTIFACT = "files.json"
# Files of one backup only: never carried into the file index that a later incremental builds on.
BACKUP_ONLY_FILES = ("backup_label", "tablespace_map", "backup_manifest")

REPLICATION_REFUSED = re.compile(
    r"must be superuser or replication role|permission denied to start WAL sender|"
    r"no pg_hba\.conf entry for replication connection|pg_hba\.conf rejects replication connection",
    re.IGNORECASE,
)


class BaseBackupError(Exception):
    pass


# --- LSNs and WAL file names -------------------------------------------------------------------------


def parse_backup_label(text: str) -> dict:
    """START WAL LOCATION, START TIMELINE, ... of a backup_label file."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip()
    out = {}
    if "START WAL LOCATION" in fields:
        out["lsn_start"] = fields["START WAL LOCATION"].split()[0]
    if "START TIMELINE" in fields:
        out["timeline"] = int(fields["START TIMELINE"])
    return out


def is_backup_specific(path: str) -> bool:
    """Files that belong to one backup's moment (its label, its WAL), not to the cluster's file set."""
    return path in BACKUP_ONLY_FILES or (path.startswith("pg_wal/") and path != "pg_wal/archive_status")


def _grow_pipe(pipe) -> None:
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):  # not Linux, or over the user's pipe quota: the default size works too
        pass


def _scanned(pipe, scanner: TarScanner) -> Iterator[bytes]:
    while chunk := pipe.read(CHUNK):
        scanner.feed(chunk)
        yield chunk


# --- the base backup ----------------------------------------------------------------------------------


@dataclass
class BaseBackupInfo:
    lsn_start: str = ""
    lsn_stop: str = ""
    timeline: int | None = None
    server: dict = field(default_factory=dict)
    started_at: float = 0.0  # epoch seconds, before the checkpoint: files changed since are never "unchanged"
    files: list[dict] = field(default_factory=list)

    @property
    def system_identifier(self) -> str:
        return self.server.get("system_identifier", "")


class BaseBackup:
    """Iterate `chunks()` to stream the base tar; `info` is complete once the stream ended cleanly."""

    def __init__(self, conn: PgConn, *, app_name: str, backup_id: str):
        self.conn, self.app_name, self.backup_id = conn, app_name, backup_id
        self.info = BaseBackupInfo()

    def chunks(self) -> Iterator[bytes]:
        from concurrent.futures import ThreadPoolExecutor

        self.info.started_at = time.time()
        scanner = TarScanner(capture=["backup_label"])
        args = [pg_bin("pg_basebackup"), "--no-password", "-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast",
                "-v", "--manifest-checksums=NONE", f"--label=backupsite {self.backup_id}"]
        # The server's identity is asked on a connection of its own while pg_basebackup waits for the checkpoint.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="basebackup-info") as pool, \
                tempfile.TemporaryFile() as err:
            server = pool.submit(self._server_info)
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=self.conn.env(self.app_name))
            _grow_pipe(proc.stdout)
            # Read here, not in a thread of its own: a read-ahead thread cost more CPU and wall time than it saved
            # in alternating runs (GIL hand-offs); the 1 MiB pipe lets pg_basebackup run a chunk ahead instead.
            stream = _scanned(proc.stdout, scanner)
            try:
                yield from stream
                rc = proc.wait()
            finally:
                if proc.poll() is None:  # the consumer gave up: stop pg_basebackup
                    proc.kill()
                    proc.wait()
                stream.close()
                proc.stdout.close()
            self.info.server = server.result()  # a refused connection is reported as such (UserError)
            err.seek(0)
            messages = err.read().decode(errors="replace")
        if rc != 0:
            raise BaseBackupError(self._explain(rc, messages))
        self._record(scanner, messages)

    def _server_info(self) -> dict:
        with catalog.connect(self.conn, app_name=self.app_name) as c:
            return catalog.server_info(c.cursor())

    def _explain(self, rc: int, messages: str) -> str:
        tail = "\n".join(line for line in messages.strip().splitlines()[-5:])[-1500:] or "no message"
        if REPLICATION_REFUSED.search(messages):
            return (f"pg_basebackup could not open a replication connection to {self.conn.host}:{self.conn.port} "
                    f"as {self.conn.user!r}: {tail}. A physical backup needs a role with the REPLICATION "
                    f"attribute (ALTER ROLE {self.conn.user} REPLICATION) and a `host replication "
                    f"{self.conn.user} <address> scram-sha-256` line in pg_hba.conf (docs/OPERATIONS.md).")
        return f"pg_basebackup exited with status {rc}: {tail}"

    def _record(self, scanner: TarScanner, messages: str) -> None:
        label = scanner.captured.get("backup_label")
        if label is None:
            raise BaseBackupError("The base backup stream has no backup_label; it is not a usable base backup.")
        self.info.__dict__.update(parse_backup_label(label.decode(errors="replace")))
        stop = re.search(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)", messages)
        if not stop or not self.info.lsn_start:
            raise BaseBackupError("pg_basebackup did not report the backup's start and stop WAL locations.")
        self.info.lsn_stop = stop.group(1)
        self.info.files = [
            {"path": m.path, "type": m.type, "size": m.size, "mtime": m.mtime, "backup": self.backup_id}
            for m in scanner.members if m.type in ("file", "dir") and not is_backup_specific(m.path)
        ]
        links = [m.path for m in scanner.members if m.type in ("symlink", "hardlink")]
        if links:
            raise BaseBackupError(f"The cluster has links in its data directory ({', '.join(links[:3])}): "
                                  "tablespaces are not supported by physical backups yet.")
