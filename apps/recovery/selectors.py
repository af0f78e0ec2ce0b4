"""Reads for recovery: which base backup a recovery starts from, and past runs."""
from django.db.models import QuerySet

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
