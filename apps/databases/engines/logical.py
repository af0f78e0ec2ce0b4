"""Logical backups with pg_dump and restores with pg_restore / psql.

Per-table row counts are read from the dump stream itself as it passes
(dump_rows), so they describe exactly the data in the artifact and cost the
server nothing. The counter is fed in the reading thread, between reads: its
scans are C byte counts (about 1 ms per MiB of short rows, far less on long
ones) while pg_dump fills the 1 MiB pipe, and in a thread of its own it cost
more CPU than the counting (GIL hand-offs), which on two busy CPUs is wall time
(docs/BENCHMARKS.md, logical backup). pg_dump runs in a snapshot we export and
hold, so when the stream cannot be read for counts, a SQL count in that same
snapshot is the fallback. Connection settings and the password go through the environment;
arguments are a list; nothing runs through a shell.
"""
import fcntl
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from apps.core.errors import UserError
from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.engines import dump_rows
from apps.databases.pgtools import pg_bin

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# pg_dump's stdout pipe holds this much (Linux F_SETPIPE_SZ; capped by /proc/sys/fs/pipe-max-size, 1 MiB by
# default): pg_dump writes on while we hash, compress, encrypt and store the previous chunk, instead of
# stopping after the default 64 KiB. On pgbench rows pg_dump is the slow side, and each stop showed.
PIPE_SIZE = 1 << 20
FIONREAD = getattr(termios, "FIONREAD", None)  # bytes waiting in a pipe (Linux, the BSDs, macOS)
NAP_MIN, NAP_MAX = 0.0005, 0.02  # seconds between looks at a pipe that is still filling
FORMATS = {
    # name: (pg_dump arguments, artifact file name, restored with)
    "custom": (["--format=custom", "--compress=0"], "dump.pgc", "pg_restore"),
    "plain": (["--format=plain"], "dump.sql", "psql"),
    "schema": (["--format=plain", "--schema-only"], "schema.sql", "psql"),
    "data": (["--format=plain", "--data-only"], "data.sql", "psql"),
}


class DumpError(Exception):
    pass


class RestoreError(Exception):
    pass


def _tail(fh, limit: int = 2000) -> str:
    fh.seek(0)
    text = fh.read().decode(errors="replace").strip()
    return text[-limit:]


@dataclass
class DumpInfo:
    row_counts: dict[str, int] = field(default_factory=dict)
    server: dict = field(default_factory=dict)
    content_hashes: dict[str, str] = field(default_factory=dict)


