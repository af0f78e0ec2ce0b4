"""A restore-level verification killed outright (SIGKILL) leaves a scratch cluster running; the next verification
removes it. `manage.py db_verify` runs as a real subprocess with its own catalog (a SQLite file)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.helpers import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
ROWS = 1_000_000  # a few seconds of restore: the kill lands inside it


def manage(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ")[1][0] not in "ZX"


def restoring(pid: int) -> bool:
    """pg_restore is running under the verification: the kill lands in the middle of the restore."""
    import psutil

    try:
        return any(c.name() == "pg_restore" for c in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return False


def ready(pid_file: Path) -> bool:
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and int(lines[0]) > 0 and lines[7].strip() == "ready"


@pytest.fixture
def site(pg_cluster):
    name = f"vk_{uuid.uuid4().hex[:8]}"
    create_database(pg_cluster, name)
    conn = pg_cluster.conn(name)
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text NOT NULL)")
        c.execute("INSERT INTO items SELECT g, 'item number ' || g FROM generate_series(1, %s) g", [ROWS])
    var = Path(tempfile.mkdtemp(prefix="verify-crash-"))
    var.chmod(0o755)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{var / 'catalog.sqlite3'}", "BACKUP_LOCAL_ROOT": str(var / "b"),
           "VERIFY_SCRATCH_ROOT": str(var / "scratch")}
    manage("migrate", "--noinput", env=env)
    manage("target_add", "vk", "--dsn",
           f"postgresql://{conn.user}@{conn.host}:{conn.port}/{conn.dbname}?sslmode=disable", env=env)
    backup_id = json.loads(manage("db_backup", "vk", env=env).stdout.strip().splitlines()[-1])["id"]
    yield env, backup_id, var / "scratch"
    subprocess.run(["rm", "-rf", str(var)], check=False)
    drop_database(pg_cluster, name)


def test_a_killed_restore_verification_is_cleaned_up_by_the_next_run(site):
    env, backup_id, scratch = site
    proc = subprocess.Popen([sys.executable, "manage.py", "db_verify", backup_id, "--level", "restore"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        pid_file = None
        while time.monotonic() < deadline and pid_file is None:
            found = list(scratch.glob("verify-*/cluster/data/postmaster.pid")) if scratch.exists() else []
            # The server's own pid file (initdb's bootstrap backend writes a negative pid), once it accepts logins.
            if found and ready(found[0]) and restoring(proc.pid):
                pid_file = found[0]
            time.sleep(0.05)
        assert pid_file is not None, "the scratch cluster never started"
        time.sleep(0.3)  # into the restore
        assert proc.poll() is None, "the verification ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    base = pid_file.parent.parent.parent
    assert base.name.startswith("verify-") and (base / "owner").exists()
    server_pid = int(pid_file.read_text().splitlines()[0])
    assert alive(server_pid)  # pg_ctl detached it: it outlives the killed verification

    result = manage("db_verify", backup_id, "--level", "restore", env=env)
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "succeeded"
    assert not base.exists() and list(scratch.iterdir()) == []
    deadline = time.monotonic() + 10
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server_pid)
