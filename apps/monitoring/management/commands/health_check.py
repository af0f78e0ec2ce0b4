from django.core.management.base import BaseCommand

from apps.monitoring import health


class Command(BaseCommand):
    help = "Probe every target and storage location, then evaluate the alert rules (what the 5-minute schedule runs)."

    def handle(self, *args, **options):
        report = health.run_health_checks()
        for kind in ("targets", "locations"):
            for name, outcome in report[kind].items():
                self.stdout.write(f"{kind[:-1]} {name}: {'ok' if outcome['ok'] else 'FAILING'} ({outcome['detail']})")
        alerts = report["alerts"]
        self.stdout.write("alerts: " + (", ".join(f"{k} {v}" for k, v in sorted(alerts.items())) or "no change"))
