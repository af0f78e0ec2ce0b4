from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.jobs import DocumentExportJob
from apps.documents.selectors import version_named
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = "Export a document version as a plain tar.gz (extractable with tar, without this application)."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("version_id", help="Version id")
        parser.add_argument("--to", required=True, help="The file to write (FILE.tar.gz); it must not exist")

    def handle(self, *args, version_id, to, **options):
        import os

        try:
            job = DocumentExportJob.run_now(version=version_named(version_id), to=os.path.abspath(to),
                                            actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **(job.result or {}), "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Export failed: {job.error}")
