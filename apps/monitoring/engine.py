"""Turns the conditions the rules yield into alerts.

For each rule, each condition's fingerprint names at most one active (open or acknowledged) alert: a condition
seen again updates `last_seen`, and adds to `count` when its occurrence is new (another failed backup); an
active alert whose condition is no longer yielded is resolved automatically; a condition that comes back re-opens
the newest resolved alert of its fingerprint. An operator who resolves an alert while its condition still holds
is not overruled on the next evaluation: only a new occurrence, or the condition clearing and returning, re-opens
it. A rule that raises is logged and skipped, and its alerts are left as they are (never resolved for it).

Every change that someone should hear about queues deliveries in the same transaction (apps/monitoring/outbox).
"""
import logging
from collections import Counter
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.monitoring import outbox
from apps.monitoring.models import ACTIVE, Alert, AlertStatus, DeliveryEvent
from apps.monitoring.rules.base import Condition, Rule, all_rules
from apps.monitoring.thresholds import Thresholds

log = logging.getLogger(__name__)


def evaluate(*, now: datetime | None = None, types: list[str] | None = None) -> dict[str, int]:
    """Run the rules (all, or those of `types`) against the catalog; returns how many alerts were opened,
    updated, re-opened and resolved."""
    now = now or timezone.now()
    thresholds = Thresholds()
    summary: Counter = Counter()
    for rule_type, cls in sorted(all_rules().items()):
        if types is not None and rule_type not in types:
            continue
        rule = cls(thresholds)
        try:
            conditions = list(rule.evaluate(now=now))
        except Exception:
            log.exception("Alert rule %s failed; its alerts are left as they are.", rule_type)
            summary["rule_errors"] += 1
            continue
        seen: set[str] = set()
        for cond in conditions:
            if cond.fingerprint not in seen:
                seen.add(cond.fingerprint)
                summary[_apply_with_retry(rule, cond, now)] += 1
        summary["resolved"] += _resolve_cleared(rule_type, seen, now)
    if summary["opened"] or summary["reopened"] or summary["resolved"]:
        outbox.kick()
    return dict(summary)


def _apply_with_retry(rule: Rule, cond: Condition, now: datetime) -> str:
    try:
        return _apply(rule, cond, now)
    except IntegrityError:
        # Another process opened the same alert a moment ago: update that one.
        return _apply(rule, cond, now)


@transaction.atomic
def _apply(rule: Rule, cond: Condition, now: datetime) -> str:
    severity = cond.severity or rule.severity
    alert = Alert.objects.select_for_update().filter(fingerprint=cond.fingerprint, status__in=ACTIVE).first()
    if alert is not None:
        if cond.occurrence and cond.occurrence != alert.occurrence:
            alert.count += 1
            alert.occurrence = cond.occurrence
        alert.last_seen, alert.message, alert.details, alert.severity = now, cond.message[:500], cond.details, severity
        alert.save(update_fields=["count", "occurrence", "last_seen", "message", "details", "severity", "updated_at"])
        return "updated"
    last = (Alert.objects.select_for_update().filter(fingerprint=cond.fingerprint, status=AlertStatus.RESOLVED)
            .order_by("-resolved_at", "-pk").first())
    if last is not None:
        if last.quiet_until_clear and cond.occurrence == last.occurrence:
            return "kept_resolved"
        last.status, last.count, last.reopened = AlertStatus.OPEN, last.count + 1, last.reopened + 1
        last.occurrence, last.last_seen, last.message, last.details, last.severity = (
            cond.occurrence, now, cond.message[:500], cond.details, severity)
        last.acknowledged_by = last.acknowledged_at = last.resolved_by = last.resolved_at = None
        last.acknowledged_note = last.resolved_note = ""
        last.auto_resolved = last.quiet_until_clear = False
        with transaction.atomic():
            last.save()
        outbox.enqueue(alert=last, event=DeliveryEvent.TRIGGER)
        return "reopened"
    with transaction.atomic():  # a savepoint: a clash with another process leaves this transaction usable
        alert = Alert.objects.create(
            type=rule.type, severity=severity, status=AlertStatus.OPEN, fingerprint=cond.fingerprint,
            target=cond.target[:128], database_target_id=cond.database_target_id, message=cond.message[:500],
            details=cond.details, occurrence=cond.occurrence, first_seen=now, last_seen=now,
        )
    outbox.enqueue(alert=alert, event=DeliveryEvent.TRIGGER)
    return "opened"


def _resolve_cleared(rule_type: str, seen: set[str], now: datetime) -> int:
    resolved = 0
    for alert in Alert.objects.filter(type=rule_type, status__in=ACTIVE).exclude(fingerprint__in=seen):
        with transaction.atomic():
            done = Alert.objects.filter(pk=alert.pk, status__in=ACTIVE).update(
                status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=None, auto_resolved=True,
                resolved_note="The condition cleared.", updated_at=now)
            if done:
                alert.refresh_from_db()
                outbox.enqueue(alert=alert, event=DeliveryEvent.RESOLVE)
                resolved += 1
    # The condition cleared: an operator's early resolve no longer holds back its next return.
    Alert.objects.filter(type=rule_type, status=AlertStatus.RESOLVED, quiet_until_clear=True).exclude(
        fingerprint__in=seen).update(quiet_until_clear=False)
    return resolved
