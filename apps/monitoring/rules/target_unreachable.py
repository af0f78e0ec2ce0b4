"""Target Unreachable (high): the health check could not connect to a target's database."""
from apps.monitoring.models import HealthCheck
from apps.monitoring.rules.base import Condition, Rule

PROBE = "target_reachable"


class TargetUnreachable(Rule):
    type = "target_unreachable"
    label = "Target unreachable"
    severity = "high"

    def evaluate(self, *, now):
        from apps.databases.models import DatabaseTarget

        targets = {t.name: t for t in DatabaseTarget.objects.filter(enabled=True)}
        for check in HealthCheck.objects.filter(probe=PROBE, ok=False):
            target = targets.get(check.subject)
            params = self.params(target=target) if target else None
            if params is None:
                continue
            yield Condition(
                fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                severity=params["severity"], message=f"Cannot connect to {target.name}: {check.detail[:300]}",
                details={"checked_at": check.checked_at.isoformat(), "detail": check.detail[:1000]},
            )
