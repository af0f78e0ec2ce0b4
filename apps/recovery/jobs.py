"""Job runner for point-in-time recovery (services imported when it runs: see apps/backups/jobs.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from apps.core.services import Actor
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner
from apps.recovery.models import RecoveryRun

if TYPE_CHECKING:
    from apps.databases.connection import PgConn
    from apps.recovery.targets import RecoveryTarget


class PointInTimeRecoveryJob(JobRunner):
    """Recover a target into a new data directory at a chosen point; optionally copy one table back.

    The run is `RecoveryRun.objects.get(pk=job.args["recovery_id"])`. A single-table recovery copies into the
    target's own database, or, from the command line, into a connection given at run time (never stored).
    """

    name = "recovery.pitr"

    @classmethod
    def prepare(cls, *, actor: Actor, target: DatabaseTarget, goal: RecoveryTarget, pgdata: str,
                port: int | None = None, start: bool = False, table: str | None = None,
                rename: str | None = None) -> Job:
        from apps.recovery import pitr

        with transaction.atomic():
            run = pitr.request_pitr(target=target, goal=goal, pgdata=pgdata, port=port, start=start, table=table,
                                    actor=actor)
            run.job = cls.create_job(args={"recovery_id": run.pk, "rename": rename or ""}, actor=actor)
            run.save(update_fields=["job"])
        return run.job

    def run(self, into: PgConn | None = None, **_runtime) -> dict:
        from apps.recovery import pitr

        run = pitr.run_pitr(run=RecoveryRun.objects.get(pk=self.job.args["recovery_id"]), ctx=self.ctx, into=into,
                            rename=self.job.args.get("rename") or None)
        return {"recovery_id": run.pk, "base_backup_id": run.base_backup_id, "pgdata": run.pgdata, "port": run.port,
                "reached": run.reached, "restore_seconds": run.restore_seconds,
                "replay_seconds": run.replay_seconds, "table": run.table_destination}
