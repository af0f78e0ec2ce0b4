"""A PostgreSQL cluster whose archive_command is our wal_push, and the site (metadata database, storage,
environment file) that wal_push runs against, all usable by the postgres OS user.

PostgreSQL runs archive_command as its own user with its own environment, so this builds what an operator
builds: an environment file (DEBUG off, secret key, master keys in a key file, file SQLite metadata
database, local storage root) readable by postgres, a metadata directory and a storage root postgres owns,
and the lines `manage.py archive_config` prints, appended to the cluster's configuration as they are. The
environment file's name holds a quote and a percent sign, so the printed quoting is proven by PostgreSQL.

Child manage.py processes run as postgres too (`WalSite.manage`), with nothing but PATH and
BACKUPSITE_ENV_FILE in their environment. The test process reads the metadata database with sqlite3.
"""
import grp
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from apps.databases.clusters import RUN_AS, as_server_user, server_user_python
from tests.helpers import throwaway_cluster

ROOT = Path(__file__).resolve().parent.parent
TARGET = "walsrc"
ARCHIVE_TIMEOUT = 2  # seconds, so a test waits little for a segment; archive_config's default is 60


def _give(path: Path, mode: int, *, group_only: bool = False) -> None:
    """Owned by postgres (or readable by its group only, root keeping ownership)."""
    if os.geteuid() == 0:
        if group_only:
            os.chown(path, 0, grp.getgrnam(RUN_AS).gr_gid)
        else:
            pw = pwd.getpwnam(RUN_AS)
            os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(mode)


def postgres_python(base: Path) -> str:
    """An interpreter the postgres user can run with this environment's packages (see server_user_python)."""
    try:
        return server_user_python(base)
    except RuntimeError as exc:
        pytest.skip(str(exc))


class WalSite:
    def __init__(self, base: Path, cluster):
        self.base, self.cluster = base, cluster
        self.meta_dir, self.root, conf = base / "meta", base / "backups", base / "conf"
        self.spool = base / "archive 100% spool"  # markers of files archived ahead; quoted like the env file
        for directory in (self.meta_dir, self.root, self.spool):
            directory.mkdir()
            _give(directory, 0o700)
        conf.mkdir()
        _give(conf, 0o750, group_only=True)
        self.db = self.meta_dir / "meta.sqlite3"
        keys = conf / "master.keys"
        keys.write_text(os.environ["BACKUP_ENCRYPTION_KEYS"] + "\n")  # the test process's keys: it can decode too
        self.env_file = conf / "backupsite's 100% env"
        self.env_file.write_text(
            "DEBUG=false\nSECRET_KEY=wal-site-secret-key-for-tests-only-0123456789\n"
            f"DATABASE_URL=sqlite:///{self.db}\nBACKUP_LOCAL_ROOT={self.root}\nBACKUP_ENCRYPTION_KEYS_FILE={keys}\n"
            "LOG_LEVEL=WARNING\n"
        )
        for path in (keys, self.env_file):
            _give(path, 0o640, group_only=True)
        self.python = postgres_python(base)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "BACKUPSITE_ENV_FILE": str(self.env_file)}

    # --- child processes, as postgres --------------------------------------------------------------

    def manage(self, *args: str, ok: bool = True, cwd: Path | None = None, timeout: float = 120):
        done = subprocess.run(as_server_user([self.python, str(ROOT / "manage.py"), *args]), cwd=cwd or ROOT,
                              env=self.env, text=True, capture_output=True, timeout=timeout)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def orm(self, code: str) -> str:
        """Run Django ORM code in the site (as postgres); its stdout."""
        return self.manage("shell", "--no-imports", "-c", code).stdout

    def status(self) -> dict:
        return json.loads(self.manage("wal_status", TARGET, "--json").stdout)

    # --- reading the catalog -------------------------------------------------------------------------

    def rows(self, query: str, *params) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as c:
            return c.execute(query, params).fetchall()

    def segment(self, name: str) -> dict | None:
        found = self.rows("SELECT w.name, w.timeline, w.start_lsn, w.key, w.size_raw, w.sha256_raw, "
                          "w.last_commit_at, w.created_at FROM backups_walsegment w JOIN databases_databasetarget t "
                          "ON t.id = w.database_target_id WHERE t.name = ? AND w.name = ?", TARGET, name)
        if not found:
            return None
        keys = ["name", "timeline", "start_lsn", "key", "size_raw", "sha256_raw", "last_commit_at", "created_at"]
        return dict(zip(keys, found[0]))

    def wait_archived(self, name: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seg = self.segment(name)
            if seg:
                return seg
            time.sleep(0.05)
        raise AssertionError(f"{name} was not archived within {timeout} s; server log:\n"
                             f"{self.cluster.log.read_text()[-3000:]}")

    # --- the source cluster --------------------------------------------------------------------------

    def sql(self, query: str, *params):
        with psycopg.connect(**self.cluster.conn().kwargs("wal-test"), autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def pitr_tables(self) -> None:
        """The target knows its data directory (for incrementals); autovacuum is off (nothing but the test
        commits, so the archive's last commit stays put while checked); `events` (empty) and `leases` (50 rows)."""
        self.orm(f"from apps.databases.models import DatabaseTarget as T; "
                 f"T.objects.filter(name='{TARGET}').update(data_directory='{self.cluster.data}')")
        self.sql("ALTER SYSTEM SET autovacuum = off")
        self.sql("SELECT pg_reload_conf()")
        self.sql("CREATE TABLE events (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        self.sql("CREATE TABLE leases (id int PRIMARY KEY, tenant text NOT NULL)")
        self.sql("INSERT INTO leases SELECT g, 'tenant ' || g FROM generate_series(1, 50) g")

    def new_segment(self, rows: int = 100) -> str:
        """Write, then switch WAL: the name of the segment just completed (archived shortly)."""
        self.sql("INSERT INTO marks (note) SELECT 'filler ' || g FROM generate_series(1, %s) g", rows)
        (name,), = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.sql("SELECT pg_switch_wal()")
        return name


@contextmanager
def archiving_site(prefix: str = "walsite-"):
    """(Set up and tear down) a WalSite with its cluster archiving to target `walsrc`."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    try:
        with throwaway_cluster(prefix=f"{prefix}pg-", start=False) as cluster:
            site = WalSite(base, cluster)
            site.manage("migrate", "-v0")
            c = cluster.conn()
            site.manage("target_add", TARGET, "--dsn",
                        f"postgresql://{c.user}@{c.host}:{c.port}/{c.dbname}?sslmode=disable")
            printed = site.manage("archive_config", TARGET, "--python", site.python, "--spool", str(site.spool),
                                  "--archive-timeout", str(ARCHIVE_TIMEOUT)).stdout
            lines = [line for line in printed.splitlines() if line.startswith(("archive_", "restore_command"))]
            site.archive_conf = "\n".join(lines) + "\n"
            with open(cluster.data / "postgresql.auto.conf", "a") as fh:  # pasted as printed
                fh.write("\n".join(line for line in lines if line.startswith("archive_")) + "\n")
            cluster.start()
            # PostgreSQL 15's checkpointer, started while the server is still starting up, first sleeps for
            # checkpoint_timeout without looking at archive_timeout; a checkpoint wakes it (docs/OPERATIONS.md).
            site.sql("CHECKPOINT")
            site.sql("CREATE TABLE marks (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())")
            yield site
    finally:
        shutil.rmtree(base, ignore_errors=True)
