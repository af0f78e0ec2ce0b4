from django.core.management.base import BaseCommand

from apps.core.commands import add_password_options, cli_actor, fail, password_from_options, print_json
from apps.core.errors import UserError
from apps.databases.services import upsert_target_from_dsn


class Command(BaseCommand):
    help = (
        "Create or update a database target from a DSN. The password is stored sealed and never printed; "
        "give it with --password-file or --password-stdin to keep it out of the process list."
    )
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--dsn", required=True, help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
        parser.add_argument("--description", default=None)
        parser.add_argument("--default-method", choices=["logical", "physical"], default=None,
                            help="Method of a full backup when none is asked for (default logical)")
        parser.add_argument("--data-directory", default=None,
                            help="The cluster's data directory as seen by the job worker (for incremental "
                                 "backups); an empty string clears it")
        add_password_options(parser)

    def handle(self, *args, name, dsn, description, default_method, data_directory, **options):
        given = {"description": description, "default_method": default_method, "data_directory": data_directory}
        fields = {k: v for k, v in given.items() if v is not None}
        try:
            target, created = upsert_target_from_dsn(
                name=name, dsn=dsn, password=password_from_options(options), actor=cli_actor(), **fields
            )
        except UserError as exc:
            raise fail(str(exc))
        self.stderr.write(f"{'Created' if created else 'Updated'} target {target.name}")
        print_json(self, {"id": target.pk, "name": target.name, "host": target.host, "port": target.port,
                          "dbname": target.dbname, "user": target.user, "default_method": target.default_method,
                          "data_directory": target.data_directory, "created": created})
