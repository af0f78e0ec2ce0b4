"""The `restore` verification level: prove a backup by restoring it, into a scratch cluster that always goes.

Logical backups: a fresh cluster is initdb'ed in a scratch directory (apps/verification/scratch.py; SCRAM
password known only to this process, superuser named like the target's user so the dump's ownership
commands apply), the dump is restored into a new database through the authenticating decoder, and the
restored database's per-table row counts are compared with those recorded at backup time, and the content
hash of every table that had one at backup time (small tables, apps/databases/content_hash.py) with it.

Physical backups (a full, or an incremental with its chain): the data directory is rebuilt in the scratch
directory, started on a free port (its own config: no archiving, no replication, local trust through a
socket only the server user can reach, TCP refused), and checked with amcheck: `verify_heapam` on every
table and `bt_index_check` on every B-tree index of every database. Then it is stopped and removed.

Either way the scratch directory and any server in it are removed on the way out, also on failure; a run
killed outright is cleaned up by the next one (scratch.sweep).
"""
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from apps.backups import restores, sources
from apps.backups.models import Backup, BackupFormat
from apps.databases import catalog, clusters, content_hash
from apps.databases.connection import PgConn
from apps.databases.engines import logical
from apps.jobs.progress import JobContext, note
from apps.verification import scratch

log = logging.getLogger(__name__)
SCRATCH_DB = "verify_restore"


@dataclass
class RestoreCheck:
    problems: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    bytes_read: int = 0
    location: object = None  # the StorageLocation read from


def check(backup: Backup, ctx: JobContext | None = None) -> RestoreCheck:
    job_id = ctx.job.pk if ctx is not None else None
    if backup.format == BackupFormat.BASEBACKUP:
        return _physical(backup, ctx, job_id)
    return _logical(backup, ctx, job_id)


def _logical(backup: Backup, ctx: JobContext | None, job_id: str | None) -> RestoreCheck:
    out = RestoreCheck()
    artifact = backup.artifacts.get()
    target_user = backup.database_target.user if backup.database_target else "postgres"
    with scratch.directory(job_id) as base:
        t0 = time.monotonic()
        cluster = clusters.LocalCluster(base=base / "cluster", port=clusters.free_port(), user=target_user,
                                        password=secrets.token_urlsafe(24))
        cluster.initdb({"lc_messages": "'C'"})
        cluster.start()
        out.details["cluster_seconds"] = round(time.monotonic() - t0, 3)
        note(ctx, logger=log, message=f"scratch cluster for {backup.pk} on port {cluster.port} in {base.name}")
        clusters.create_database(cluster.conn(), SCRATCH_DB)
        conn = cluster.conn(SCRATCH_DB)
        t1 = time.monotonic()
        try:
            backend = sources.source_for(backup, ctx, deep=False)
            out.location = backend.location
            stream = restores.artifact_stream(backup=backup, artifact=artifact, ctx=ctx, backend=backend)
            logical.restore(conn, stream, fmt=backup.format, no_owner=backup.format == BackupFormat.CUSTOM,
                            app_name="backupsite-verify")
        except Exception as exc:
            out.problems.append(f"the restore failed: {exc}")
            out.details["restore_seconds"] = round(time.monotonic() - t1, 3)
            return out
        out.bytes_read = artifact.size_stored
        out.details["restore_seconds"] = round(time.monotonic() - t1, 3)
        out.details["bytes_restored"] = artifact.size_raw
        _compare(backup, conn, out)
    return out


def _compare(backup: Backup, conn: PgConn, out: RestoreCheck) -> None:
    with catalog.connect(conn, app_name="backupsite-verify", autocommit=False) as c:
        cur = c.cursor()
        actual = catalog.row_counts(cur)
        hashes = content_hash.hashes_of(cur, sorted(backup.content_hashes)) if backup.content_hashes else {}
        c.rollback()
    expected = backup.row_counts or {}
    wrong = {name: (n, actual.get(name)) for name, n in expected.items() if actual.get(name) != n}
    out.details.update(tables=len(expected), rows_compared=sum(expected.values()),
                       row_counts={name: actual.get(name) for name in sorted(expected)},
                       tables_hashed=len(hashes))
    if wrong:
        detail = ", ".join(f"{name}: expected {exp} rows, restored {got}" for name, (exp, got) in sorted(wrong.items())[:5])
        out.problems.append(f"restored row counts differ from the backup's: {detail}")
    differ = sorted(name for name, h in hashes.items() if h != backup.content_hashes[name])
    if differ:
        out.problems.append(f"restored content differs from the backup's (content hash) for {', '.join(differ[:5])}"
                            + (f" and {len(differ) - 5} more" if len(differ) > 5 else ""))


# --- physical ---------------------------------------------------------------------------------------------------------

HBA = ("local all all trust\n"
       "host all all 0.0.0.0/0 reject\n"
       "host all all ::/0 reject\n")

