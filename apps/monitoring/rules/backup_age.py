"""Backup Age (high): no successful backup of an enabled target within its RPO.

A target never backed up counts from when it was added, so a new target gets one RPO of grace."""
from datetime import timedelta

from django.db.models import Max

from apps.backups.models import BackupStatus
from apps.databases.models import DatabaseTarget
from apps.monitoring.rules.base import Condition, Rule


def last_success_by_target() -> dict[int, object]:
    from apps.backups.models import Backup

    rows = (Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False)
            .values("database_target").annotate(last=Max("finished_at")))
    return {row["database_target"]: row["last"] for row in rows}


class BackupAge(Rule):
    type = "backup_age"
    label = "Backup age (RPO breach)"
    severity = "high"
    defaults = {"rpo_hours": 26}

    def evaluate(self, *, now):
        last = last_success_by_target()
        for target in DatabaseTarget.objects.filter(enabled=True):
            params = self.params(target=target)
            if params is None:
                continue
            since = last.get(target.pk) or target.created_at
            age = now - since
            if age > timedelta(hours=params["rpo_hours"]):
                hours = age.total_seconds() / 3600
                what = f"the last successful backup is {hours:.1f} h old" if last.get(target.pk) else \
                    f"never backed up successfully (added {hours:.1f} h ago)"
                yield Condition(
                    fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                    severity=params["severity"],
                    message=f"{target.name}: {what}, beyond its RPO of {params['rpo_hours']} h.",
                    details={"last_success_at": last[target.pk].isoformat() if last.get(target.pk) else None,
                             "age_hours": round(hours, 2), "rpo_hours": params["rpo_hours"]},
                )
