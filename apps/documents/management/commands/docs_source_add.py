from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.models import DocumentSource
from apps.documents.services import save_source
from apps.storage.models import StorageLocation


class Command(BaseCommand):
    help = ("Add (or update) a document source: a directory tree (--path), or the objects under a prefix of a "
            "storage location (--objects LOCATION [--prefix P]), to back up in versions.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Source name (a slug)")
        origin = parser.add_mutually_exclusive_group(required=True)
        origin.add_argument("--path", help="Absolute path of the directory to back up")
        origin.add_argument("--objects", metavar="LOCATION",
                            help="Back up the objects of this storage location (S3, Azure, GCS) instead")
        parser.add_argument("--prefix", default="", help="With --objects: only keys under this prefix")
        parser.add_argument("--replica", action="append", default=[], metavar="LOCATION",
                            help="Also copy every version to this storage location; repeatable")
        parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                            help="Back up only files matching (name, or relative path if it has a /); repeatable")
        parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                            help="Skip files and directories matching; repeatable")
        parser.add_argument("--follow-symlinks", action="store_true",
                            help="Back up what links point to (default: record the links themselves)")
        parser.add_argument("--location", help="Storage location name (default: the primary location)")

    def handle(self, *args, name, path, objects, prefix, replica, include, exclude, follow_symlinks, location,
               **options):
        def named(loc_name: str) -> StorageLocation:
            found = StorageLocation.objects.filter(name=loc_name).first()
            if found is None:
                raise fail(f"No storage location named {loc_name!r}.")
            return found

        source = DocumentSource.objects.filter(name=name).first() or DocumentSource(name=name)
        source.root_path, source.include, source.exclude = path or "", include, exclude
        source.object_location, source.prefix = (named(objects) if objects else None), prefix
        source.follow_symlinks = follow_symlinks
        if location:
            source.storage_location = StorageLocation.objects.filter(name=location).first()
            if source.storage_location is None:
                raise fail(f"No storage location named {location!r}.")
        try:
            source = save_source(source=source, actor=cli_actor(),
                                 replica_locations=[named(r) for r in replica] if replica else None)
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"id": source.pk, "name": source.name, "root_path": source.root_path,
                          "objects": source.object_location.name if source.object_location else None,
                          "prefix": source.prefix,
                          "replicas": sorted(loc.name for loc in source.replica_locations.all()),
                          "include": source.include, "exclude": source.exclude,
                          "follow_symlinks": source.follow_symlinks,
                          "storage_location": source.storage_location.name if source.storage_location else None})
