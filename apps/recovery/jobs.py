"""Job runners of recovery: point-in-time recovery, failover, DR drills, standby creation (services imported when
they run: see apps/backups/jobs.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from apps.backups.jobs import RESTORE_ALERT_TYPES
from apps.core.services import Actor
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner
from apps.recovery.models import DRDrill, DRPlan, Failover, RecoveryRun

if TYPE_CHECKING:
    from apps.databases.connection import PgConn
    from apps.recovery.targets import RecoveryTarget


class PointInTimeRecoveryJob(JobRunner):
    """Recover a target into a new data directory at a chosen point; optionally copy one table back.

    The run is `RecoveryRun.objects.get(pk=job.args["recovery_id"])`. A single-table recovery copies into the
    target's own database, or, from the command line, into a connection given at run time (never stored).
    """

    name = "recovery.pitr"
    alert_types = RESTORE_ALERT_TYPES
    approval_action = "recovery.pitr.table_into_live"

    @classmethod
    def approval(cls, *, target: DatabaseTarget, goal: RecoveryTarget, pgdata: str, port: int | None = None,
                 start: bool = False, table: str | None = None, rename: str | None = None) -> tuple[str, dict] | None:
        """Only a recovery that copies a table back into the live database waits; one into a new directory not."""
        if not table:
            return None
        into = f" as {rename}" if rename else ""
        return (f"copy table {table}{into} from {target.name} at {goal.describe()} back into its live database",
                {"target_id": target.pk, "time": goal.time.isoformat() if goal.time else None, "lsn": goal.lsn,
                 "name": goal.name, "inclusive": goal.inclusive, "pgdata": pgdata, "port": port, "start": start,
                 "table": table, "rename": rename})

    @classmethod
    def from_approval(cls, params: dict) -> dict:
        from apps.recovery.targets import parse_target

        goal = parse_target(time=params["time"], lsn=params["lsn"], name=params["name"],
                            inclusive=params["inclusive"])
        return {"target": DatabaseTarget.objects.get(pk=params["target_id"]), "goal": goal,
                "pgdata": params["pgdata"], "port": params["port"], "start": params["start"],
                "table": params["table"], "rename": params["rename"]}

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


class PlatformRecoveryJob(JobRunner):
    """The platform at one moment: a target's database by PITR and a source's documents as they were at a time
    (apps/recovery/platform.py). The PITR is `RecoveryRun.objects.get(pk=job.args["recovery_id"])`."""

    name = "recovery.platform"

    @classmethod
    def prepare(cls, *, actor: Actor, target: DatabaseTarget, source, at, destination: str,
                port: int | None = None) -> Job:
        from apps.recovery import platform

        with transaction.atomic():
            req = platform.request_platform_recovery(target=target, source=source, at=at, destination=destination,
                                                     port=port, actor=actor)
            job = cls.create_job(args={"recovery_id": req.recovery.pk, "document_version_id": req.version_id,
                                       "destination": str(req.destination)}, actor=actor)
            RecoveryRun.objects.filter(pk=req.recovery.pk).update(job=job)
        return job

    def run(self, **_runtime) -> dict:
        from pathlib import Path

        from apps.recovery import platform

        args = self.job.args
        return platform.run_platform_recovery(recovery=RecoveryRun.objects.get(pk=args["recovery_id"]),
                                              version_id=args["document_version_id"],
                                              destination=Path(args["destination"]), ctx=self.ctx)


class FailoverJob(JobRunner):
    """Fail a DR plan over to its least-behind healthy standby (apps/recovery/failover.py).

    The failover is `Failover.objects.get(pk=job.args["failover_id"])`."""

    name = "recovery.failover"
    approval_action = "recovery.failover"

    @classmethod
    def approval(cls, *, plan: DRPlan, automatic: bool = False,
                 standby: DatabaseTarget | None = None) -> tuple[str, dict] | None:
        if automatic:  # the plan's own automatic failover does not wait for people
            return None
        to = f" to {standby.name}" if standby else ""
        return f"fail plan {plan.name} over{to}", {"plan_id": plan.pk, "standby_id": standby.pk if standby else None}

    @classmethod
    def from_approval(cls, params: dict) -> dict:
        standby_id = params.get("standby_id")
        return {"plan": DRPlan.objects.get(pk=params["plan_id"]),
                "standby": DatabaseTarget.objects.get(pk=standby_id) if standby_id else None}

    @classmethod
    def prepare(cls, *, actor: Actor, plan: DRPlan, automatic: bool = False,
                standby: DatabaseTarget | None = None) -> Job:
        from apps.recovery import failover

        with transaction.atomic():
            row = failover.request_failover(plan=plan, actor=actor, automatic=automatic, standby=standby)
            row.job = cls.create_job(args={"failover_id": row.pk, "plan": plan.name}, actor=actor)
            row.save(update_fields=["job"])
        return row.job

    def run(self, **_runtime) -> dict:
        from apps.recovery import failover

        row = failover.run_failover(failover=Failover.objects.get(pk=self.job.args["failover_id"]), ctx=self.ctx)
        return failover_report(row)


def failover_report(row: Failover) -> dict:
    return {"failover_id": row.pk, "plan": row.plan.name, "status": row.status, "automatic": row.automatic,
            "old_primary": row.old_primary.name if row.old_primary else None,
            "new_primary": row.new_primary.name if row.new_primary else None, "fenced": row.fenced,
            "lag_bytes_at_start": row.lag_bytes_at_start, "lag_seconds_at_start": row.lag_seconds_at_start,
            "old_primary_lsn": row.old_primary_lsn, "promoted_lsn": row.promoted_lsn,
            "data_loss_bytes": row.data_loss_bytes, "promote_seconds": row.promote_seconds,
            "rto_seconds": row.rto_seconds, "hook_result": row.hook_result, "error": row.error or None}


class DrillJob(JobRunner):
    """A DR drill of a plan (apps/recovery/drills.py); the drill is `DRDrill.objects.get(pk=job.args["drill_id"])`."""

    name = "recovery.drill"

    @classmethod
    def prepare(cls, *, actor: Actor, plan: DRPlan) -> Job:
        from apps.recovery import drills

        with transaction.atomic():
            drill = drills.request_drill(plan=plan, actor=actor)
            drill.job = cls.create_job(args={"drill_id": drill.pk, "plan": plan.name}, actor=actor)
            drill.save(update_fields=["job"])
        return drill.job

    def run(self, **_runtime) -> dict:
        from apps.recovery import drills

        drill = drills.run_drill(drill=DRDrill.objects.get(pk=self.job.args["drill_id"]), ctx=self.ctx,
                                 actor=Actor(user=self.job.requested_by, via=self.job.via))
        return drills.report(drill)


class StandbyCreateJob(JobRunner):
    """Make a streaming standby of a target on this machine and register it (apps/recovery/standby.py)."""

    name = "recovery.standby_create"

    @classmethod
    def prepare(cls, *, actor: Actor, primary: DatabaseTarget, name: str, pgdata: str, port: int,
                plan: DRPlan | None = None) -> Job:
        from apps.recovery import standby

        standby.check_request(primary=primary, name=name, pgdata=pgdata, port=port)
        return cls.create_job(args={"primary": primary.name, "name": name, "pgdata": pgdata, "port": port,
                                    "plan": plan.name if plan else ""}, actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.recovery import health, standby

        a = self.job.args
        plan = DRPlan.objects.get(name=a["plan"]) if a["plan"] else None
        target = standby.create_standby(primary=DatabaseTarget.objects.get(name=a["primary"]), name=a["name"],
                                        pgdata=a["pgdata"], port=a["port"], plan=plan, ctx=self.ctx,
                                        actor=Actor(user=self.job.requested_by, via=self.job.via))
        return {"target": target.name, "port": target.port, "pgdata": target.data_directory,
                "plan": a["plan"] or None, "reading": health.standby_reading(target)}
