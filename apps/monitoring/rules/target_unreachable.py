"""Target Unreachable (high): the health check could not connect to a target's database."""
from apps.monitoring.rules.probe_failed import ProbeFailed

PROBE = "target_reachable"


class TargetUnreachable(ProbeFailed):
    type = "target_unreachable"
    label = "Target unreachable"
    severity = "high"
    probe, scope = PROBE, "target"

    def subjects(self):
        from apps.databases.models import DatabaseTarget

        return {t.name: t for t in DatabaseTarget.objects.filter(enabled=True)}

    def describe(self, subject, detail):
        return f"Cannot connect to {subject.name}: {detail}"
