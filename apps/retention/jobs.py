"""Job runner for retention enforcement: thin, it calls the service (imported when used)."""
from apps.core.errors import ConflictError, JobFailed
from apps.core.services import Actor, audit
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner


class EnforceRetentionJob(JobRunner):
    """Delete and archive backups (and old WAL) as the retention rules say; one at a time (a lock)."""

    name = "retention.enforce"
    approval_action = "retention.enforce"

    @classmethod
    def approval(cls, *, target: DatabaseTarget | None = None, dry_run: bool = False) -> tuple[str, dict] | None:
        if dry_run:
            return None
        return (f"enforce retention (deleting backups) on {target.name if target else 'every target'}",
                {"target_id": target.pk if target else None})

    @classmethod
    def from_approval(cls, params: dict) -> dict:
        target_id = params.get("target_id")
        return {"target": DatabaseTarget.objects.get(pk=target_id) if target_id else None}

    @classmethod
    def prepare(cls, *, actor: Actor, target: DatabaseTarget | None = None, dry_run: bool = False) -> Job:
        job = cls.create_job(args={"target_id": target.pk if target else None, "dry_run": dry_run}, actor=actor)
        if not dry_run:
            audit(actor=actor, action="retention.enforce.requested", obj=job,
                  details={"target": target.name if target else None})
        return job

    def run(self, **_runtime) -> dict:
        from apps.retention import services

        target_id = self.job.args.get("target_id")
        target = DatabaseTarget.objects.get(pk=target_id) if target_id else None
        actor = Actor(user=self.job.requested_by, via=self.job.via, extra={"name": f"job:{self.job.pk}"})
        try:
            report = services.enforce(actor=actor, target=target, dry_run=self.job.args.get("dry_run", False),
                                      ctx=self.ctx)
        except ConflictError as exc:  # another enforcement is doing this very work now
            self.ctx.log(f"skipped: {exc}")
            return {"skipped": str(exc)}
        if report.get("failed"):
            raise JobFailed(f"{len(report['failed'])} retention actions failed: "
                            + "; ".join(f.get("error", "") for f in report["failed"][:3]), result=report)
        return report
