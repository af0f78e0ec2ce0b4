"""Throwaway local PostgreSQL clusters: the demo sandbox, test fixtures and (later) scratch restores.

The server refuses to run as root, so when we are root every server program
runs as the `postgres` system user, in a directory that user owns.

A cluster given a `password` accepts only SCRAM password logins (local socket and TCP alike); without
one it trusts every local connection, which only throwaway test clusters may do.
"""
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from apps.databases.connection import PgConn

# psycopg (and catalog, which needs it) are imported where used: `pitr` imports this module for the port and
# cluster helpers and, with a SQLite catalog, never connects with psycopg (~0.25 s of CPU at start).

SERVER_BIN_DIRS = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
RUN_AS = "postgres"


def server_bin_dir() -> str:
    override = os.environ.get("PG_SERVER_BIN_DIR")
    for directory in ([override] if override else []) + SERVER_BIN_DIRS:
        if directory and Path(directory, "initdb").exists():
            return directory
    raise RuntimeError("PostgreSQL server binaries not found (install postgresql-15 or set PG_SERVER_BIN_DIR).")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_accepting(conn: PgConn, *, timeout: float = 60, app_name: str = "backupsite") -> None:
    """Wait until the server behind `conn` accepts a login (not only TCP connections); RuntimeError if not."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(**conn.kwargs(app_name)):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on {conn.host}:{conn.port} does not accept connections: {exc}") from None
            time.sleep(0.2)


def create_database(conn: PgConn, name: str, *, if_missing: bool = False) -> bool:
    """CREATE DATABASE name, connected as `conn` (a superuser); False if it existed and `if_missing`."""
    from apps.databases import catalog

    new = conn.with_db(name)
    if if_missing and catalog.database_exists(new):
        return False
    catalog.create_database(new)
    return True


def drop_database(conn: PgConn, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def recorded_port(base: Path) -> int | None:
    """The port a cluster under `base` was given: base/port, else what the running or configured server says."""
    candidates = []
    port_file = base / "port"
    if port_file.exists():
        candidates.append(port_file.read_text().strip())
    pid_file = base / "data" / "postmaster.pid"
    if pid_file.exists():
        lines = pid_file.read_text().splitlines()
        if len(lines) > 3:
            candidates.append(lines[3].strip())
    auto_conf = base / "data" / "postgresql.auto.conf"
    if auto_conf.exists():
        ports = [line.split("=", 1)[1].strip() for line in auto_conf.read_text().splitlines()
                 if line.split("=", 1)[0].strip() == "port"]
        candidates.extend(reversed(ports))
    for value in candidates:
        if value.isdigit():
            return int(value)
    return None


# Password logins only, over the socket and TCP alike (what initdb --auth=scram-sha-256 writes, and what
# require_password() writes into a cluster that trusted everyone).
SCRAM_HBA = "".join(
    f"{kind:<6} {db:<11} all {addr:<15} scram-sha-256\n"
    for db in ("all", "replication")
    for kind, addr in (("local", ""), ("host", "127.0.0.1/32"), ("host", "::1/128"))
)


def give_to_server_user(path: Path) -> None:
    """Make a file we created (as root) the server user's, as the server must write it."""
    if os.geteuid() == 0:
        shutil.chown(path, RUN_AS, RUN_AS)


def as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *cmd] if os.geteuid() == 0 else cmd


