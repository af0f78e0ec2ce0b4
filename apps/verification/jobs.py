"""Job runner for verifications: thin, it calls services (imported when used: see apps/backups/jobs.py)."""
from django.db import transaction

from apps.backups.models import Backup
from apps.core.errors import JobFailed
from apps.core.services import Actor, audit
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner


class VerifyBackupsJob(JobRunner):
    """Verify every replica of the given backups at one level; fails (with the details kept) if any replica does."""

    name = "verify.backups"

    @classmethod
    def prepare(cls, *, actor: Actor, backup_ids: list[str], level: str) -> Job:
        from apps.verification import services

        with transaction.atomic():
            job = cls.create_job(args=services.request_verification(backup_ids=backup_ids, level=level), actor=actor)
            audit(actor=actor, action="backup.verify.requested", obj=job,
                  details={"backups": len(backup_ids), "level": level})
        return job

    def run(self, **_runtime) -> dict:
        from apps.verification import services

        ids, level = self.job.args["backup_ids"], self.job.args["level"]
        if level == "restore":
            from apps.verification import scratch

            for name in scratch.sweep():  # left by a verification that was killed
                self.ctx.log(f"removed the scratch directory {name} of a verification that did not finish")
        runs = []
        for backup in Backup.objects.filter(pk__in=ids).select_related("storage_location"):
            runs.extend(services.verify_backup(backup=backup, level=level, ctx=self.ctx))
        failed = [r for r in runs if r.result == "failed"]
        result = {
            "level": level,
            "backups": len(ids),
            "runs": len(runs),
            "failed": [{"backup_id": r.backup_id, "location": r.location.name if r.location else None, "error": r.error}
                       for r in failed],
            "figures": {r.backup_id: r.details for r in runs if r.level == "restore"},
        }
        if failed:
            raise JobFailed(f"{len(failed)} of {len(runs)} verifications failed: "
                            + "; ".join(r.error for r in failed[:3]), result=result)
        return result
