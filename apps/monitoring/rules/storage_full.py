"""Storage Full (critical): a location holds more than its threshold (percent of its capacity quota)."""
from apps.monitoring.rules.base import Condition, Rule
from apps.storage.models import StorageLocation


class StorageFull(Rule):
    type = "storage_full"
    label = "Storage full"
    severity = "critical"
    defaults = {"used_percent": 90}

    def evaluate(self, *, now):
        for location in StorageLocation.objects.filter(enabled=True, capacity_bytes__isnull=False):
            params = self.params(location=location)
            if params is None or not location.capacity_bytes:
                continue
            percent = 100.0 * location.used_bytes / location.capacity_bytes
            if percent >= params["used_percent"]:
                yield Condition(
                    fingerprint=f"{self.type}:location:{location.pk}", target=location.name,
                    severity=params["severity"],
                    message=f"Storage location {location.name} is {percent:.1f}% full "
                            f"({location.used_bytes} of {location.capacity_bytes} bytes).",
                    details={"location": location.name, "used_bytes": location.used_bytes,
                             "capacity_bytes": location.capacity_bytes, "used_percent": round(percent, 2),
                             "threshold_percent": params["used_percent"]},
                )
