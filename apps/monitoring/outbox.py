"""The outbox: notifications are Delivery rows written with the alert change, sent later by a worker.

Routing: a trigger goes to every enabled channel whose minimum severity the alert reaches; an acknowledge or a
resolve goes to the channels that were sent (or are still to be sent) the trigger, so PagerDuty closes exactly
the incidents it opened.

Sending (deliver_due, every minute and right after alerts change): deliveries in the order they were queued. A
channel that fails with a temporary error (no connection, timeout, 408, 429, 5xx) is retried later with
exponential backoff, never given up; the rest of its queue waits, so a resolve never overtakes its trigger. A
channel that refuses a message for good (another 4xx) marks that delivery failed and goes on. Each attempt is
claimed first (compare-and-set of next_attempt_at), so two workers never send the same delivery.
"""
import logging
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.monitoring.channels import registry
from apps.monitoring.channels.base import TransportError
from apps.monitoring.models import Alert, Delivery, DeliveryEvent, DeliveryStatus, NotificationChannel, at_least
from apps.monitoring.notification import Notification

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120  # longer than one attempt can take (HTTP and SMTP timeouts are shorter)


def enqueue(*, alert: Alert, event: str) -> list[Delivery]:
    now = timezone.now()
    if event == DeliveryEvent.TRIGGER:
        channels = [c for c in NotificationChannel.objects.filter(enabled=True)
                    if at_least(alert.severity, c.min_severity)]
    else:
        channels = list(NotificationChannel.objects.filter(
            deliveries__alert=alert, deliveries__event=DeliveryEvent.TRIGGER).distinct())
    return [Delivery.objects.create(alert=alert, channel=c, event=event, next_attempt_at=now) for c in channels]


def kick() -> None:
    """Send what is due once the current transaction commits (inline when Q_CLUSTER['sync'] is on)."""

    def send():
        from django_q.tasks import async_task

        async_task("apps.monitoring.tasks.deliver_outbox", task_name="monitoring:deliver")

    transaction.on_commit(send)


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: doubling from the base up to the cap, with ±10 % jitter."""
    base, cap = settings.MONITORING_RETRY_BASE_SECONDS, settings.MONITORING_RETRY_MAX_SECONDS
    seconds = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))


def deliver_due(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    now = now or timezone.now()
    counts = {"sent": 0, "retry": 0, "failed": 0}
    held_channels: set[int] = set()
    held_alerts: set[tuple] = set()
    due = (Delivery.objects.filter(status=DeliveryStatus.PENDING, channel__enabled=True)
           .select_related("channel", "alert").order_by("created_at", "pk"))
    for delivery in due[:limit]:
        key = (delivery.channel_id, delivery.alert_id)
        if delivery.channel_id in held_channels or key in held_alerts:
            continue
        if delivery.next_attempt_at > now:
            held_alerts.add(key)  # an earlier message of this alert waits for its retry: the later ones too
            continue
        claimed = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING,
                                          next_attempt_at=delivery.next_attempt_at).update(
            next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        if not claimed:
            held_alerts.add(key)
            continue
        outcome = attempt(delivery)
        counts[outcome] += 1
        if outcome == "retry":
            held_channels.add(delivery.channel_id)
    return counts


def attempt(delivery: Delivery) -> str:
    """Send one delivery now and record the outcome: "sent", "retry" or "failed"."""
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    try:
        sender = registry.get(delivery.channel.kind)(delivery.channel)
        code, body = sender.send(Notification.of(delivery))
    except TransportError as exc:
        delivery.response_code, delivery.response, delivery.error = exc.code, exc.response[:2000], str(exc)[:2000]
        if exc.permanent:
            delivery.status = DeliveryStatus.FAILED
            log.error("Delivery %s to %s failed for good: %s", delivery.pk, delivery.channel.name, exc)
            outcome = "failed"
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
            log.warning("Delivery %s to %s failed (attempt %s), retrying at %s: %s", delivery.pk,
                        delivery.channel.name, delivery.attempts, delivery.next_attempt_at, exc)
            outcome = "retry"
    else:
        delivery.status, delivery.sent_at = DeliveryStatus.SENT, now
        delivery.response_code, delivery.response, delivery.error = code, (body or "")[:2000], ""
        outcome = "sent"
    delivery.save(update_fields=["status", "attempts", "last_attempt_at", "next_attempt_at", "sent_at",
                                 "response_code", "response", "error", "updated_at"])
    return outcome
