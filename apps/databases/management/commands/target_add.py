from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.databases.services import upsert_target_from_dsn


class Command(BaseCommand):
    help = "Create or update a database target from a DSN (the password is stored sealed, never printed)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--dsn", required=True, help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
        parser.add_argument("--description", default=None)

    def handle(self, *args, name, dsn, description, **options):
        fields = {"description": description} if description is not None else {}
        try:
            target, created = upsert_target_from_dsn(name=name, dsn=dsn, actor=cli_actor(), **fields)
        except UserError as exc:
            raise fail(str(exc))
        self.stderr.write(f"{'Created' if created else 'Updated'} target {target.name}")
        print_json(self, {"id": target.pk, "name": target.name, "host": target.host, "port": target.port,
                          "dbname": target.dbname, "user": target.user, "created": created})
