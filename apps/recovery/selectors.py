"""Reads for recovery: which base backup a recovery starts from, past runs, and the state of DR plans."""
from django.db.models import QuerySet
from django.utils import timezone

from apps.backups import wal_selectors
from apps.backups.models import Backup
from apps.core.errors import UserError
from apps.databases import lsn as lsns
from apps.databases.models import DatabaseTarget
from apps.recovery.models import RecoveryRun
from apps.recovery.targets import RecoveryTarget


def base_backup_for(target: DatabaseTarget, goal: RecoveryTarget, *, restore_point_lsn: int | None = None) -> Backup:
    """The newest physical backup that ends before the goal, so replay from it can reach the goal.

    A backup is consistent only once replay passes its stop LSN; PostgreSQL refuses a target before
    that point, so the backup must have finished before the target time / stop at or before the LSN.
    """
    candidates = list(wal_selectors.base_backups(target).reverse())  # newest first
    if not candidates:
        raise UserError(f"{target.name} has no succeeded physical backup to recover from; take one with "
                        f"`db_backup {target.name} --method physical`.")
    stop_limit = goal.lsn_value if goal.lsn else restore_point_lsn
    for backup in candidates:
        if goal.time and backup.finished_at > goal.time:
            continue
        if stop_limit is not None and lsns.parse(backup.lsn_stop) > stop_limit:
            continue
        return backup
    oldest = candidates[-1]
    raise UserError(
        f"No physical backup of {target.name} ends before {goal.describe()}: the oldest one, {oldest.pk}, "
        f"finished at {oldest.finished_at.isoformat()} (stop LSN {oldest.lsn_stop}). That is the earliest point "
        "this target can be recovered to."
    )


def recovery_runs(*, target: str | None = None) -> QuerySet[RecoveryRun]:
    qs = RecoveryRun.objects.select_related("database_target", "base_backup")
    return qs.filter(database_target__name=target) if target else qs


# --- disaster recovery -------------------------------------------------------------------------------------------

def plans():
    from apps.recovery.models import DRPlan

    return DRPlan.objects.select_related("primary").prefetch_related("standbys")


def plan_status(plan, *, live: bool = True) -> dict:
    """What the status page and API show of a plan: health now (or as last checked), lag, the last drill and
    failover, whether the objectives are met, and the primary's recoverable window."""
    from apps.recovery import health

    reading = health.plan_reading(plan) if live else (plan.last_health or {"primary": {}, "standbys": []})
    drill = plan.drills.exclude(status__in=["pending", "running"]).first()
    failover = plan.failovers.first()
    lags = [s.get("lag_seconds") for s in reading["standbys"] if s.get("healthy")]
    standby_lag_ok = (all(lag is not None and lag <= plan.rpo_objective_seconds for lag in lags)
                      if plan.strategy == "promote_standby" and lags else None)
    rto_met = drill.rto_seconds <= plan.rto_objective_seconds if drill and drill.rto_seconds is not None else None
    rpo_met = drill.rpo_seconds <= plan.rpo_objective_seconds if drill and drill.rpo_seconds is not None else None
    if standby_lag_ok is not None:
        rpo_met = standby_lag_ok if rpo_met is None else (rpo_met and standby_lag_ok)
    return {
        "plan": plan.name, "plan_id": plan.pk, "strategy": plan.strategy,
        "checked_at": timezone.now() if live else plan.last_health_at,
        "primary": reading["primary"], "standbys": reading["standbys"],
        "auto_failover": plan.auto_failover, "auto_failover_armed": plan.auto_failover_armed,
        "consecutive_failures": plan.consecutive_failures, "failure_threshold": plan.failure_threshold,
        "objectives": {"rpo_seconds": plan.rpo_objective_seconds, "rto_seconds": plan.rto_objective_seconds,
                       "rpo_met": rpo_met, "rto_met": rto_met,
                       "met": None if rpo_met is None or rto_met is None else (rpo_met and rto_met)},
        "last_drill": None if drill is None else {
            "id": drill.pk, "status": drill.status, "finished_at": drill.finished_at,
            "rto_seconds": drill.rto_seconds, "rpo_seconds": drill.rpo_seconds,
            "objectives_met": drill.objectives_met, "reasons": drill.reasons},
        "last_failover": None if failover is None else {
            "id": failover.pk, "status": failover.status, "automatic": failover.automatic,
            "finished_at": failover.finished_at, "rto_seconds": failover.rto_seconds,
            "data_loss_bytes": failover.data_loss_bytes, "error": failover.error},
        "recoverable_window": wal_selectors.recovery_window(plan.primary).as_dict(),
    }
