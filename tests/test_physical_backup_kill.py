"""A physical full read from the data directory by forked processes, killed outright: nothing is committed.

`manage.py db_backup` runs as a real subprocess with its own catalog (a SQLite file) and local location, and
is killed with SIGKILL while its two writer processes stream the cluster's files. Its children die with it
(PR_SET_PDEATHSIG), no manifest is written (the backup is absent, not half there), the server ends the
backup with the session (no session of it, no temporary slot left), and the next backup of the target
settles the killed one as failed and succeeds itself.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import throwaway_cluster

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def site():
    with throwaway_cluster("pgkill-") as cluster:
        with psycopg.connect(**cluster.conn().kwargs(), autocommit=True) as c:
            # ~150 MB that compresses a little only: a few seconds of writing for the kill to land in.
            c.execute("CREATE TABLE bulk (id int, payload text)")
            c.execute("INSERT INTO bulk SELECT g, md5(g::text) || md5((g * 3)::text) || md5((g * 7)::text) "
                      "FROM generate_series(1, 1200000) g")
            c.execute("CHECKPOINT")
        var = Path(tempfile.mkdtemp(prefix="physkill-"))
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{var / 'catalog.sqlite3'}",
               "BACKUP_LOCAL_ROOT": str(var / "b"), "BACKUP_PROCESSES": "2"}
        manage("migrate", "--noinput", env=env)
        c = cluster.conn()
        manage("target_add", "killme", "--dsn", f"postgresql://{c.user}@{c.host}:{c.port}/postgres?sslmode=disable",
               "--data-directory", str(cluster.data), "--default-method", "physical", env=env)
        yield cluster, env, var
        subprocess.run(["rm", "-rf", str(var)], check=False)


def test_kill_9_while_the_writer_processes_run_commits_nothing_and_ends_the_server_backup(site):
    cluster, env, var = site
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "manage.py", "db_backup", "killme", "--kind", "full"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        kids: list[int] = []
        while len(kids) < 2:
            if proc.poll() is not None:
                err.seek(0)
                pytest.fail(f"db_backup ended (status {proc.returncode}) before its writers could be caught: "
                            f"{err.read().decode()[-1000:]}")
            assert time.monotonic() < deadline, "the writer processes never started"
            kids = children(proc.pid)
            time.sleep(0.002)
        time.sleep(0.05)  # inside the stream
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    while any(alive(k) for k in kids):  # they die with their parent
        assert time.monotonic() < deadline, "a writer process outlived the killed backup"
        time.sleep(0.02)
    assert not list((var / "b").rglob("manifest.json"))  # never committed
    with psycopg.connect(**cluster.conn().kwargs(), autocommit=True) as admin:
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backupsite-backup-%'"
                            ).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed backup's session never ended"
            time.sleep(0.05)
        assert not admin.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    # The next backup settles the killed one and succeeds; a second backup mode was never left open.
    out = manage("db_backup", "killme", "--kind", "full", env=env).stdout
    done = json.loads(out.strip().splitlines()[-1])
    assert done["status"] == "succeeded"
    with sqlite3.connect(var / "catalog.sqlite3") as meta:
        rows = meta.execute("SELECT status, error FROM backups_backup ORDER BY created_at").fetchall()
    assert [r[0] for r in rows] == ["failed", "succeeded"] and "Abandoned" in rows[0][1]
    assert len(list((var / "b").rglob("manifest.json"))) == 1
