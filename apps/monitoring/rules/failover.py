"""Failover (critical): a plan's latest failover failed, or an automatic failover fired and the plan has not been
re-armed (it will not fail over again until an operator checks it). Re-arming, or a later successful
failover, clears it."""
from django.db.models import OuterRef, Subquery

from apps.monitoring.rules.base import Condition, Rule
from apps.recovery.models import DRPlan, Failover, FailoverStatus


class FailoverAlert(Rule):
    type = "failover"
    label = "Failover"
    severity = "critical"

    def evaluate(self, *, now):
        done = Failover.objects.filter(plan=OuterRef("pk"), status__in=[FailoverStatus.SUCCEEDED, FailoverStatus.FAILED])
        latest = done.order_by("-created_at", "-pk")
        plans = (DRPlan.objects.annotate(failover_id=Subquery(latest.values("pk")[:1]))
                 .filter(failover_id__isnull=False).select_related("primary").order_by("name"))
        failovers = Failover.objects.in_bulk([plan.failover_id for plan in plans])
        for plan in plans:
            failover = failovers[plan.failover_id]
            failed = failover.status == FailoverStatus.FAILED
            disarmed = plan.auto_failover and not plan.auto_failover_armed and failover.automatic
            if not (failed or disarmed):
                continue
            params = self.params(target=plan.primary)
            if params is None:
                continue
            if failed:
                message = f"Failover of plan {plan.name} failed: {(failover.error or 'no error recorded')[:300]}"
            else:
                message = (f"Automatic failover of plan {plan.name} promoted {plan.primary.name}; the plan is disarmed "
                           "until an operator re-arms it.")
            yield Condition(
                fingerprint=f"{self.type}:plan:{plan.pk}", target=plan.primary.name,
                database_target_id=plan.primary_id, occurrence=failover.pk, severity=params["severity"],
                message=message,
                details={"plan": plan.name, "channels": list(plan.notification_channels or []),
                         "failover_id": failover.pk, "status": failover.status,
                         "automatic": failover.automatic, "rto_seconds": failover.rto_seconds,
                         "data_loss_bytes": failover.data_loss_bytes},
            )