HEAP_CHECK = """
    SELECT c.oid::regclass::text, (SELECT count(*) FROM verify_heapam(c.oid))
      FROM pg_class c
     WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't'
     ORDER BY c.oid
"""
INDEXES = """
    SELECT c.oid, c.oid::regclass::text
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
     WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
     ORDER BY c.oid
"""


def _physical(backup: Backup, ctx: JobContext | None, job_id: str | None) -> RestoreCheck:
    from apps.backups import physical_restore

    out = RestoreCheck()
    with scratch.directory(job_id) as base:
        pgdata = base / "data"
        t0 = time.monotonic()
        try:
            # Every frame is authenticated while extracting; the chain is checked against the catalog first.
            result = physical_restore.restore_data_directory(backup, pgdata, ctx, verify_first=False)
        except Exception as exc:
            out.problems.append(f"the restore failed: {exc}")
            return out
        out.details["restore_seconds"] = round(time.monotonic() - t0, 3)
        out.details.update(bytes_restored=result["bytes"], files=result["files"], chain=result["chain"])
        out.bytes_read = sum(b.size_stored or 0 for b in Backup.objects.filter(pk__in=result["chain"]))
        out.location = backup.storage_location
        if result["locations"].get(backup.pk):
            from apps.storage.models import StorageLocation

            out.location = StorageLocation.objects.filter(name=result["locations"][backup.pk]).first() or out.location
        cluster = clusters.LocalCluster(base=base, port=clusters.free_port(), data_dir=pgdata,
                                        log_file=base / "server.log")
        _scratch_config(pgdata, base, cluster.port)
        t1 = time.monotonic()
        try:
            cluster.start()
        except RuntimeError as exc:
            out.problems.append(f"the restored cluster did not start: {exc}; log: {_tail(cluster.log)}")
            return out
        out.details["start_seconds"] = round(time.monotonic() - t1, 3)
        t2 = time.monotonic()
        _amcheck(backup, PgConn(host=str(base), port=cluster.port, dbname="template1",
                                user=backup.database_target.user, sslmode="disable"), out)
        out.details["amcheck_seconds"] = round(time.monotonic() - t2, 3)
        cluster.stop(mode="fast")
    return out


def _scratch_config(pgdata: Path, base: Path, port: int) -> None:
    """Settings that make the restored cluster a private, inert copy: its own port and socket, no TCP logins,
    no archiving or replication, whatever the source's configuration said."""
    for name in ("standby.signal", "recovery.signal"):
        (pgdata / name).unlink(missing_ok=True)
    for name, text in (("pg_hba.conf", HBA), ("pg_ident.conf", ""), ("postgresql.conf", "")):
        path = pgdata / name
        if name == "pg_hba.conf" or not path.exists():
            path.write_text(text)
            path.chmod(0o600)
            clusters.give_to_server_user(path)
    settings = {
        "port": str(port), "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{base}'",
        "hba_file": f"'{pgdata / 'pg_hba.conf'}'", "ident_file": f"'{pgdata / 'pg_ident.conf'}'",
        "archive_mode": "off", "archive_command": "''", "restore_command": "''", "primary_conninfo": "''",
        "shared_preload_libraries": "''", "lc_messages": "'C'", "logging_collector": "off", "fsync": "off",
    }
    auto = pgdata / "postgresql.auto.conf"
    existed = auto.exists()
    with open(auto, "a") as fh:
        fh.write("\n# restore-level verification (backupsite)\n")
        fh.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
    if not existed:
        auto.chmod(0o600)
        clusters.give_to_server_user(auto)


def _amcheck(backup: Backup, conn: PgConn, out: RestoreCheck) -> None:
    try:
        with psycopg.connect(**conn.kwargs("backupsite-verify"), autocommit=True) as c:
            superuser = c.execute("SELECT rolname FROM pg_roles WHERE oid = 10").fetchone()[0]
            databases = [r[0] for r in c.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")]
    except psycopg.Error as exc:
        out.problems.append(f"cannot connect to the restored cluster: {catalog.first_line(exc)}")
        return
    tables = indexes = 0
    for dbname in databases:
        db = PgConn(host=conn.host, port=conn.port, dbname=dbname, user=superuser, sslmode="disable")
        try:
            with psycopg.connect(**db.kwargs("backupsite-verify"), autocommit=True) as c:
                c.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
                for rel, corrupt in c.execute(HEAP_CHECK).fetchall():
                    tables += 1
                    if corrupt:
                        out.problems.append(f"{dbname}: amcheck found {corrupt} corrupt tuples in {rel}")
                for oid, name in c.execute(INDEXES).fetchall():
                    indexes += 1
                    try:
                        c.execute("SELECT bt_index_check(index => %s::oid, heapallindexed => false)", [oid])
                    except psycopg.Error as exc:
                        out.problems.append(f"{dbname}: index {name} fails amcheck: {catalog.first_line(exc)}")
        except psycopg.Error as exc:
            out.problems.append(f"{dbname}: amcheck could not run: {catalog.first_line(exc)}")
    out.details.update(databases=databases, tables_checked=tables, indexes_checked=indexes)


def _tail(path: Path, limit: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return "(no log)"
