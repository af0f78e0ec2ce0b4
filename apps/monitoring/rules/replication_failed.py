"""Replication Failed (high): copies of a target's committed backups to a replica location failed, or have not
completed long after the backup did. It clears when every such copy is present."""
from datetime import timedelta

from apps.backups.models import BackupStatus, Replica, ReplicaStatus
from apps.monitoring.rules.base import Condition, Rule


class ReplicationFailed(Rule):
    type = "replication_failed"
    label = "Replication failed"
    severity = "high"
    defaults = {"max_lag_minutes": 120}

    def evaluate(self, *, now):
        replicas = (Replica.objects.filter(backup__status=BackupStatus.SUCCEEDED, backup__database_target__isnull=False)
                    .exclude(status__in=[ReplicaStatus.PRESENT, ReplicaStatus.DELETED])
                    .select_related("backup__database_target", "location").order_by("backup__created_at", "pk"))
        groups: dict[tuple, list[Replica]] = {}
        for replica in replicas:
            target = replica.backup.database_target
            params = self.params(target=target)
            if params is None:
                continue
            lagging = replica.status in (ReplicaStatus.PENDING, ReplicaStatus.COPYING) and (
                replica.backup.finished_at is not None
                and replica.backup.finished_at < now - timedelta(minutes=params["max_lag_minutes"]))
            if replica.status in (ReplicaStatus.FAILED, ReplicaStatus.CORRUPT) or lagging:
                groups.setdefault((target, replica.location, params["severity"]), []).append(replica)
        for (target, location, severity), failed in groups.items():
            newest = failed[-1]
            yield Condition(
                fingerprint=f"{self.type}:target:{target.pk}:location:{location.pk}", target=target.name,
                database_target_id=target.pk, occurrence=str(newest.pk), severity=severity,
                message=f"{len(failed)} backup(s) of {target.name} not copied to {location.name}: "
                        f"{newest.status}{': ' + newest.last_error[:200] if newest.last_error else ''}",
                details={"location": location.name, "replicas": [
                    {"backup_id": r.backup_id, "status": r.status, "attempts": r.attempts,
                     "last_error": r.last_error[:500]} for r in failed[-20:]]},
            )
