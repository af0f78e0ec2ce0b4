"""DR drills: the plan's primary recovered from its latest backup + archived WAL into a scratch cluster, checked,
measured and removed.

The recovery is pitr's own (request_pitr + run_pitr to the end of the archive, started): the same choice of
base backup, the same authenticated restore and WAL fetch a real disaster would use. Then the checks run on the
scratch cluster, read-only: each of `plan.drill_tables` must exist (its rows are counted), and
`plan.drill_probe_sql` must answer true. Measured:
- RTO: wall time from the drill's start to the scratch cluster accepting queries (promoted, ready);
- RPO: the drill's restore time minus the last commit the recovery replayed (pg_last_xact_replay_timestamp;
  the base backup's end when no commit was replayed). On a database idle for hours this is hours although
  nothing would be lost: it measures how old the newest recoverable data is.
The scratch cluster and its directory are removed whatever happened (`scratch_removed` says it was). A drill
passes when the recovery and checks succeeded and both objectives were met; `reasons` lists every miss.
"""
import logging
import shutil
import time
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from psycopg import sql

from apps.core.errors import ConflictError, JobFailed, UserError
from apps.core.services import Actor, audit
from apps.databases import catalog, clusters, identifiers
from apps.databases.connection import PgConn
from apps.jobs.progress import JobContext, note
from apps.recovery import signals
from apps.recovery.models import DRDrill, DrillStatus, DRPlan, RecoveryKind, RecoveryRun
from apps.recovery.targets import RecoveryTarget

log = logging.getLogger(__name__)


def request_drill(*, plan: DRPlan, actor: Actor) -> DRDrill:
    with transaction.atomic():
        plan = DRPlan.objects.select_for_update().get(pk=plan.pk)
        if plan.drills.filter(status__in=[DrillStatus.PENDING, DrillStatus.RUNNING]).exists():
            raise ConflictError(f"A drill of plan {plan.name} is already under way.")
        drill = DRDrill.objects.create(plan=plan)
        audit(actor=actor, action="dr.drill.requested", obj=drill, details={"plan": plan.name})
    return drill


def scratch_dir(drill: DRDrill) -> Path:
    return Path(settings.RECOVERY_ROOT) / f"drill-{drill.pk.lower()}"


def run_drill(*, drill: DRDrill, actor: Actor, ctx: JobContext | None = None) -> DRDrill:
    """Carry out a pending drill; it ends passed or failed (JobFailed for a failed one, with the report)."""
    from apps.recovery import pitr

    if not DRDrill.objects.filter(pk=drill.pk, status=DrillStatus.PENDING).update(
            status=DrillStatus.RUNNING, started_at=timezone.now()):
        raise UserError(f"Drill {drill.pk} is not pending; not running it again.")
    drill.refresh_from_db()
    plan = drill.plan
    t0 = time.monotonic()
    fields: dict = {"reasons": []}
    work = scratch_dir(drill)
    run = None
    try:
        work.mkdir(parents=True, mode=0o755)
        clusters.give_to_server_user(work)
        note(ctx, f"drill of plan {plan.name}: recovering {plan.primary.name} to the end of its archive in {work}")
        run = pitr.request_pitr(target=plan.primary, goal=RecoveryTarget(), pgdata=str(work / "data"), start=True,
                                actor=actor)
        RecoveryRun.objects.filter(pk=run.pk).update(kind=RecoveryKind.DRILL)
        DRDrill.objects.filter(pk=drill.pk).update(recovery=run, base_backup=run.base_backup)
        run = pitr.run_pitr(run=run, ctx=ctx)
        fields["rto_seconds"] = time.monotonic() - t0
        restored_at = timezone.now()
        note(ctx, f"the scratch cluster accepts queries after {fields['rto_seconds']:.2f} s ({run.reached})")
        scratch = pitr.recovered_conn(plan.primary, run.port)
        checks, last_commit = _checks(plan, scratch, fields["reasons"])
        fields["checks"] = checks
        last_commit = last_commit or run.base_backup.finished_at
        fields["last_commit_at"] = last_commit
        fields["rpo_seconds"] = max(0.0, (restored_at - last_commit).total_seconds())
        note(ctx, f"checks: {checks}; RPO {fields['rpo_seconds']:.1f} s (last commit {last_commit.isoformat()})")
        if fields["rto_seconds"] > plan.rto_objective_seconds:
            fields["reasons"].append(f"RTO {fields['rto_seconds']:.1f} s is over the objective "
                                     f"({plan.rto_objective_seconds} s)")
        if fields["rpo_seconds"] > plan.rpo_objective_seconds:
            fields["reasons"].append(f"RPO {fields['rpo_seconds']:.1f} s is over the objective "
                                     f"({plan.rpo_objective_seconds} s)")
        fields["objectives_met"] = (fields["rto_seconds"] <= plan.rto_objective_seconds
                                    and fields["rpo_seconds"] <= plan.rpo_objective_seconds)
    except Exception as exc:
        fields["reasons"].append(f"recovery failed: {exc}" if "rto_seconds" not in fields else f"failed: {exc}")
        fields["error"] = str(exc) or type(exc).__name__
        fields["objectives_met"] = False
    finally:
        fields["scratch_removed"] = _tear_down(work, run, ctx)
    passed = not fields["reasons"] and fields["scratch_removed"]
    if not fields["scratch_removed"]:
        fields["reasons"].append(f"the scratch cluster in {work} could not be removed")
    DRDrill.objects.filter(pk=drill.pk).update(status=DrillStatus.PASSED if passed else DrillStatus.FAILED,
                                               finished_at=timezone.now(), **fields)
    drill.refresh_from_db()
    audit(actor=actor, action="dr.drill.finished", obj=drill, details=report(drill))
    signals.drill_finished.send(sender=DRDrill, drill=drill)
    if not passed:
        raise JobFailed(f"Drill of plan {plan.name} failed: {'; '.join(drill.reasons)}", result=report(drill))
    return drill


