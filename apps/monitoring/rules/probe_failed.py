"""What the unreachable rules share: a failing HealthCheck probe of an enabled subject raises an alert."""
from apps.monitoring.models import HealthCheck
from apps.monitoring.rules.base import Condition, Rule


class ProbeFailed(Rule):
    probe = ""  # HealthCheck.probe this rule reads
    scope = ""  # "target" or "location": how thresholds and fingerprints name the subject

    def subjects(self) -> dict:
        """Enabled subjects by name."""
        raise NotImplementedError

    def describe(self, subject, detail: str) -> str:
        raise NotImplementedError

    def evaluate(self, *, now):
        subjects = self.subjects()
        for check in HealthCheck.objects.filter(probe=self.probe, ok=False):
            subject = subjects.get(check.subject)
            params = self.params(**{self.scope: subject}) if subject is not None else None
            if params is None:
                continue
            yield Condition(
                fingerprint=f"{self.type}:{self.scope}:{subject.pk}", target=subject.name,
                database_target_id=subject.pk if self.scope == "target" else None, severity=params["severity"],
                message=self.describe(subject, check.detail[:300]),
                details={"checked_at": check.checked_at.isoformat(), "detail": check.detail[:1000]},
            )