class LogicalDump:
    """Iterate `chunks()` to stream the dump; `info` is filled once the stream ends cleanly."""

    def __init__(self, conn: PgConn, *, fmt: str, app_name: str, count_rows: bool = True,
                 hash_max_bytes: int = 0):
        if fmt not in FORMATS:
            raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
        self.conn, self.fmt, self.app_name, self.count_rows = conn, fmt, app_name, count_rows
        self.hash_max_bytes = hash_max_bytes  # tables up to this size get a content hash (0: none)
        self.info = DumpInfo()

    @property
    def artifact_name(self) -> str:
        return FORMATS[self.fmt][1]

    def chunks(self) -> Iterator[bytes]:
        snap = catalog.connect(self.conn, app_name=f"{self.app_name}-snapshot", autocommit=False)
        try:
            snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            snap.read_only = True
            cur = snap.cursor()
            snapshot = cur.execute("SELECT pg_export_snapshot()").fetchone()[0]
            self.info.server = catalog.server_info(cur)
            counter = dump_rows.counter_for(self.fmt) if self.count_rows else None
            hashing = None
            if self.hash_max_bytes and self.fmt != "schema":
                hashing = _SideHashes(self.conn, snapshot, self.hash_max_bytes, app_name=f"{self.app_name}-hashes")
            try:
                if counter is None:
                    yield from self._run_pg_dump(snapshot)
                else:
                    feed = counter.feed  # never raises: a parse problem only makes result() None
                    for chunk in self._run_pg_dump(snapshot):
                        yield chunk  # first to the consumer: its zstd workers and hash thread start on it
                        feed(chunk)  # then counted here, while they work and pg_dump fills the pipe
                counts = counter.result() if counter is not None else None
                if hashing is not None:
                    self.info.content_hashes = hashing.result()
            finally:
                if hashing is not None:
                    hashing.join()
            if counts is None and self.count_rows and self.fmt != "schema":
                # The stream could not be read for counts: ask the server, in the very snapshot pg_dump used.
                counts = catalog.row_counts(cur)
            self.info.row_counts = counts or {}
        except psycopg.Error as exc:
            raise DumpError(f"Source database error: {catalog.first_line(exc)}") from None
        finally:
            snap.close()

    def _run_pg_dump(self, snapshot: str) -> Iterator[bytes]:
        args = [pg_bin("pg_dump"), "--no-password", f"--snapshot={snapshot}", *FORMATS[self.fmt][0]]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=self.conn.env(self.app_name)
            )
            capacity = grow_pipe(proc.stdout.fileno())
            try:
                yield from read_filled(proc.stdout, proc, capacity)
                rc = proc.wait()
            finally:
                if proc.poll() is None:  # the consumer gave up (storage error, cancel): stop pg_dump
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            if rc != 0:
                raise DumpError(f"pg_dump exited with status {rc}: {_tail(err) or 'no message'}")


