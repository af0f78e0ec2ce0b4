"""The WAL archive of a target: archived ranges per timeline, gaps, lag, and the recovery window."""
import json

from django.core.management.base import BaseCommand

from apps.core.commands import fail


class Command(BaseCommand):
    help = "Show a target's WAL archive: ranges and gaps per timeline, last archived file and lag, recovery window."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("target", help="Target name")
        parser.add_argument("--json", dest="as_json", action="store_true", help="One JSON object instead of text")

    def handle(self, *args, target, as_json: bool, **options):
        from apps.backups import wal_selectors
        from apps.databases.models import DatabaseTarget

        row = DatabaseTarget.objects.filter(name=target).first()
        if row is None:
            raise fail(f"No target named {target!r}.")
        status = wal_selectors.archive_status(row)
        window = wal_selectors.recovery_window(row).as_dict()
        if as_json:
            self.stdout.write(_dumps({**status, "recovery_window": window}))
            return
        self.stdout.write("\n".join(_text(status, window)))


def _dumps(data: dict) -> str:
    return json.dumps(data, default=str, sort_keys=True)


def _text(status: dict, window: dict) -> list[str]:
    lines = [f"WAL archive of {status['target']}: {status['files']} files, {status['stored_bytes']} bytes stored, "
             f"segments of {status['segment_size'] >> 20} MB"]
    for tli, info in status["timelines"].items():
        for r in info["ranges"]:
            lines.append(f"  timeline {tli}: {r['first']} .. {r['last']} ({r['segments']} segments, "
                         f"{r['start_lsn']} .. {r['end_lsn']}), last commit {r['last_commit_at'] or '-'}")
        for g in info["gaps"]:
            lines.append(f"  GAP on timeline {tli}: {g['missing']} segment(s) missing, {g['first_missing']} .. "
                         f"{g['last_missing']} ({g['start_lsn']} .. {g['end_lsn']})")
    lines.append(f"Last archived: {status['last_archived'] or '-'} at {status['last_archived_at'] or '-'} "
                 f"({_age(status['archive_lag_seconds'])}); newest commit archived {status['last_commit_at'] or '-'} "
                 f"({_age(status['last_commit_age_seconds'])})")
    if window["recoverable"]:
        lines.append(f"Recovery window: {window['earliest_at']} .. {window['latest_at']} "
                     f"(LSN {window['earliest_lsn']} .. {window['latest_lsn']}, base backup {window['base_backup_id']}, "
                     f"timeline {window['timeline']})")
        for span in window["spans"][:-1]:
            lines.append(f"  older, cut off by a gap: {span['earliest_at']} .. {span['latest_at']} "
                         f"(base backup {span['base_backup_id']})")
    else:
        lines.append("Recovery window: none (no succeeded physical base backup with continuous WAL after it)")
    for backup_id, why in window["unusable_backups"].items():
        lines.append(f"  base backup {backup_id} cannot be used for recovery: {why}")
    return lines


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s ago"
