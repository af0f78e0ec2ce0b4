"""Print the postgresql.conf lines that archive a cluster's WAL to a target."""
from django.core.management.base import BaseCommand

from apps.core.commands import fail


class Command(BaseCommand):
    help = ("Print the archive_mode / archive_command / archive_timeout lines (and the restore_command for "
            "recovery) to paste into postgresql.conf of the target's cluster.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target", help="Target name")
        parser.add_argument("--env-file", default=None,
                            help="Environment file (KEY=value lines: DATABASE_URL, SECRET_KEY, "
                                 "BACKUP_ENCRYPTION_KEYS_FILE, BACKUP_LOCAL_ROOT...) PostgreSQL's commands read; "
                                 "default: the BACKUPSITE_ENV_FILE this command runs with")
        parser.add_argument("--python", default=None,
                            help="Interpreter PostgreSQL runs (default: this one); the postgres OS user must be "
                                 "able to execute it")
        parser.add_argument("--spool", default=None,
                            help="Absolute path of a directory only the server user writes (created if missing): "
                                 "each wal_push then archives the backlog of ready files in one process and "
                                 "PostgreSQL's calls for those are acknowledged by the shell. Recommended.")
        parser.add_argument("--archive-timeout", type=int, default=None,
                            help="Seconds after which a segment with any writes is archived anyway (default 60)")

    def handle(self, *args, target, env_file, python, archive_timeout, spool, **options):
        from pathlib import Path

        from apps.backups import wal_config
        from apps.core.errors import UserError
        from apps.databases.models import DatabaseTarget

        if not DatabaseTarget.objects.filter(name=target).exists():
            raise fail(f"No target named {target!r}; add it with target_add.")
        if archive_timeout is not None and archive_timeout < 1:
            raise fail("--archive-timeout must be at least 1 second.")
        if spool is not None and not Path(spool).is_absolute():
            raise fail("--spool must be an absolute path: PostgreSQL runs the command from its data directory.")
        try:
            inv = wal_config.Invocation.current(python=python, env_file=env_file)
        except UserError as exc:
            raise fail(str(exc))
        if not Path(inv.env_file).is_file():
            self.stderr.write(f"Warning: {inv.env_file} does not exist (yet).")
        archive = wal_config.archive_settings(target, inv, timeout=archive_timeout or wal_config.ARCHIVE_TIMEOUT,
                                             spool=spool)
        restore = wal_config.recovery_settings(target, inv)
        out = [f"# WAL archiving of this cluster to target {target} (postgresql.conf; archive_mode needs a "
               "restart, the others a reload)."]
        out += [f"{name} = {value}" for name, value in archive.items()]
        out += ["", "# Recovery from this archive (PITR or a standby): in the recovering cluster's configuration."]
        out += [f"{name} = {value}" for name, value in restore.items()]
        out += [
            "",
            "# PostgreSQL runs these commands as its own OS user (usually postgres), which must be able to:",
            f"#   execute {inv.python} and read the project under {Path(inv.manage).parent};",
            f"#   read {inv.env_file}, and every file it names (e.g. the master keys of BACKUP_ENCRYPTION_KEYS_FILE);",
            "#   write the metadata database (for SQLite: the file and its directory);",
            "#   write the target's storage location (for local storage: its root directory).",
            *([f"#   write {spool} (the markers of files archived ahead; no other user may write it)."] if spool else
              ["# Add --spool DIR to archive a backlog in one process (a process per file otherwise: ~16 MB/s)."]),
            "# Keep the environment file and the key file unreadable to anyone else (mode 0640, group postgres).",
        ]
        self.stdout.write("\n".join(out))
