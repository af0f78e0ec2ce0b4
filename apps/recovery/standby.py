"""A streaming standby of a target, made with pg_basebackup on this machine and registered as a target of its own.

The standby's `primary_conninfo` names the primary's host, port and user, and `application_name` (the new
target's name, which `synchronous_standby_names` on the primary can list). A password never goes into it nor
onto a command line: pg_basebackup reads PGPASSWORD from its environment, and the running standby reads a
passfile beside its data directory (`.<dir>.pgpass`, mode 0600, the server user's), named by `passfile=`.

Its configuration comes from the primary's data directory (pg_basebackup copies postgresql.conf and
postgresql.auto.conf); the standby's own lines are appended to postgresql.auto.conf. A primary whose
configuration lives outside its data directory (Debian's /etc/postgresql) needs those files copied by hand.

The new target is registered disabled (scheduled backups skip a standby); a failover enables it and disables
the old primary. A failure leaves nothing: the server is stopped, the directory and passfile removed.
"""
import os
import shutil
import subprocess
from pathlib import Path

from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases import clusters
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.databases.pgtools import pg_bin
from apps.jobs.progress import JobContext, note


def check_request(*, primary: DatabaseTarget, name: str, pgdata: str, port: int) -> None:
    """Refuse a standby that cannot be made, before anything is written."""
    if DatabaseTarget.objects.filter(name=name).exists():
        raise UserError(f"A target named {name!r} exists already; choose another name for the standby.")
    path = Path(pgdata)
    if not path.is_absolute():
        raise UserError("The data directory must be an absolute path.")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent} does not exist; create it first.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not an empty directory.")
    if not 1 <= port <= 65535:
        raise UserError("The port must be between 1 and 65535.")
    if not clusters.port_is_free(port):
        raise UserError(f"Port {port} is in use on this machine; choose another.")


def passfile_for(pgdata: Path) -> Path:
    return pgdata.parent / f".{pgdata.name}.pgpass"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def primary_conninfo(primary: PgConn, *, application_name: str, passfile: Path | None) -> str:
    parts = {"host": primary.host, "port": str(primary.port), "user": primary.user, "sslmode": primary.sslmode,
             "application_name": application_name}
    if passfile is not None:
        parts["passfile"] = str(passfile)
    return " ".join(f"{k}={_conninfo_value(v)}" for k, v in parts.items())


def create_standby(*, primary: DatabaseTarget, name: str, pgdata: str, port: int, actor: Actor,
                   ctx: JobContext | None = None, plan=None) -> DatabaseTarget:
    """pg_basebackup from `primary` into `pgdata`, configure it as a streaming standby, start it, register it."""
    from apps.backups import wal_config
    from apps.databases import services as target_services

    check_request(primary=primary, name=name, pgdata=pgdata, port=port)
    path = Path(pgdata)
    source = PgConn.for_target(primary)
    passfile = passfile_for(path) if source.password else None
    cluster = clusters.LocalCluster(base=path.parent, port=port, data_dir=path,
                                    log_file=path.parent / f"{path.name}.log")
    started = False
    try:
        note(ctx, f"pg_basebackup from {source.redacted()} into {path}")
        done = subprocess.run(
            clusters.as_server_user([pg_bin("pg_basebackup"), "-D", str(path), "-X", "stream", "-c", "fast",
                                     "--no-password"]),
            env=source.env("backupsite-standby"), capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"pg_basebackup failed: {done.stderr.strip()[-800:]}")
        if passfile is not None:
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(":".join(_pgpass_field(v) for v in (source.host, str(source.port), "*", source.user,
                                                              source.password)) + "\n")
            clusters.give_to_server_user(passfile)
        conf = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": wal_config.conf_value(str(path.parent)),
            "hot_standby": "on",
            "primary_conninfo": wal_config.conf_value(
                primary_conninfo(source, application_name=name, passfile=passfile)),
        }
        if primary.wal_archiving:
            conf.update(_archive_settings(name, ctx))
        cluster.append_conf(conf)
        signal = path / "standby.signal"
        signal.touch()
        clusters.give_to_server_user(signal)
        note(ctx, f"starting the standby on port {port}")
        cluster.log.touch()
        clusters.give_to_server_user(cluster.log)
        cluster.start()
        started = True
        with transaction.atomic():
            target = DatabaseTarget(
                name=name, description=f"Streaming standby of {primary.name}", host="127.0.0.1", port=cluster.port,
                dbname=primary.dbname, user=primary.user, sslmode=primary.sslmode,
                storage_location=primary.storage_location, wal_archiving=primary.wal_archiving,
                default_method=primary.default_method, data_directory=str(path),
                tags=[f"standby-of:{primary.name}"], enabled=False)
            target = target_services.save_target(target=target, actor=actor, password=source.password or None)
            if plan is not None:
                plan.standbys.add(target)
            audit(actor=actor, action="dr.standby.created", obj=target,
                  details={"primary": primary.name, "pgdata": str(path), "port": cluster.port,
                           "plan": plan.name if plan is not None else ""})
    except BaseException:
        if started:
            cluster.stop(mode="immediate")
        shutil.rmtree(path, ignore_errors=True)
        if passfile is not None:
            passfile.unlink(missing_ok=True)
        raise
    return target


def _archive_settings(name: str, ctx) -> dict[str, str]:
    """The standby archives into its own target's archive once promoted (a standby with archive_mode=on does
    not archive before); without an environment file for PostgreSQL's commands, archiving is switched off and the
    operator runs `archive_config NAME` after a failover."""
    from apps.backups import wal_config

    try:
        return wal_config.archive_settings(name, wal_config.Invocation.current())
    except UserError as exc:
        note(ctx, f"archiving not configured for the standby ({exc}); run `archive_config {name}` after a failover")
        return {"archive_mode": "off"}
