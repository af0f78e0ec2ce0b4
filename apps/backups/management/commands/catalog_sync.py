from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation


class Command(BaseCommand):
    help = ("Rebuild the backup catalog (backups, artifacts, chains, replicas, WAL) from the manifests in one "
            "storage location; what the catalog already holds is kept. Backups without a manifest are ignored.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Storage location (add it first with location_add on a fresh database)")

    def handle(self, *args, name, **options):
        from apps.backups.catalog_sync import sync_location

        location = StorageLocation.objects.filter(name=name).first()
        if location is None:
            raise fail(f"No storage location named {name!r}; add it with location_add first.")
        try:
            report = sync_location(location=location, actor=cli_actor())
        except (UserError, StorageError) as exc:
            raise fail(str(exc))
        for item in report["ignored"] + report["wal_refused"]:
            self.stderr.write(f"ignored {item['key']}: {item['why']}")
        print_json(self, report)
