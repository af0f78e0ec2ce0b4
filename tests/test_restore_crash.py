"""A restore is all or nothing whatever happens to our process (issue item 4, first half).

`manage.py db_restore` runs as a real subprocess with its own catalog (a SQLite file) and is killed with
SIGKILL while the server is in the middle of COPYing the big table: nothing may be left committed.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from apps.databases import catalog
from tests.helpers import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
ROWS = 1_000_000  # several seconds of COPY: the kill lands well inside it
KILL_AFTER_ROWS = 50_000


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def big_source(pg_cluster):
    name = f"big_{uuid.uuid4().hex[:8]}"
    create_database(pg_cluster, name)
    conn = pg_cluster.conn(name)
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE a_before (id int)")  # dumped before items: its data would commit first
        c.execute("INSERT INTO a_before SELECT generate_series(1, 10)")
        c.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text NOT NULL)")
        c.execute("INSERT INTO items SELECT g, 'item number ' || g FROM generate_series(1, %s) g", [ROWS])
    yield conn
    drop_database(pg_cluster, name)


@pytest.fixture(scope="module")
def backups(big_source):
    """(environment of a separate app instance, {format: backup id}) with both formats backed up."""
    var = Path(tempfile.mkdtemp(prefix="restore-crash-"))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{var / 'catalog.sqlite3'}", "BACKUP_LOCAL_ROOT": str(var / "b")}
    manage("migrate", "--noinput", env=env)
    src = big_source
    manage("target_add", "big", "--dsn", f"postgresql://{src.user}@{src.host}:{src.port}/{src.dbname}?sslmode=disable",
           env=env)
    ids = {}
    for fmt in ("plain", "custom"):
        out = manage("db_backup", "big", "--format", fmt, env=env).stdout
        ids[fmt] = json.loads(out.strip().splitlines()[-1])["id"]
    yield env, ids
    subprocess.run(["rm", "-rf", str(var)], check=False)


def _copied_rows(admin: psycopg.Connection, dbname: str) -> int | None:
    row = admin.execute("SELECT tuples_processed FROM pg_stat_progress_copy WHERE datname = %s", [dbname]).fetchone()
    return row[0] if row else None


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_kill_9_in_the_middle_of_a_restore_commits_nothing(pg_cluster, backups, fmt):
    env, ids = backups
    dest = pg_cluster.conn(f"crash_{fmt}_{uuid.uuid4().hex[:8]}")
    dsn = f"postgresql://{dest.user}@{dest.host}:{dest.port}/{dest.dbname}?sslmode=disable"
    try:
        with tempfile.TemporaryFile() as err, \
                psycopg.connect(**pg_cluster.conn().kwargs(), autocommit=True) as admin:
            proc = subprocess.Popen([sys.executable, "manage.py", "db_restore", ids[fmt], "--dsn", dsn, "--create"],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 300
            while (_copied_rows(admin, dest.dbname) or 0) < KILL_AFTER_ROWS:
                if proc.poll() is not None:
                    err.seek(0)
                    pytest.fail(f"db_restore ended (status {proc.returncode}) before it could be killed: "
                                f"{err.read().decode()[-1000:]}")
                assert time.monotonic() < deadline, "the restore never got going"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # The tool (psql / pg_restore) outlives us for a moment: wait until its session is over.
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                [dest.dbname]).fetchone()[0]:
                assert time.monotonic() < deadline, "the restore's session never ended"
                time.sleep(0.05)
        with catalog.connect(dest) as c:
            assert catalog.user_tables(c.cursor()) == []  # not a table, not a row: one transaction, rolled back
        # The killed restore's job does not stay `running`: the next job request settles it.
        manage("db_verify", ids[fmt], "--level", "exists", env=env)
        db = env["DATABASE_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(db) as meta:
            status, error = meta.execute("SELECT status, error FROM jobs_job WHERE type = 'restore.database' "
                                         "ORDER BY created_at DESC LIMIT 1").fetchone()
        assert status == "failed" and "Abandoned" in error and "died" in error
    finally:
        drop_database(pg_cluster, dest.dbname)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_a_check_failing_after_the_last_byte_commits_nothing(target, fresh_db, fmt):
    """The stream's last checks (SHA-256 of the whole artifact) run after its last byte was decoded: the tool
    must not be able to finish, and commit, with everything it needs while they are still pending."""
    from io import StringIO

    from django.core.management import call_command

    from apps.backups.models import Backup
    from apps.backups.restores import artifact_stream
    from apps.databases.engines import logical
    from apps.pipeline.artifact import ArtifactError

    out = StringIO()
    call_command("db_backup", "sample", "--format", fmt, stdout=out)
    backup = Backup.objects.get(pk=json.loads(out.getvalue().strip().splitlines()[-1])["id"])
    raw = b"".join(artifact_stream(backup=backup, artifact=backup.artifacts.get()))

    def stream():
        yield raw[: len(raw) // 2]
        yield raw[len(raw) // 2:]
        time.sleep(2)  # ample time for pg_restore / psql to finish if they had the whole dump
        raise ArtifactError("SHA-256 mismatch (the end check of this test)")

    dest = fresh_db()
    with pytest.raises(ArtifactError, match="end check"):
        logical.restore(dest, stream(), fmt=fmt)
    with catalog.connect(dest) as c:
        assert catalog.user_tables(c.cursor()) == []