def server_user_python(base: Path) -> str:
    """An interpreter the server user can run with this environment's packages (for archive_command and the like).

    Normally this interpreter itself. Where it lives somewhere that user cannot reach (a pyenv under /root, as on
    the CI machine), a virtualenv of the system's Python of the same version under `base`, pointed at the same
    site-packages by a .pth file, stands in: what an operator would do by installing the app's venv where the
    server user can execute it. RuntimeError if neither is possible.
    """
    probe = subprocess.run(as_server_user([sys.executable, "-c", "import django"]), capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        raise RuntimeError(f"the {RUN_AS} user cannot run {sys.executable} and there is no {system}")
    venv = base / "python"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "backupsite-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for path in [venv, *venv.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055)
    return str(venv / "bin" / "python")


@dataclass
class LocalCluster:
    base: Path
    port: int
    user: str = "postgres"
    password: str = field(default="", repr=False)
    # A cluster laid out elsewhere (a recovered data directory): its own data and log paths.
    data_dir: Path | None = None
    log_file: Path | None = None

    @property
    def data(self) -> Path:
        return self.data_dir or self.base / "data"

    @property
    def log(self) -> Path:
        return self.log_file or self.base / "server.log"

    def conn(self, dbname: str = "postgres") -> PgConn:
        return PgConn(host="127.0.0.1", port=self.port, dbname=dbname, user=self.user, password=self.password,
                      sslmode="disable")

    def _run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        result = subprocess.run(as_server_user(cmd), capture_output=True, text=True, **kw)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")
        return result

    def initdb(self, extra_conf: dict[str, str] | None = None) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.base)
        os.chmod(self.base, 0o700 if os.geteuid() != 0 else 0o755)
        bindir = server_bin_dir()
        cmd = [f"{bindir}/initdb", "-D", str(self.data), "-U", self.user, "-E", "UTF8", "--locale=C.UTF-8",
               "--no-sync"]
        if not self.password:
            self._run([*cmd, "--auth=trust"])
        else:
            # The password goes through a private file, never the command line.
            pwfile = self.base / f".initdb-pw-{os.getpid()}"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(self.password + "\n")
                give_to_server_user(pwfile)
                self._run([*cmd, "--auth=scram-sha-256", f"--pwfile={pwfile}"])
            finally:
                pwfile.unlink(missing_ok=True)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.base}'",
            "wal_level": "replica",
            "max_wal_senders": "4",
            "fsync": "off",
            "port": str(self.port),
            **(extra_conf or {}),
        }
        self.append_conf(conf)

    def append_conf(self, conf: dict[str, str]) -> None:
        # Later lines win, so appending overrides; the file stays owned by the server user.
        with open(self.data / "postgresql.auto.conf", "a") as fh:
            fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))

    def require_password(self, password: str) -> None:
        """Turn a running cluster that trusted every local connection into a SCRAM-password-only one.

        Only the SCRAM verifier (computed here by libpq) is sent to the server, never the password.
        """
        import psycopg
        from psycopg import sql

        with psycopg.connect(**self.conn().kwargs("backupsite-setup"), autocommit=True) as c:
            verifier = c.pgconn.encrypt_password(password.encode(), self.user.encode(), b"scram-sha-256").decode()
            c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.user), sql.Literal(verifier)))
        with open(self.data / "pg_hba.conf", "w") as fh:  # truncating keeps the file's owner
            fh.write(SCRAM_HBA)
        self.password = password
        self._run([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "reload"])
        wait_accepting(self.conn(), timeout=30, app_name="backupsite-setup")

    def set_port(self, port: int) -> None:
        self.port = port
        self.append_conf({"port": str(port)})

    def is_running(self) -> bool:
        if not self.data.exists():
            return False
        result = subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "status"]),
                                capture_output=True, text=True)
        return result.returncode == 0

    def start(self, *, attempts: int = 3) -> None:
        """Start the server; if another process grabbed its port meanwhile, move to a free one and retry.

        A port picked by free_port() is only free when picked: any outgoing connection may take it
        as its local port before the server binds it.
        """
        for attempt in range(attempts):
            log_start = self.log.stat().st_size if self.log.exists() else 0
            try:
                self._run([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l",
                           str(self.log), "start"])
                break
            except RuntimeError:
                with open(self.log, "rb") as fh:
                    fh.seek(log_start)
                    port_taken = b"Address already in use" in fh.read()
                if not port_taken or attempt == attempts - 1:
                    raise
                self.set_port(free_port())
        self.wait_ready()

    def start_detached(self) -> None:
        """Start the server and return at once (a recovery may take hours to accept connections)."""
        self._run([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-W", "start"])

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL on port {self.port} did not come up; see {self.log}")

    def stop(self, mode: str = "fast") -> None:
        if not self.is_running():
            return
        try:
            self._run([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])
        except RuntimeError:
            # A server may exit on its own between the check and pg_ctl (a recovery that ended
            # short of its target shuts down): stopped is what was asked for.
            if self.is_running():
                raise

    def destroy(self) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
