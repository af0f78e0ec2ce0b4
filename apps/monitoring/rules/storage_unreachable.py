"""Storage Unreachable (critical): the health check could not reach a storage location."""
from apps.monitoring.rules.probe_failed import ProbeFailed
from apps.storage.models import StorageLocation

PROBE = "storage_reachable"


class StorageUnreachable(ProbeFailed):
    type = "storage_unreachable"
    label = "Storage unreachable"
    severity = "critical"
    probe, scope = PROBE, "location"

    def subjects(self):
        return {loc.name: loc for loc in StorageLocation.objects.filter(enabled=True)}

    def describe(self, subject, detail):
        return f"Cannot reach storage location {subject.name}: {detail}"
