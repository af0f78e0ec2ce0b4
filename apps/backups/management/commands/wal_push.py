"""archive_command: `manage.py wal_push TARGET %p` (see archive_config for the exact line)."""
from django.core.management.base import BaseCommand, CommandError

from apps.backups.wal_config import AHEAD
from apps.core.commands import fail


class Command(BaseCommand):
    help = ("Archive one WAL file PostgreSQL completed (use as archive_command, see archive_config). Exits 0 only "
            "once the file is stored and catalogued, or was archived already with the same content.")
    requires_system_checks = []  # run as archive_command once per segment: start-up time matters

    def add_arguments(self, parser):
        parser.add_argument("target", help="Target name")
        parser.add_argument("path", help="The file, as PostgreSQL's %%p (relative to the data directory)")
        parser.add_argument("--spool", default=None,
                            help="Directory (the server user's only) for markers of files archived ahead; see "
                                 "archive_config --spool")
        parser.add_argument("--ahead", type=int, default=AHEAD,
                            help="With --spool: how many other ready files this process archives too "
                                 "(default %(default)s)")

    def handle(self, *args, target, path, spool, ahead, verbosity, **options):
        from apps.backups import wal_archive
        from apps.core.errors import UserError
        from apps.databases.models import DatabaseTarget

        row = DatabaseTarget.objects.filter(name=target).first()
        if row is None:
            raise fail(f"No target named {target!r}; nothing archived.")
        try:
            result = wal_archive.push(target=row, path=path)
        except UserError as exc:
            raise fail(str(exc))
        except CommandError:
            raise
        except Exception as exc:  # storage or catalog failure: one clear line, PostgreSQL retries
            raise fail(f"Not archived: {type(exc).__name__}: {exc}")
        seg = result.segment
        if result.warning:
            self.stderr.write(f"wal_push: {result.warning}")
        if verbosity >= 2:
            done = "archived" if result.stored else "already archived"
            self.stdout.write(f"{done} {seg.name} ({seg.size_raw} bytes, {seg.size_stored} stored) "
                              f"in {result.seconds:.3f} s")
        if spool and ahead > 0:
            try:  # the requested file is archived: what happens to the others does not change its exit code
                extra = wal_archive.push_ahead(target=row, path=path, spool=spool, limit=ahead)
            except Exception as exc:
                self.stderr.write(f"wal_push: archiving ahead stopped: {type(exc).__name__}: {exc}")
            else:
                if verbosity >= 2 and extra:
                    self.stdout.write(f"archived ahead: {', '.join(extra)}")
