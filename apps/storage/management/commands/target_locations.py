from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.models import DatabaseTarget
from apps.databases.services import set_target_locations
from apps.storage.models import StorageLocation


class Command(BaseCommand):
    help = ("Set where a target's backups go: written to PRIMARY, then copied to each REPLICA (also the order "
            "restores fall back in). No replica: backups stay in PRIMARY only.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target")
        parser.add_argument("primary")
        parser.add_argument("replicas", nargs="*")

    def handle(self, *args, target, primary, replicas, **options):
        found = DatabaseTarget.objects.filter(name=target).first()
        if found is None:
            raise fail(f"No target named {target!r}.")
        locations = {loc.name: loc for loc in StorageLocation.objects.filter(name__in=[primary, *replicas])}
        for name in [primary, *replicas]:
            if name not in locations:
                raise fail(f"No storage location named {name!r}.")
        try:
            set_target_locations(target=found, primary=locations[primary],
                                 replicas=[locations[n] for n in replicas], actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"target": found.name, "primary": primary, "replicas": replicas})
