"""WAL Archiving Lag (high): a target archiving WAL has archived nothing for too long, or its archive has gaps.

An idle database archives nothing (archive_timeout switches segments only after writes), so the default
threshold is generous; lower it per target where writes never stop."""
from apps.backups import wal_selectors
from apps.databases.models import DatabaseTarget
from apps.monitoring.rules.base import Condition, Rule


class WalArchivingLag(Rule):
    type = "wal_archiving_lag"
    label = "WAL archiving lag"
    severity = "high"
    defaults = {"max_lag_seconds": 3600, "alert_on_gaps": True}

    def evaluate(self, *, now):
        for target in DatabaseTarget.objects.filter(enabled=True, wal_archiving=True):
            params = self.params(target=target)
            if params is None:
                continue
            status = wal_selectors.archive_status(target, now=now)
            lag = status["archive_lag_seconds"]
            problems = []
            if lag is not None and lag > params["max_lag_seconds"]:
                problems.append(f"nothing archived for {lag:.0f} s (limit {params['max_lag_seconds']} s)")
            if params["alert_on_gaps"] and status["gaps"]:
                problems.append(f"{status['gaps']} gap(s) in the archived WAL")
            if problems:
                yield Condition(
                    fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                    severity=params["severity"], message=f"WAL archive of {target.name}: {'; '.join(problems)}.",
                    details={"archive_lag_seconds": lag, "gaps": status["gaps"],
                             "last_archived": status["last_archived"], "max_lag_seconds": params["max_lag_seconds"]},
                )