def _checks(plan: DRPlan, scratch: PgConn, reasons: list[str]) -> tuple[dict, object]:
    """Row counts of the plan's tables and the probe's answer, read-only; the last replayed commit's time."""
    checks: dict = {"tables": {}}
    with catalog.connect(scratch, app_name="backupsite-drill") as c:
        c.execute("SET default_transaction_read_only = on")
        last_commit = c.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
        for name in plan.drill_tables:
            schema, table = identifiers.check_table(name)
            ident = sql.Identifier(schema or "public", table)
            try:
                checks["tables"][name] = c.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
            except psycopg.Error as exc:
                checks["tables"][name] = None
                reasons.append(f"table {name}: {catalog.first_line(exc)}")
        if plan.drill_probe_sql.strip():
            try:
                row = c.execute(plan.drill_probe_sql).fetchone()
                answer = row[0] if row else None
            except psycopg.Error as exc:
                answer = f"error: {catalog.first_line(exc)}"
            checks["probe"] = answer if answer in (True, False, None) else str(answer)
            if answer is not True:
                reasons.append(f"the probe answered {checks['probe']!r}, not true")
    return checks, last_commit


def _tear_down(work: Path, run: RecoveryRun | None, ctx) -> bool:
    """Stop the scratch cluster and remove its directory; True when nothing is left."""
    try:
        if run is not None and run.port and (Path(run.pgdata) / "PG_VERSION").exists():
            clusters.LocalCluster(base=work, port=run.port, data_dir=Path(run.pgdata)).stop(mode="immediate")
        shutil.rmtree(work, ignore_errors=True)
    except Exception as exc:
        note(ctx, f"tearing down {work} failed: {exc}", logger=log)
    gone = not work.exists()
    note(ctx, f"scratch cluster {'removed' if gone else 'NOT removed'}: {work}")
    return gone


def report(drill: DRDrill) -> dict:
    return {"drill_id": drill.pk, "plan": drill.plan.name, "status": drill.status,
            "base_backup_id": drill.base_backup_id, "recovery_id": drill.recovery_id,
            "rto_seconds": drill.rto_seconds, "rpo_seconds": drill.rpo_seconds,
            "rto_objective_seconds": drill.plan.rto_objective_seconds,
            "rpo_objective_seconds": drill.plan.rpo_objective_seconds,
            "last_commit_at": drill.last_commit_at.isoformat() if drill.last_commit_at else None,
            "objectives_met": drill.objectives_met, "checks": drill.checks, "reasons": drill.reasons,
            "scratch_removed": drill.scratch_removed, "error": drill.error or None}
