"""`manage.py demo`: everything the local demo console needs, made once and reused afterwards.

- the demo admin (superuser `admin`) with a random password kept in VAR/demo-admin-password;
- a sandbox PostgreSQL cluster under VAR/sandbox-pg (or, when the postgres user cannot reach VAR, in a
  fresh private directory made under /var/tmp and recorded in VAR/sandbox-pg.path), started if it is not
  running, moved to a free port if its port is taken. It accepts SCRAM password logins only: its
  superuser's random password is kept in VAR/sandbox-pg-password (mode 600) and in the target;
- database `propchain` with sample property data;
- target `demo` pointing at it;
- a first backup, taken only while the target has no succeeded backup.

`make run` calls it before starting the web server and the job worker; `make stop` calls `demo --stop`.
"""
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.errors import UserError
from apps.core.models import Interface
from apps.core.services import Actor
from apps.databases import clusters, sample_data
from apps.databases.clusters import LocalCluster
from apps.databases.models import DatabaseTarget
from apps.databases.services import upsert_target_from_dsn

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@example.invalid"
PASSWORD_FILE = "demo-admin-password"
SANDBOX_DIR = "sandbox-pg"
SANDBOX_POINTER = "sandbox-pg.path"  # written when the sandbox lives outside VAR
SANDBOX_PASSWORD_FILE = "sandbox-pg-password"  # the sandbox superuser's password
ELSEWHERE_ROOT = Path("/var/tmp")
ELSEWHERE_PREFIX = "backupsite-sandbox-"
DEMO_DB = "propchain"
TARGET_NAME = "demo"
DEMO_ACTOR = Actor(via=Interface.SYSTEM, extra={"name": "demo"})


# --- where things live ---------------------------------------------------------------------------


def reachable_by_server_user(path: Path) -> bool:
    """Can the user that runs the PostgreSQL server traverse every directory down to `path`?"""
    if os.geteuid() != 0:
        return True  # the server runs as ourselves
    result = subprocess.run(["runuser", "-u", clusters.RUN_AS, "--", "test", "-x", str(path)], capture_output=True)
    return result.returncode == 0


def _server_uid() -> int | None:
    import pwd

    try:
        return pwd.getpwnam(clusters.RUN_AS).pw_uid
    except KeyError:
        return None


