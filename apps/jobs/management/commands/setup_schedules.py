from django.core.management.base import BaseCommand

from apps.jobs import schedules


class Command(BaseCommand):
    help = "Create or update the recurring jobs run by the django-q2 cluster; safe to run again."
    requires_system_checks = []

    def handle(self, *args, **options):
        for name, created in schedules.ensure():
            self.stdout.write(f"{'created' if created else 'up to date'}: {name}")
