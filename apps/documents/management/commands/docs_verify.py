from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.jobs import DocumentVerifyJob
from apps.documents.selectors import version_named
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Verify a document version: read back every chunk and compare hashes. Exits non-zero naming the "
            "missing and corrupt files.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("version_id", help="Version id")

    def handle(self, *args, version_id, **options):
        try:
            job = DocumentVerifyJob.run_now(version=version_named(version_id), actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        result = job.result or {}
        for path in result.get("missing", []):
            self.stderr.write(f"missing: {path}")
        for path in result.get("corrupt", []):
            self.stderr.write(f"corrupt: {path}")
        print_json(self, {"job_id": job.pk, "status": job.status, **result, "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Verification failed: {job.error}")
