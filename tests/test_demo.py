"""`manage.py demo` (what `make run` calls) against a real sandbox cluster in a temporary var dir."""
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from apps.backups.models import Backup, BackupStatus
from apps.databases.clusters import LocalCluster, free_port, server_bin_dir
from apps.databases.models import DatabaseTarget

ROWS = 100  # small: the test is about reuse, not volume


@pytest.fixture
def var_dir():
    try:
        server_bin_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    path = Path(tempfile.mkdtemp(prefix="demo-var-"))  # not tmp_path: /tmp/pytest-of-root is 0700
    path.chmod(0o755)  # the postgres user must reach var/sandbox-pg
    yield path
    for base in {path / "sandbox-pg", *_pointed(path)}:
        if (base / "data").exists():
            LocalCluster(base=base, port=0).destroy()
    shutil.rmtree(path, ignore_errors=True)


def _pointed(var: Path) -> list[Path]:
    pointer = var / "sandbox-pg.path"
    return [Path(pointer.read_text().strip())] if pointer.exists() else []


def demo(var: Path, *extra: str) -> str:
    out = io.StringIO()
    call_command("demo", "--var-dir", str(var), "--rows", str(ROWS), *extra, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def postmaster_pid(var: Path) -> str:
    return (var / "sandbox-pg" / "data" / "postmaster.pid").read_text().splitlines()[0]


@pytest.mark.slow
@pytest.mark.django_db
def test_demo_sets_everything_up_once_and_reuses_it(var_dir):
    first = demo(var_dir)

    password = (var_dir / "demo-admin-password").read_text().strip()
    assert (var_dir / "demo-admin-password").stat().st_mode & 0o777 == 0o600
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)
    assert f"Password:  {password}" in first

    base = var_dir / "sandbox-pg"
    assert not (var_dir / "sandbox-pg.path").exists(), "a reachable var dir holds the sandbox itself"
    port = int((base / "port").read_text())
    target = DatabaseTarget.objects.get(name="demo")
    assert (target.host, target.port, target.dbname, target.sslmode) == ("127.0.0.1", port, "propchain", "disable")
    backups = Backup.objects.filter(database_target=target)
    assert [b.status for b in backups] == [BackupStatus.SUCCEEDED]
    assert backups.get().row_counts["public.properties"] == ROWS
    assert backups.get().encryption_key_id  # pytest-env configures keys, so the demo backup is encrypted
    assert_password_only(var_dir, base, port)
    assert target.get_password() == (var_dir / "sandbox-pg-password").read_text().strip()

    # Second run: same cluster process, same password, no second backup, no reload of the sample data.
    pid = postmaster_pid(var_dir)
    second = demo(var_dir)
    assert postmaster_pid(var_dir) == pid
    assert "already running" in second and "sample data already loaded" in second
    assert "first backup already taken" in second
    assert (var_dir / "demo-admin-password").read_text().strip() == password
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Backup.objects.filter(database_target=target).count() == 1

    # Stopped, and its port taken meanwhile: the next run moves the cluster and the target to a free port.
    demo(var_dir, "--stop")
    assert not LocalCluster(base=base, port=port).is_running()
    blocker = socket.socket()
    # The stopped server's connections may leave the port in TIME_WAIT; PostgreSQL binds through that too.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        third = demo(var_dir)
    finally:
        blocker.close()
    new_port = int((base / "port").read_text())
    assert new_port != port and f"Port {port} is taken" in third
    target.refresh_from_db()
    assert target.port == new_port
    assert Backup.objects.filter(database_target=target).count() == 1
    assert LocalCluster(base=base, port=new_port).is_running()


def assert_password_only(var: Path, base: Path, port: int) -> None:
    """The sandbox accepts no login without its password (it used to trust every local user)."""
    secret = var / "sandbox-pg-password"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text().strip()
    hba = [line.split() for line in (base / "data" / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.lstrip().startswith("#")]
    assert hba and all(line[-1] == "scram-sha-256" for line in hba), hba
    for host in ("127.0.0.1", str(base)):  # TCP and the unix socket
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=5).close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", password="wrong",
                            connect_timeout=5).close()
    psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                    password=secret.read_text().strip()).close()


@pytest.mark.slow
@pytest.mark.django_db
def test_demo_gives_a_sandbox_that_trusted_everyone_a_password(var_dir):
    """A sandbox made by an older demo (trust authentication) wants a password after the next run."""
    base = var_dir / "sandbox-pg"
    old = LocalCluster(base=base, port=free_port())
    old.initdb()  # no password: trust, as the old demo made it
    (base / "port").write_text(f"{old.port}\n")
    old.start()
    out = demo(var_dir)
    assert "password logins only from now on" in out
    port = int((base / "port").read_text())
    assert_password_only(var_dir, base, port)
    target = DatabaseTarget.objects.get(name="demo")
    assert target.get_password() == (var_dir / "sandbox-pg-password").read_text().strip()
    assert Backup.objects.get(database_target=target).status == BackupStatus.SUCCEEDED
    assert "already running" in demo(var_dir)  # and the next run just reuses it


def test_sandbox_moves_out_of_a_var_dir_the_postgres_user_cannot_reach():
    from apps.console.management.commands.demo import sandbox_base

    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user")
    made = []
    vars_ = [Path(tempfile.mkdtemp(prefix="demo-private-")) for _ in range(2)]  # mode 0700, like /root
    try:
        base = sandbox_base(vars_[0])
        made.append(base)
        assert base.parent == Path("/var/tmp") and base.name.startswith("backupsite-sandbox-")
        st = os.lstat(base)
        assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700  # fresh and private
        assert (vars_[0] / "sandbox-pg.path").read_text().strip() == str(base)
        assert sandbox_base(vars_[0]) == base  # recorded, so later runs find the same cluster

        other = sandbox_base(vars_[1])
        made.append(other)
        assert other != base  # not derived from anything predictable

        # The recorded directory vanished and someone planted a symlink under its name: never followed.
        bait = Path(tempfile.mkdtemp(prefix="demo-bait-"))
        made.append(bait)
        base.rmdir()
        base.symlink_to(bait)
        replaced = sandbox_base(vars_[0])
        made.append(replaced)
        assert replaced != base and not replaced.is_symlink() and replaced.parent == Path("/var/tmp")
        assert (vars_[0] / "sandbox-pg.path").read_text().strip() == str(replaced)
        assert list(bait.iterdir()) == []
    finally:
        for path in made:
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path, ignore_errors=True)
        for var in vars_:
            shutil.rmtree(var, ignore_errors=True)
