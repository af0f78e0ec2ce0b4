from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.storage.models import StorageLocation
from apps.storage.services import test_location


class Command(BaseCommand):
    help = ("Test a storage location: connect, write / read back / delete a probe object and, for a write-once "
            "location, check that the store refuses to delete it. Exits non-zero if any check fails.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        location = StorageLocation.objects.filter(name=name).first()
        if location is None:
            raise fail(f"No storage location named {name!r}.")
        report = test_location(location=location, actor=cli_actor())
        for check in report["checks"]:
            self.stderr.write(f"{'ok  ' if check['ok'] else 'FAIL'} {check['name']}: {check['detail']}")
        print_json(self, report)
        if not report["ok"]:
            failed = [c for c in report["checks"] if not c["ok"]]
            raise fail(f"Location {name} failed its test: {failed[0]['name']}: {failed[0]['detail']}")