def read_filled(stream, proc: subprocess.Popen, capacity: int) -> Iterator[bytes]:
    """The pipe's data in chunks of up to CHUNK bytes, each read once the pipe holds half its capacity (or the
    writer has ended), until end of file.

    pg_dump writes 4 KiB at a time. A reader blocked in read() is woken by every write and gets what is there
    (about 14 KiB a read on pgbench rows: 50,000 wake-ups per GB on both sides); waiting for half the pipe
    takes one read and a nap or two per chunk. The writer never waits for us meanwhile: the other half is free.
    """
    low = min(CHUNK, capacity // 2) if capacity and FIONREAD is not None else 0
    if not low:  # the pipe's size is unknown: plain reads
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    fd = stream.fileno()
    while True:
        nap = NAP_MIN
        while _available(fd) < low and proc.poll() is None:
            time.sleep(nap)
            nap = min(nap * 2, NAP_MAX)  # a writer that waits (a lock, the network) is looked at less often
        chunk = os.read(fd, CHUNK)  # all there is, up to CHUNK: one system call
        if not chunk:
            return
        yield chunk


def _available(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Ask for a pipe buffer of `size` bytes (or the most allowed); returns the size it has (0: unknown)."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is None:
        return 0
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = size
    try:
        return fcntl.fcntl(fd, setter, min(size, limit))
    except OSError:  # not a pipe, or not allowed: the default buffer works, only slower
        return 0


class _SideHashes(threading.Thread):
    """Content hashes of the small tables, on a second connection that imports the dump's snapshot, while the
    dump streams: the server reads the small tables in parallel with pg_dump, so the backup waits only for
    whatever is left when the dump ends. Extra evidence for a restore check, never a reason to fail the backup:
    any error only means no hashes."""

    def __init__(self, conn: PgConn, snapshot: str, max_bytes: int, *, app_name: str):
        super().__init__(name="content-hashes", daemon=True)
        self.conn, self.snapshot, self.max_bytes, self.app_name = conn, snapshot, max_bytes, app_name
        self.hashes: dict[str, str] = {}
        self.start()

    def run(self) -> None:
        from apps.databases import content_hash

        try:
            with psycopg.connect(**self.conn.kwargs(self.app_name), autocommit=False) as c:
                c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                c.read_only = True
                cur = c.cursor()
                cur.execute("SET TRANSACTION SNAPSHOT %s" % _literal(self.snapshot))
                self.hashes = content_hash.small_table_hashes(cur, max_bytes=self.max_bytes)
                c.rollback()
        except Exception as exc:  # psycopg or anything else: the backup goes on without hashes
            log.warning("No content hashes for this backup: %s", catalog.first_line(exc))
            self.hashes = {}

    def result(self) -> dict[str, str]:
        self.join()
        return self.hashes


def _literal(value: str) -> str:
    """A snapshot id as an SQL literal (SET TRANSACTION SNAPSHOT takes no parameters); ids are hex and dashes."""
    if not all(ch in "0123456789ABCDEFabcdef-" for ch in value):
        raise DumpError(f"Unexpected snapshot id {value!r}.")
    return f"'{value}'"


def restore(
    conn: PgConn,
    raw_chunks: Iterable[bytes],
    *,
    fmt: str,
    table: str | None = None,
    schema: str | None = None,
    no_owner: bool = False,
    app_name: str = "backupsite-restore",
) -> None:
    """Feed a dump to pg_restore (custom) or psql (plain SQL) in one transaction: all or nothing.

    The transaction commits only once `raw_chunks` has ended cleanly (every frame and checksum
    passed), whatever happens to this process: if it dies, the tool sees its input end early,
    and the server rolls back.
    """
    tool = FORMATS[fmt][2]
    if (table or schema) and tool != "pg_restore":
        raise UserError("Restoring a single table or schema needs a backup in the custom format.")
    prologue = epilogue = token = b""
    if tool == "pg_restore":
        # An empty --dbname still restores into a database (not to a script), and libpq then takes the
        # name from PGDATABASE, which it never reads as a connection string (a --dbname value it would).
        # An archive cut short is a fatal error for pg_restore, so its own transaction never commits.
        args = [pg_bin("pg_restore"), "--no-password", "--exit-on-error", "--single-transaction", "--dbname="]
        if no_owner:
            args += ["--no-owner", "--no-privileges"]
        if schema:
            args.append(f"--schema={schema}")
        if table:
            args.append(f"--table={table}")
    else:
        # Not psql --single-transaction: it commits at the end of its input, and a pipe ends just the same
        # when we die. We open the transaction and send COMMIT only after a clean end of the stream, then
        # a token that psql prints only if it really got there (not swallowed by a COPY or a quote).
        args = [pg_bin("psql"), "--no-password", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"]
        token = secrets.token_hex(16).encode()
        prologue, epilogue = b"BEGIN;\n", b"\nCOMMIT;\n\\echo " + token + b"\n"
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=err, env=conn.env(app_name))
        try:
            # The last chunk waits for the stream's clean end: without its final bytes the tool cannot finish.
            pending = prologue
            for chunk in raw_chunks:
                if pending:
                    proc.stdin.write(pending)
                pending = chunk
            proc.stdin.write(pending + epilogue)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the tool stopped early; its status and message say why
        except BaseException:
            proc.kill()  # the source failed (e.g. a corrupt frame): abort so the transaction rolls back
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            raise RestoreError(f"{tool} exited with status {rc}: {_tail(err) or 'no message'}")
        if token and not _tail(out, 200).endswith(token.decode()):
            raise RestoreError("psql ended without reaching the final COMMIT; nothing was restored.")


def check_restorable_into(conn: PgConn, *, table: str | None, schema: str | None) -> None:
    """Refuse to restore over existing data: a whole database needs an empty one, a table must not exist."""
    with catalog.connect(conn) as c:
        existing = catalog.user_tables(c.cursor())
    if table:
        clash = [f"{s}.{t}" for s, t in existing if t == table and (schema is None or s == schema)]
        if clash:
            raise UserError(f"Table {clash[0]} already exists in {conn.dbname!r}; drop or rename it first.")
    elif not schema and existing:
        raise UserError(
            f"Database {conn.dbname!r} is not empty ({len(existing)} tables); restore into a new or empty database."
        )
