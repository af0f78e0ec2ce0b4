"""Backup Timeout (critical): a backup job has been running longer than its target's limit.

It clears when the job ends (a failure then raises Backup Failed)."""
from datetime import timedelta

from apps.backups.models import Backup, BackupStatus
from apps.jobs.models import Job, JobStatus
from apps.monitoring.rules.backup_failed import DOCUMENT_BACKUP_JOB, document_source_of
from apps.monitoring.rules.base import Condition, Rule


class BackupTimeout(Rule):
    type = "backup_timeout"
    label = "Backup timeout"
    severity = "critical"
    defaults = {"max_runtime_minutes": 240}

    def evaluate(self, *, now):
        running = (Backup.objects.filter(status__in=[BackupStatus.PENDING, BackupStatus.RUNNING],
                                         job__status=JobStatus.RUNNING, database_target__isnull=False)
                   .select_related("database_target", "job"))
        for backup in running:
            target, job = backup.database_target, backup.job
            params = self.params(target=target)
            if params is None or job.started_at is None:
                continue
            minutes = (now - job.started_at).total_seconds() / 60
            if minutes > params["max_runtime_minutes"]:
                yield Condition(
                    fingerprint=f"{self.type}:target:{target.pk}", target=target.name,
                    database_target_id=target.pk, occurrence=job.pk, severity=params["severity"],
                    message=f"The backup of {target.name} has been running for {minutes:.0f} min, more than its "
                            f"limit of {params['max_runtime_minutes']} min.",
                    details={"backup_id": backup.pk, "job_id": job.pk, "started_at": job.started_at.isoformat(),
                             "running_minutes": round(minutes, 1), "limit_minutes": params["max_runtime_minutes"]},
                )
        params = self.params()
        if params is None:
            return
        limit = now - timedelta(minutes=params["max_runtime_minutes"])
        for job in Job.objects.filter(type=DOCUMENT_BACKUP_JOB, status=JobStatus.RUNNING, started_at__lt=limit):
            source = document_source_of(job)
            yield Condition(
                fingerprint=f"{self.type}:documents:{source}", target=source, occurrence=job.pk,
                severity=params["severity"],
                message=f"The document backup of {source} has been running for more than "
                        f"{params['max_runtime_minutes']} min.",
                details={"job_id": job.pk, "started_at": job.started_at.isoformat()},
            )
