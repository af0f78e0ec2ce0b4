"""Backup Failed (critical): the newest finished backup of a target failed. A later success clears it.

Database backups are read from Backup rows; document backups (another app) from their jobs, by job type only.
"""
from datetime import timedelta

from apps.backups.models import Backup, BackupStatus
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job, JobStatus
from apps.monitoring.rules.base import Condition, Rule

DOCUMENT_BACKUP_JOB = "documents.backup"


def document_source_of(job: Job) -> str:
    """The document source a documents.backup job worked on, as its arguments name it."""
    args = job.args or {}
    for key in ("source", "source_name", "source_id"):
        if args.get(key) not in (None, ""):
            return str(args[key])
    return "documents"


class BackupFailed(Rule):
    type = "backup_failed"
    label = "Backup failed"
    severity = "critical"
    defaults = {"document_jobs_days": 30}

    def evaluate(self, *, now):
        for target in DatabaseTarget.objects.order_by("pk"):
            params = self.params(target=target)
            if params is None:
                continue
            last = (Backup.objects.filter(database_target=target,
                                          status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED])
                    .order_by("-created_at", "-pk").first())
            if last is None or last.status != BackupStatus.FAILED:
                continue
            yield Condition(
                fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                occurrence=last.pk, severity=params["severity"],
                message=f"The last backup of {target.name} ({last.kind}/{last.format}) failed: "
                        f"{(last.error or 'no error recorded')[:300]}",
                details={"backup_id": last.pk, "job_id": last.job_id, "kind": last.kind, "format": last.format,
                         "error": last.error[:2000]},
            )
        yield from self._document_backups(now=now)

    def _document_backups(self, *, now):
        params = self.params()
        if params is None:
            return
        since = now - timedelta(days=params["document_jobs_days"])
        seen: set[str] = set()
        jobs = Job.objects.filter(type=DOCUMENT_BACKUP_JOB, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED],
                                  created_at__gte=since).order_by("-created_at", "-pk")
        for job in jobs.iterator():
            source = document_source_of(job)
            if source in seen:
                continue
            seen.add(source)
            if job.status == JobStatus.FAILED:
                yield Condition(
                    fingerprint=f"{self.type}:documents:{source}", target=source, occurrence=job.pk,
                    severity=params["severity"],
                    message=f"The last document backup of {source} failed: {(job.error or 'no error')[:300]}",
                    details={"job_id": job.pk, "error": job.error[:2000]},
                )
