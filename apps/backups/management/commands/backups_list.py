

from django.core.management.base import BaseCommand

from apps.backups import selectors


class Command(BaseCommand):
    help = "List backups, newest first."
    # Operational commands skip the system checks (run by `manage.py check` at deploy): faster scripts and cron.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON array on stdout")
        parser.add_argument("--target", help="Only this target")
        parser.add_argument("--status", help="Only this status")
        parser.add_argument("--limit", type=int, default=100)

    def handle(self, *args, json: bool, target, status, limit, **options):
        rows = [selectors.backup_summary(b) for b in selectors.backups(target=target, status=status)[:limit]]
        if json:
            import json as jsonlib

            self.stdout.write(jsonlib.dumps(rows, default=str, indent=2))
            return
        header = f"{'ID':26}  {'TARGET':16} {'FORMAT':7} {'STATUS':9} {'SIZE':>12}  {'CREATED':19}  VERIFIED"
        self.stdout.write(header)
        for r in rows:
            size = "" if r["size_bytes"] is None else f"{r['size_bytes']:,}"
            verified = (f"{r['last_verified_at']:%Y-%m-%d %H:%M} {r['last_verified_level']} "
                        f"{r['last_verification_result']}" if r["last_verified_at"] else "never")
            self.stdout.write(f"{r['id']:26}  {r['target'] or '-':16} {r['format']:7} {r['status']:9} {size:>12}  "
                              f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {verified}")
