from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.jobs.models import JobStatus
from apps.storage.models import StorageLocation


class Command(BaseCommand):
    help = ("Move backups to colder storage tiers by age, per each location's tier_rules (empty: the kind's "
            "defaults). --dry-run lists what would move.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--location", help="Only this location")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, location, dry_run, **options):
        from apps.backups.jobs import EnforceTiersJob

        found = None
        if location:
            found = StorageLocation.objects.filter(name=location).first()
            if found is None:
                raise fail(f"No storage location named {location!r}.")
        job = EnforceTiersJob.run_now(actor=cli_actor(), location=found, dry_run=dry_run)
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Tiering failed: {job.error}")
