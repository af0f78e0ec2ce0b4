"""Backup Failed (critical): the newest finished backup of a target failed. A later success clears it.

Database backups are read from Backup rows; document backups (another app) from their jobs, by job type only.
"""
from datetime import timedelta

from django.db.models import OuterRef, Subquery

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
        finished = [BackupStatus.SUCCEEDED, BackupStatus.FAILED]
        newest = (Backup.objects.filter(database_target=OuterRef("pk"), status__in=finished)
                  .order_by("-created_at", "-pk").values("pk")[:1])
        targets = {t.pk: t for t in DatabaseTarget.objects.annotate(last_id=Subquery(newest))}
        last = Backup.objects.filter(pk__in=[t.last_id for t in targets.values() if t.last_id],
                                     status=BackupStatus.FAILED)
        for backup in last.order_by("database_target"):
            target = targets[backup.database_target_id]
            params = self.params(target=target)
            if params is None:
                continue
            yield Condition(
                fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                occurrence=backup.pk, severity=params["severity"],
                message=f"The last backup of {target.name} ({backup.kind}/{backup.format}) failed: "
                        f"{(backup.error or 'no error recorded')[:300]}",
                details={"backup_id": backup.pk, "job_id": backup.job_id, "kind": backup.kind,
                         "format": backup.format, "error": backup.error[:2000]},
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
