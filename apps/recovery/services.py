"""Writes of DR plans (audited). Failovers, drills and standbys have their own modules (failover.py, drills.py,
standby.py); recoveries are pitr.py."""
from django.db import transaction

from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.databases import identifiers
from apps.recovery.models import DrillStatus, DRPlan, FailoverStatus

AUDITED = ("name", "description", "primary_id", "strategy", "rpo_objective_seconds", "rto_objective_seconds",
           "fence", "max_lag_bytes", "catchup_seconds", "switch_hook_command", "switch_hook_url",
           "switch_hook_timeout_seconds", "auto_failover", "auto_failover_armed", "failure_threshold",
           "health_timeout_seconds", "drills_enabled", "drill_tables", "drill_probe_sql", "notification_channels")


def check_plan_fields(*, primary, standbys, switch_hook_command, drill_tables, notification_channels) -> None:
    """The checks the API, the admin and the console share."""
    if primary is not None and primary in (standbys or []):
        raise UserError(f"{primary.name} cannot be the primary and a standby of the same plan.")
    if not isinstance(switch_hook_command, list) or not all(isinstance(a, str) and a for a in switch_hook_command):
        raise UserError("switch_hook_command is a list of non-empty strings (program, then its arguments); it "
                        "runs without a shell.")
    if switch_hook_command and not switch_hook_command[0].startswith("/"):
        raise UserError("switch_hook_command starts with the program's absolute path.")
    if not isinstance(drill_tables, list):
        raise UserError("drill_tables is a list of SCHEMA.TABLE names.")
    for name in drill_tables:
        identifiers.check_table(name)
    if not isinstance(notification_channels, list) or not all(isinstance(c, str) and c
                                                             for c in notification_channels):
        raise UserError("notification_channels is a list of channel names.")


@transaction.atomic
def save_plan(*, plan: DRPlan, standbys: list | None = None, actor: Actor) -> DRPlan:
    """Validate and save a plan (and its standbys, when given)."""
    created = plan._state.adding
    check_plan_fields(primary=plan.primary if plan.primary_id else None,
                      standbys=standbys if standbys is not None else (list(plan.standbys.all()) if plan.pk else []),
                      switch_hook_command=plan.switch_hook_command, drill_tables=plan.drill_tables,
                      notification_channels=plan.notification_channels)
    before = {} if created else DRPlan.objects.filter(pk=plan.pk).values(*AUDITED).first() or {}
    if before.get("auto_failover_armed") is False and plan.auto_failover_armed:
        plan.consecutive_failures = 0  # re-armed: count afresh, not from the failures that fired it
    plan.full_clean(exclude=["standbys"])
    plan.save()
    if standbys is not None:
        plan.standbys.set(standbys)
    changed = [f for f in AUDITED if f in before and before[f] != getattr(plan, f)]
    audit(actor=actor, action="dr.plan.created" if created else "dr.plan.updated", obj=plan,
          details={"changed": changed, "standbys": [s.name for s in plan.standbys.all()]})
    return plan


def delete_plan(*, plan: DRPlan, actor: Actor) -> None:
    if plan.failovers.filter(status__in=[FailoverStatus.PENDING, FailoverStatus.RUNNING]).exists() or \
            plan.drills.filter(status__in=[DrillStatus.PENDING, DrillStatus.RUNNING]).exists():
        raise ConflictError(f"A failover or drill of plan {plan.name} is under way; delete it afterwards.")
    audit(actor=actor, action="dr.plan.deleted", obj=plan, details={"name": plan.name})
    plan.delete()
