"""Writes of the monitoring app: acknowledge and resolve alerts, configure channels and rules, test a channel.

Every write is audited; the acknowledge and resolve notifications are queued in the same transaction."""
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.monitoring import outbox
from apps.monitoring.channels import registry as channel_registry
from apps.monitoring.models import (
    Alert, AlertRule, AlertStatus, Delivery, DeliveryEvent, NotificationChannel, Severity,
)
from apps.monitoring.rules import registry as rule_registry


def _user(actor: Actor):
    return actor.user if actor.user is not None and actor.user.is_authenticated else None


@transaction.atomic
def acknowledge(*, alert: Alert, actor: Actor, note: str = "") -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != AlertStatus.OPEN:
        raise ConflictError(f"Only an open alert can be acknowledged; this one is {alert.status}.")
    alert.status, alert.acknowledged_by, alert.acknowledged_at = AlertStatus.ACKNOWLEDGED, _user(actor), timezone.now()
    alert.acknowledged_note = note
    alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "acknowledged_note", "updated_at"])
    audit(actor=actor, action="alert.acknowledge", obj=alert, details={"note": note[:500]})
    outbox.enqueue(alert=alert, event=DeliveryEvent.ACKNOWLEDGE)
    outbox.kick()
    return alert


@transaction.atomic
def resolve(*, alert: Alert, actor: Actor, note: str = "") -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        raise ConflictError("This alert is already resolved.")
    alert.status, alert.resolved_by, alert.resolved_at = AlertStatus.RESOLVED, _user(actor), timezone.now()
    alert.resolved_note, alert.auto_resolved, alert.quiet_until_clear = note, False, True
    alert.save(update_fields=["status", "resolved_by", "resolved_at", "resolved_note", "auto_resolved",
                              "quiet_until_clear", "updated_at"])
    audit(actor=actor, action="alert.resolve", obj=alert, details={"note": note[:500]})
    outbox.enqueue(alert=alert, event=DeliveryEvent.RESOLVE)
    outbox.kick()
    return alert


def check_channel(*, kind: str, config: dict, secrets: dict) -> None:
    kinds = channel_registry.kinds()
    if kind not in kinds:
        raise UserError(f"Unknown channel kind {kind!r} (known: {', '.join(sorted(kinds))}).")
    kinds[kind].check(config=config or {}, secrets=secrets)


def save_channel(*, channel: NotificationChannel, actor: Actor, secrets: dict | None = None) -> NotificationChannel:
    """Create or change a channel. `secrets`: None keeps the stored ones; given keys replace theirs ("" clears)."""
    merged = channel.get_secrets() if channel.secrets_sealed else {}
    if secrets is not None:
        merged.update(secrets)
        merged = {k: v for k, v in merged.items() if v}
    check_channel(kind=channel.kind, config=channel.config, secrets=merged)
    if channel.min_severity not in Severity.values:
        raise UserError(f"min_severity must be one of {', '.join(Severity.values)}.")
    created = channel.pk is None
    channel.set_secrets(merged)
    channel.save()
    # Never the secrets: only which are set.
    audit(actor=actor, action="channel.create" if created else "channel.change", obj=channel,
          details={"name": channel.name, "kind": channel.kind, "config": channel.config,
                   "secrets_set": sorted(merged)})
    return channel


def delete_channel(*, channel: NotificationChannel, actor: Actor) -> None:
    audit(actor=actor, action="channel.delete", obj=channel, details={"name": channel.name})
    channel.delete()


def test_channel(*, channel: NotificationChannel, actor: Actor) -> Delivery:
    """Send a test notification now (not through the queue) and record it as a delivery."""
    delivery = Delivery.objects.create(channel=channel, alert=None, event=DeliveryEvent.TEST,
                                       next_attempt_at=timezone.now())
    outcome = outbox.attempt(delivery)
    if outcome == "retry":  # a test is not retried: the operator sees the answer now
        Delivery.objects.filter(pk=delivery.pk).update(status="failed")
        delivery.refresh_from_db()
    audit(actor=actor, action="channel.test", obj=channel,
          details={"status": delivery.status, "response_code": delivery.response_code, "error": delivery.error[:500]})
    return delivery


def check_rule(rule: AlertRule) -> None:
    kinds = dict(rule_registry.choices())
    if rule.type not in kinds:
        raise UserError(f"Unknown alert type {rule.type!r} (known: {', '.join(sorted(kinds))}).")
    if rule.database_target_id and rule.location_id:
        raise UserError("A rule is for a target or for a location, not both.")
    clash = AlertRule.objects.filter(type=rule.type, database_target_id=rule.database_target_id,
                                     location_id=rule.location_id).exclude(pk=rule.pk)
    if clash.exists():
        raise ConflictError("A rule of this type for this scope exists already: change that one.")
    defaults = rule_registry.get(rule.type).defaults
    if not isinstance(rule.params, dict):
        raise UserError("params must be an object.")
    unknown = set(rule.params) - set(defaults)
    if unknown:
        raise UserError(f"Unknown parameters for {rule.type}: {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(defaults)) or 'none'}).")
    for name, value in rule.params.items():
        expected = type(defaults[name])
        if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise UserError(f"{name} must be a number of 0 or more.")
        if expected is bool and not isinstance(value, bool):
            raise UserError(f"{name} must be true or false.")


def save_rule(*, rule: AlertRule, actor: Actor) -> AlertRule:
    check_rule(rule)
    created = rule.pk is None
    rule.save()
    audit(actor=actor, action="alert_rule.create" if created else "alert_rule.change", obj=rule,
          details={"type": rule.type, "target": str(rule.database_target or ""), "location": str(rule.location or ""),
                   "params": rule.params, "enabled": rule.enabled, "severity": rule.severity})
    return rule


def delete_rule(*, rule: AlertRule, actor: Actor) -> None:
    audit(actor=actor, action="alert_rule.delete", obj=rule, details={"type": rule.type})
    rule.delete()
