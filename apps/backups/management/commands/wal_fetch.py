"""restore_command: `manage.py wal_fetch TARGET %f %p`."""
from django.core.management.base import BaseCommand, CommandError

EXIT_NOT_ARCHIVED = 1  # what PostgreSQL expects for "no such file": normal at the end of recovery
EXIT_ERROR = 2


class Command(BaseCommand):
    help = ("Restore one archived WAL file to a path (use as restore_command). Exits 1 when the file is not "
            "archived, 2 when it cannot be restored (corrupt, not authentic, storage error).")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target", help="Target name")
        parser.add_argument("name", help="WAL file name, as PostgreSQL's %%f")
        parser.add_argument("path", help="Where to write it, as PostgreSQL's %%p")

    def handle(self, *args, target, name, path, **options):
        from apps.backups import wal_archive
        from apps.core.errors import UserError
        from apps.databases.models import DatabaseTarget
        from apps.pipeline.artifact import ArtifactError
        from apps.pipeline.keys import KeyError_

        row = DatabaseTarget.objects.filter(name=target).first()
        if row is None:
            raise CommandError(f"No target named {target!r}.", returncode=EXIT_ERROR)
        try:
            wal_archive.fetch(target=row, name=name, dest=path)
        except wal_archive.WalNotArchived as exc:
            raise CommandError(str(exc), returncode=EXIT_NOT_ARCHIVED)
        except (ArtifactError, KeyError_, UserError) as exc:
            raise CommandError(f"{name} cannot be restored: {exc}", returncode=EXIT_ERROR)
        except Exception as exc:
            raise CommandError(f"{name} cannot be restored: {type(exc).__name__}: {exc}", returncode=EXIT_ERROR)
