"""DR Drill Failed (high): a plan's latest finished drill failed or missed its RPO/RTO objectives. The next
passing drill clears it."""
from django.db.models import OuterRef, Subquery

from apps.monitoring.rules.base import Condition, Rule
from apps.recovery.models import DrillStatus, DRDrill, DRPlan


class DRDrillFailed(Rule):
    type = "dr_drill_failed"
    label = "DR drill failed"
    severity = "high"

    def evaluate(self, *, now):
        finished = DRDrill.objects.filter(plan=OuterRef("pk"), status__in=[DrillStatus.PASSED, DrillStatus.FAILED])
        latest = finished.order_by("-finished_at", "-pk")
        plans = (DRPlan.objects.annotate(drill_id=Subquery(latest.values("pk")[:1]),
                                         drill_status=Subquery(latest.values("status")[:1]))
                 .filter(drill_status=DrillStatus.FAILED).select_related("primary").order_by("name"))
        drills = DRDrill.objects.in_bulk([plan.drill_id for plan in plans])
        for plan in plans:
            params = self.params(target=plan.primary)
            if params is None:
                continue
            drill = drills[plan.drill_id]
            reasons = "; ".join(str(r) for r in drill.reasons) or drill.error or "no reason recorded"
            yield Condition(
                fingerprint=f"{self.type}:plan:{plan.pk}", target=plan.primary.name,
                database_target_id=plan.primary_id, occurrence=drill.pk, severity=params["severity"],
                message=f"DR drill of plan {plan.name} failed: {reasons[:300]}",
                details={"plan": plan.name, "channels": list(plan.notification_channels or []),
                         "drill_id": drill.pk, "rto_seconds": drill.rto_seconds,
                         "rpo_seconds": drill.rpo_seconds, "reasons": drill.reasons[:20],
                         "error": drill.error[:500]},
            )
