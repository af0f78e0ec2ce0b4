"""Throwaway local PostgreSQL clusters: the demo sandbox, test fixtures and (later) scratch restores.

The server refuses to run as root, so when we are root every server program
runs as the `postgres` system user, in a directory that user owns.
"""
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from apps.databases.connection import PgConn

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


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class LocalCluster:
    base: Path
    port: int
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def conn(self, dbname: str = "postgres") -> PgConn:
        return PgConn(host="127.0.0.1", port=self.port, dbname=dbname, user=self.user, sslmode="disable")

    def _run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        result = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, **kw)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")
        return result

    def initdb(self, extra_conf: dict[str, str] | None = None) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, RUN_AS, RUN_AS)
        os.chmod(self.base, 0o700 if os.geteuid() != 0 else 0o755)
        bindir = server_bin_dir()
        self._run([f"{bindir}/initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                   "--locale=C.UTF-8", "--no-sync"])
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

    def set_port(self, port: int) -> None:
        self.port = port
        self.append_conf({"port": str(port)})

    def is_running(self) -> bool:
        if not self.data.exists():
            return False
        result = subprocess.run(_as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "status"]),
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
        if self.is_running():
            self._run([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
