"""Thresholds per target: the AlertRule row for that target (or location), else the default row, else the rule's
built-in parameters. Read once per evaluation."""
from apps.monitoring.models import AlertRule


class Thresholds:
    def __init__(self):
        self._rows = {(r.type, r.database_target_id, r.location_id): r for r in AlertRule.objects.all()}

    def lookup(self, rule, *, target=None, location=None) -> dict | None:
        """Parameters of `rule` for this scope, `severity` among them; None when the rule is off there."""
        default = self._rows.get((rule.type, None, None))
        key = (rule.type, getattr(target, "pk", None), getattr(location, "pk", None))
        specific = self._rows.get(key) if key != (rule.type, None, None) else None
        rows = [r for r in (default, specific) if r is not None]
        # The most specific row decides whether the rule is on; parameters merge, the specific ones winning.
        if rows and not rows[-1].enabled:
            return None
        params = {**rule.defaults, "severity": rule.severity}
        for row in rows:
            params.update(row.params or {})
            if row.severity:
                params["severity"] = row.severity
        return params

    def scoped_targets(self, rule) -> set:
        """The ids of the targets with a row of their own for `rule`: every other target has the default scope's
        parameters (lookup(rule)), which a caller with many targets may then look up once."""
        return {target for (kind, target, location) in self._rows if kind == rule.type and target is not None}