def is_private_dir(path: Path) -> bool:
    """A real directory (not a symlink), owned by us or the server user, writable by nobody else."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid in {os.geteuid(), _server_uid()}
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def sandbox_base(var_dir: Path) -> Path:
    """VAR/sandbox-pg if the postgres user can reach it, else a fresh private directory under /var/tmp.

    The directory outside VAR is made by mkdtemp (a new, unpredictable name, mode 700: nothing planted in
    advance can be in it) and recorded in VAR/sandbox-pg.path. A recorded directory that is gone, or is
    now a symlink or someone else's, is never reused: a new one is made.
    """
    pointer = var_dir / SANDBOX_POINTER
    if pointer.exists():
        recorded = Path(pointer.read_text().strip())
        if recorded.is_absolute() and is_private_dir(recorded):
            return recorded
        pointer.unlink()
    local = var_dir / SANDBOX_DIR
    if (local / "data").exists() or reachable_by_server_user(var_dir):
        return local
    elsewhere = Path(tempfile.mkdtemp(prefix=ELSEWHERE_PREFIX, dir=ELSEWHERE_ROOT))
    write_private(pointer, f"{elsewhere}\n")
    return elsewhere


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def private_secret(path: Path, nbytes: int = 18) -> tuple[str, bool]:
    """The secret kept in `path` (mode 600), made at random the first time: (secret, made now)."""
    made = not path.exists() or not path.read_text().strip()
    if made:
        write_private(path, secrets.token_urlsafe(nbytes) + "\n")
    return path.read_text().strip(), made


# --- the command ---------------------------------------------------------------------------------


class Command(BaseCommand):
    help = ("Prepare the demo: admin user, sandbox PostgreSQL with sample data, target 'demo' and a first "
            "backup. Safe to run again: it reuses what exists.")

    def add_arguments(self, parser):
        parser.add_argument("--var-dir", default=None,
                            help="Where the demo keeps its state (default: var/ in the checkout).")
        parser.add_argument("--rows", type=int, default=5000, help="Sample rows per table (first run only).")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="Console URL to print.")
        parser.add_argument("--reset-admin-password", action="store_true",
                            help="Set the admin's password back to the one in VAR/demo-admin-password.")
        parser.add_argument("--stop", action="store_true", help="Stop the sandbox cluster and exit.")

    def handle(self, *args, var_dir, rows, url, reset_admin_password, stop, **options):
        var = Path(var_dir) if var_dir else Path(settings.BASE_DIR) / "var"
        var.mkdir(parents=True, exist_ok=True)
        if stop:
            return self.stop_sandbox(var)

        password, admin_note = self.ensure_admin(var, reset=reset_admin_password)
        cluster, cluster_note = self.ensure_cluster(var)
        db_note = self.ensure_database(cluster, rows=rows)
        target, target_note = self.ensure_target(cluster)
        backup, backup_note = self.ensure_first_backup(target)

        line = "=" * 78
        self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"  Console:   {url}"))
        self.stdout.write(self.style.SUCCESS(f"  Username:  {ADMIN_USERNAME}"))
        self.stdout.write(self.style.SUCCESS(f"  Password:  {password}"))
        self.stdout.write(f"             ({admin_note}; kept in {var / PASSWORD_FILE})")
        self.stdout.write(f"  Sandbox:   PostgreSQL on 127.0.0.1:{cluster.port}, data in {cluster.data} ({cluster_note})")
        self.stdout.write(f"  Database:  {DEMO_DB} ({db_note})")
        self.stdout.write(f"  Target:    {target.name} ({target_note})")
        self.stdout.write(f"  Backup:    {backup.pk} {backup.status}, {backup.size_stored} bytes stored, "
                          f"key {backup.encryption_key_id or 'none (unencrypted)'} ({backup_note})")
        self.stdout.write(line)

    # --- pieces, each idempotent -----------------------------------------------------------------

    def ensure_admin(self, var: Path, *, reset: bool) -> tuple[str, str]:
        user_model = get_user_model()
        password, new_file = private_secret(var / PASSWORD_FILE, nbytes=12)
        user = user_model.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            user_model.objects.create_superuser(ADMIN_USERNAME, ADMIN_EMAIL, password)
            return password, "admin user created"
        if new_file or reset or not (user.is_superuser and user.is_staff and user.is_active):
            user.set_password(password)
            user.is_superuser = user.is_staff = user.is_active = True
            user.save()
            return password, "admin password set"
        if not user.check_password(password):
            self.stderr.write(self.style.WARNING(
                "The admin's password was changed in the console and no longer matches the file; "
                "run `manage.py demo --reset-admin-password` to set it back."))
            return password, "NOT the current password: changed in the console"
        return password, "existing admin user"

    def ensure_cluster(self, var: Path) -> tuple[LocalCluster, str]:
        try:
            clusters.server_bin_dir()
        except RuntimeError as exc:
            raise CommandError(f"{exc} Run `make setup` first.") from None
        base = sandbox_base(var)
        if (var / SANDBOX_POINTER).exists():
            self.stdout.write(f"The postgres user cannot reach {var}; the sandbox lives in {base} "
                              f"(recorded in {var / SANDBOX_POINTER}).")
        password, new_password = private_secret(var / SANDBOX_PASSWORD_FILE)
        cluster = LocalCluster(base=base, port=clusters.recorded_port(base) or clusters.free_port(),
                               password=password)
        note = "reused"
        if not (cluster.data / "PG_VERSION").exists():
            if cluster.data.exists():  # an initdb that did not finish
                shutil.rmtree(cluster.data)
            cluster.port = clusters.free_port()
            self.stdout.write(f"Creating the sandbox PostgreSQL cluster in {cluster.data} ...")
            cluster.initdb()  # password logins only (SCRAM)
            (base / "port").write_text(f"{cluster.port}\n")
            note = "created"
            new_password = False
        if cluster.is_running():
            note = "already running" if note == "reused" else note
        else:
            if not clusters.port_is_free(cluster.port):
                old = cluster.port
                cluster.set_port(clusters.free_port())
                self.stdout.write(f"Port {old} is taken; the sandbox moves to port {cluster.port}.")
            cluster.start()
            (base / "port").write_text(f"{cluster.port}\n")  # start() may have moved to another port
            note = f"{note}, started"
        if new_password:
            # A sandbox made by an older demo trusted every local connection: it now wants the password.
            try:
                cluster.require_password(password)
            except Exception as exc:
                (var / SANDBOX_PASSWORD_FILE).unlink(missing_ok=True)
                raise CommandError(
                    f"Could not give the sandbox cluster a password: {exc}. If it already has one and "
                    f"{var / SANDBOX_PASSWORD_FILE} was lost, start over: `make stop`, then remove {base}."
                ) from None
            note = f"{note}, password logins only from now on"
        try:
            clusters.wait_accepting(cluster.conn(), app_name="backupsite-demo")
        except RuntimeError as exc:
            raise CommandError(f"{exc} (log: {cluster.log})") from None
        return cluster, note

    def ensure_database(self, cluster: LocalCluster, *, rows: int) -> str:
        clusters.create_database(cluster.conn(), DEMO_DB, if_missing=True)
        with psycopg.connect(**cluster.conn(DEMO_DB).kwargs("backupsite-demo")) as c:
            loaded = c.execute("SELECT to_regclass('public.properties') IS NOT NULL").fetchone()[0]
        if loaded:
            return "sample data already loaded"
        self.stdout.write(f"Loading sample data into {DEMO_DB} ({rows} rows per table) ...")
        sample_data.load(cluster.conn(DEMO_DB), rows=rows)  # one transaction: all or nothing
        return f"sample data loaded, {rows} rows per table"

    def ensure_target(self, cluster: LocalCluster) -> tuple[DatabaseTarget, str]:
        conn = cluster.conn(DEMO_DB)
        existing = DatabaseTarget.objects.filter(name=TARGET_NAME).first()
        wanted = (conn.host, conn.port, conn.dbname, conn.user, "disable")
        if existing is not None and (existing.host, existing.port, existing.dbname, existing.user,
                                     existing.sslmode) == wanted:
            try:
                if existing.get_password() == conn.password:
                    return existing, "exists"
            except UserError:  # sealed under another SECRET_KEY: set it again below
                pass
        dsn = f"postgresql://{conn.user}@{conn.host}:{conn.port}/{conn.dbname}?sslmode=disable"
        # The password travels as an argument, not inside the DSN.
        target, created = upsert_target_from_dsn(name=TARGET_NAME, dsn=dsn, password=conn.password,
                                                 actor=DEMO_ACTOR)
        return target, ("registered" if created else f"updated (port {conn.port})")

    def ensure_first_backup(self, target: DatabaseTarget) -> tuple[Backup, str]:
        done = Backup.objects.filter(database_target=target, status=BackupStatus.SUCCEEDED).order_by("-created_at")
        if done.exists():
            return done.first(), "first backup already taken"
        self.stdout.write(f"Taking the first backup of {target.name} ...")
        job = DatabaseBackupJob.run_now(target=target, actor=DEMO_ACTOR)
        backup = Backup.objects.get(pk=job.args["backup_id"])
        if backup.status != BackupStatus.SUCCEEDED:
            raise CommandError(f"The first backup of {target.name} failed: {backup.error or job.error}")
        return backup, "first backup taken now"

    def stop_sandbox(self, var: Path) -> None:
        pointer = var / SANDBOX_POINTER
        base = Path(pointer.read_text().strip()) if pointer.exists() else var / SANDBOX_DIR
        if not is_private_dir(base) or not (base / "data" / "PG_VERSION").exists():
            self.stdout.write(f"No sandbox cluster in {base}.")
            return
        cluster = LocalCluster(base=base, port=clusters.recorded_port(base) or 0)
        if cluster.is_running():
            cluster.stop()
            self.stdout.write(f"Stopped the sandbox cluster in {cluster.data}.")
        else:
            self.stdout.write(f"The sandbox cluster in {cluster.data} is not running.")
