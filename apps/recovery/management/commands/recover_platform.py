"""The platform at one moment: `recover_platform --at TIME --target DB --source DOCS --to DIR`."""
import os

from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Recover a database target to TIME (point-in-time recovery, started and promoted) and restore the "
            "document version that was current at TIME, both under a new directory (DIR/database, "
            "DIR/documents); report what time each reached. Last stdout line: JSON.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--at", required=True, help="e.g. '2026-11-25 12:00:00+00' (a UTC offset is required)")
        parser.add_argument("--target", required=True, help="Database target name")
        parser.add_argument("--source", required=True, help="Document source name")
        parser.add_argument("--to", required=True, help="New directory to recover into")
        parser.add_argument("--port", type=int, help="Port of the recovered cluster (default: a free one)")

    def handle(self, *args, at, target, source, to, port, **options):
        from apps.databases.models import DatabaseTarget
        from apps.documents.models import DocumentSource
        from apps.recovery.jobs import PlatformRecoveryJob
        from apps.recovery.targets import parse_target

        db = DatabaseTarget.objects.filter(name=target).first()
        if db is None:
            raise fail(f"No database target named {target!r}.")
        docs = DocumentSource.objects.filter(name=source).first()
        if docs is None:
            raise fail(f"No document source named {source!r}.")
        try:
            moment = parse_target(time=at, lsn=None, name=None, inclusive=True).time
            job = PlatformRecoveryJob.run_now(target=db, source=docs, at=moment, destination=os.path.abspath(to),
                                              port=port, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **job.result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Platform recovery failed: {job.error}")
