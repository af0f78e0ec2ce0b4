"""Liveness of backups and jobs across real processes: kill -9, a long lock wait, a killed worker, a request burst.

The backups run in child `manage.py` processes (and a real `qcluster`) sharing a file SQLite metadata database
(the test process's in-memory one is invisible to them), against the session PostgreSQL cluster, where the test
holds an ACCESS EXCLUSIVE lock on the table pg_dump needs, so a backup waits for as long as the test wants.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.helpers import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
STALE = 3  # seconds: BACKUP_LOCK_STALE_SECONDS / JOB_STALE_SECONDS in the child processes


class Site:
    """A metadata database file and the environment of child manage.py processes that use it."""

    def __init__(self, base: Path, source, database_url: str | None = None):
        self.db = base / "meta.sqlite3"
        self.source = source
        self.pg_meta = database_url  # a PostgreSQL metadata database instead of the SQLite file
        self.env = {
            **os.environ, "DATABASE_URL": database_url or f"sqlite:///{self.db}",
            "BACKUP_LOCAL_ROOT": str(base / "backups"),
            "Q_SYNC": "false", "JOB_HEARTBEAT_SECONDS": "0.5", "BACKUP_LOCK_STALE_SECONDS": str(STALE),
            "JOB_STALE_SECONDS": str(STALE), "Q_WORKERS": "1",
        }

    def spawn(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def manage(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def backup(self, *args: str, ok: bool = True) -> dict:
        done = self.manage("db_backup", *args, ok=ok)
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"stderr": done.stderr}

    def rows(self, query: str, *params) -> list[tuple]:
        if self.pg_meta:
            with psycopg.connect(self.pg_meta) as c:
                return c.execute(query.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as c:
            return c.execute(query, params).fetchall()

    def add_target(self, name: str) -> None:
        s = self.source
        self.manage("target_add", name, "--dsn", f"postgresql://{s.user}@{s.host}:{s.port}/{s.dbname}?sslmode=disable")

    def wait_running(self, target: str, timeout: float = 60) -> tuple[str, str]:
        """(backup id, job worker identity) once a backup of `target` runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.rows(
                "SELECT b.id, j.worker FROM backups_backup b JOIN databases_databasetarget t ON t.id = b.database_target_id "
                "JOIN jobs_job j ON j.id = b.job_id WHERE t.name = ? AND b.status = 'running' AND j.worker != ''",
                target)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no backup of {target} started within {timeout} s")

    def backup_row(self, backup_id: str) -> dict:
        (status, error, job_status, job_error), = self.rows(
            "SELECT b.status, b.error, j.status, j.error FROM backups_backup b JOIN jobs_job j ON j.id = b.job_id "
            "WHERE b.id = ?", backup_id)
        return {"status": status, "error": error, "job_status": job_status, "job_error": job_error}


@pytest.fixture(scope="module")
def lock_db(pg_cluster):
    create_database(pg_cluster, "lockable")
    conn = pg_cluster.conn("lockable")
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE listing AS SELECT g AS id, md5(g::text) AS title FROM generate_series(1, 5000) g")
    return conn


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, pg_cluster, lock_db, tmp_path_factory):
    """The metadata database of the demo (SQLite) and of production (PostgreSQL, on the session cluster)."""
    url = None
    if request.param == "postgresql":
        create_database(pg_cluster, "meta")
        c = pg_cluster.conn("meta")
        url = f"postgres://{c.user}@{c.host}:{c.port}/{c.dbname}"
    site = Site(tmp_path_factory.mktemp("site"), lock_db, url)
    site.manage("migrate", "-v0")
    yield site
    if url:
        drop_database(pg_cluster, "meta")


@contextmanager
def table_locked(conn):
    """Hold ACCESS EXCLUSIVE on the table: pg_dump waits behind it (it takes ACCESS SHARE on every table)."""
    with psycopg.connect(**conn.kwargs()) as c:
        c.execute("LOCK TABLE listing IN ACCESS EXCLUSIVE MODE")
        yield
        c.rollback()


def assert_next_backup_settles_the_dead_one(site: Site, target: str, dead_id: str) -> None:
    """After a kill: the next backup of the target succeeds within 60 s and the killed one is failed, abandoned."""
    started = time.monotonic()
    again = site.backup(target)
    assert again["status"] == "succeeded"
    assert time.monotonic() - started < 60
    dead = site.backup_row(dead_id)
    assert dead["status"] == "failed" and dead["error"].startswith("Abandoned"), dead
    assert dead["job_status"] == "failed" and "Abandoned" in dead["job_error"], dead


def test_killed_backup_frees_its_target_at_once(site, lock_db):
    site.add_target("killed-cli")
    with table_locked(lock_db):
        proc = site.spawn("db_backup", "killed-cli")
        backup_id, _worker = site.wait_running("killed-cli")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert_next_backup_settles_the_dead_one(site, "killed-cli", backup_id)


def test_blocked_backup_is_never_displaced(site, lock_db):
    site.add_target("blocked")
    with table_locked(lock_db):
        first = site.spawn("db_backup", "blocked")
        backup_id, _worker = site.wait_running("blocked")
        time.sleep(STALE * 2)  # far past the stale time: only the heartbeat keeps the lease
        second = site.backup("blocked", ok=False)
        assert "already running" in second["stderr"] and backup_id in second["stderr"]
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "succeeded"
    assert site.backup_row(backup_id)["status"] == "succeeded"


def test_killed_worker_process_frees_the_target(site, lock_db):
    site.add_target("killed-worker")
    cluster = site.spawn("qcluster", start_new_session=True)
    try:
        with table_locked(lock_db):
            queued = site.backup("killed-worker", "--queue")
            assert queued["status"] == "pending"
            backup_id, worker = site.wait_running("killed-worker")
            assert backup_id == queued["id"]
            worker_pid = int(worker.split(":")[1])
            assert worker_pid not in (cluster.pid, os.getpid())
            os.kill(worker_pid, signal.SIGKILL)
        assert_next_backup_settles_the_dead_one(site, "killed-worker", backup_id)
    finally:
        cluster.terminate()  # one SIGTERM to the main process only: django-q2 stops its workers itself
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()


def test_a_burst_of_requests_queues_exactly_one_backup(site):
    site.add_target("burst")
    procs = [site.spawn("db_backup", "burst", "--queue") for _ in range(8)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    accepted = [json.loads(out.strip().splitlines()[-1]) for out, _err, rc in results if rc == 0]
    refused = [err for _out, err, rc in results if rc != 0]
    assert len(accepted) == 1 and accepted[0]["status"] == "pending"
    assert len(refused) == 7 and all("already queued" in err for err in refused), refused
    rows = site.rows("SELECT b.status FROM backups_backup b JOIN databases_databasetarget t "
                     "ON t.id = b.database_target_id WHERE t.name = 'burst'")
    assert rows == [("pending",)]
