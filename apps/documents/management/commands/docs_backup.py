from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.documents.jobs import DocumentBackupJob, version_summary
from apps.documents.models import DocumentSource, DocumentVersion, VersionStatus


class Command(BaseCommand):
    help = "Back up a document source now (a new version); prints the version as JSON on the last line."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="Source name")
        parser.add_argument("--queue", action="store_true",
                            help="Hand the backup to the job worker (manage.py qcluster) and return at once")

    def handle(self, *args, name, queue, **options):
        source = DocumentSource.objects.filter(name=name).first()
        if source is None:
            raise fail(f"No document source named {name!r}; add it with docs_source_add.")
        runner = DocumentBackupJob.enqueue if queue else DocumentBackupJob.run_now
        try:
            job = runner(source=source, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        version = DocumentVersion.objects.select_related("source").get(pk=job.args["version_id"])
        print_json(self, {**version_summary(version), "job_id": job.pk})
        if not queue and version.status != VersionStatus.SUCCEEDED:
            raise fail(f"Version {version.pk} failed: {version.error or job.error}")
