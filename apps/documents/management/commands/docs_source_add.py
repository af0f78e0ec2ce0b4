from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.models import DocumentSource
from apps.documents.services import save_source
from apps.storage.models import StorageLocation


class Command(BaseCommand):
    help = "Add (or update) a document source: a directory tree to back up in versions."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Source name (a slug)")
        parser.add_argument("--path", required=True, help="Absolute path of the directory to back up")
        parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                            help="Back up only files matching (name, or relative path if it has a /); repeatable")
        parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                            help="Skip files and directories matching; repeatable")
        parser.add_argument("--follow-symlinks", action="store_true",
                            help="Back up what links point to (default: record the links themselves)")
        parser.add_argument("--location", help="Storage location name (default: the primary location)")

    def handle(self, *args, name, path, include, exclude, follow_symlinks, location, **options):
        source = DocumentSource.objects.filter(name=name).first() or DocumentSource(name=name)
        source.root_path, source.include, source.exclude = path, include, exclude
        source.follow_symlinks = follow_symlinks
        if location:
            source.storage_location = StorageLocation.objects.filter(name=location).first()
            if source.storage_location is None:
                raise fail(f"No storage location named {location!r}.")
        try:
            source = save_source(source=source, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"id": source.pk, "name": source.name, "root_path": source.root_path,
                          "include": source.include, "exclude": source.exclude,
                          "follow_symlinks": source.follow_symlinks,
                          "storage_location": source.storage_location.name if source.storage_location else None})
