"""Storage Unreachable (critical): the health check could not reach a storage location."""
from apps.monitoring.models import HealthCheck
from apps.monitoring.rules.base import Condition, Rule
from apps.storage.models import StorageLocation

PROBE = "storage_reachable"


class StorageUnreachable(Rule):
    type = "storage_unreachable"
    label = "Storage unreachable"
    severity = "critical"

    def evaluate(self, *, now):
        locations = {loc.name: loc for loc in StorageLocation.objects.filter(enabled=True)}
        for check in HealthCheck.objects.filter(probe=PROBE, ok=False):
            location = locations.get(check.subject)
            params = self.params(location=location) if location else None
            if params is None:
                continue
            yield Condition(
                fingerprint=f"{self.type}:location:{location.pk}", target=location.name,
                severity=params["severity"], message=f"Cannot reach storage location {location.name}: "
                                                     f"{check.detail[:300]}",
                details={"checked_at": check.checked_at.isoformat(), "detail": check.detail[:1000]},
            )
