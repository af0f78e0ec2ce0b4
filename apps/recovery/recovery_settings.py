"""The settings that turn a restored data directory into a point-in-time recovery (PostgreSQL 12+).

Written into postgresql.auto.conf (later lines win) plus recovery.signal. Besides the target they
make the recovered cluster safe to start beside its source: its own port, TCP on localhost only, no
Unix socket (the source's socket directory may be in use or gone), and no archiving, so it never
pushes its WAL into the source's archive.
"""
import os
from pathlib import Path

from apps.backups.wal_config import conf_value
from apps.databases.clusters import give_to_server_user
from apps.recovery.targets import RecoveryTarget

# Used only when the backup has no such file (Debian keeps them in /etc/postgresql, outside PGDATA).
MINIMAL_HBA = (
    "local all all peer\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host all all ::1/128 scram-sha-256\n"
)


def recovery_settings(*, restore_command: str, target: RecoveryTarget, port: int) -> dict[str, str]:
    settings = {
        "restore_command": restore_command,
        **target.settings(),
        "recovery_target_action": "promote",
        "recovery_target_timeline": "latest",
        "archive_mode": "off",
        "archive_command": "",
        "primary_conninfo": "",
        "port": str(port),
        "listen_addresses": "localhost",
        "unix_socket_directories": "",
        "lc_messages": "C",  # the log is read for where replay stopped
    }
    return settings


def write(pgdata: Path, settings: dict[str, str]) -> None:
    """Append the settings, add recovery.signal, and give any missing config file a minimal default."""
    owned = []
    for name, default in (("postgresql.conf", "# written by backupsite: the backup held no postgresql.conf\n"),
                          ("pg_hba.conf", MINIMAL_HBA), ("pg_ident.conf", "")):
        path = pgdata / name
        if not path.exists():
            path.write_text(default)
            owned.append(path)
    auto = pgdata / "postgresql.auto.conf"
    if not auto.exists():
        owned.append(auto)
    with open(auto, "a") as fh:
        fh.write("\n# point-in-time recovery (backupsite)\n")
        fh.write("".join(f"{k} = {conf_value(v)}\n" for k, v in settings.items()))
    (pgdata / "standby.signal").unlink(missing_ok=True)
    signal = pgdata / "recovery.signal"
    signal.touch()
    owned.append(signal)
    for path in owned:
        os.chmod(path, 0o600)
        give_to_server_user(path)
