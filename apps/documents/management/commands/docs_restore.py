from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.jobs import DocumentRestoreJob
from apps.documents.selectors import version_named
from apps.jobs.models import JobStatus


class Command(BaseCommand):
    help = ("Restore a document version (or one file or subtree of it, --path) into a directory; existing files "
            "are kept unless --overwrite. Prints the outcome as JSON on the last line.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("version_id", help="Version id (docs_backup prints it)")
        parser.add_argument("--to", required=True, help="Directory to restore into (created if missing)")
        parser.add_argument("--path", help="Only this file or directory of the version (relative path)")
        parser.add_argument("--overwrite", action="store_true", help="Replace files that exist in the directory")

    def handle(self, *args, version_id, to, path, overwrite, **options):
        import os

        try:
            job = DocumentRestoreJob.run_now(version=version_named(version_id), to=os.path.abspath(to), path=path,
                                             overwrite=overwrite, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        print_json(self, {"job_id": job.pk, "status": job.status, **(job.result or {}), "error": job.error or None})
        if job.status != JobStatus.SUCCEEDED:
            raise fail(f"Restore failed: {job.error}")
