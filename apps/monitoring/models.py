"""Alerts, the rules that raise them, the channels that carry them and the outbox of deliveries.

An alert is stored before anyone is told about it: each notification is a Delivery row (alert × channel ×
event) that a worker sends, retrying with backoff until the channel takes it. A channel that is down delays a
notification; it never loses one.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel, UlidModel


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


def at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK[Severity(severity)] >= SEVERITY_RANK[Severity(minimum)]


class AlertStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ACTIVE = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


def alert_type_choices():
    """Alert types from the rule registry (a callable: a new rule needs no migration)."""
    from apps.monitoring.rules import registry

    return registry.choices()


class AlertRule(TimeStampedModel):
    """Thresholds of one alert type: the default (no target, no location) or for one target / location.

    Lookups go target or location rule → default rule → the rule class's built-in parameters.
    """

    type = models.CharField(max_length=32, choices=alert_type_choices)
    database_target = models.ForeignKey("databases.DatabaseTarget", null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="+", help_text="Empty: the default for every target.")
    location = models.ForeignKey("storage.StorageLocation", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="+", help_text="For storage rules: empty is every location.")
    enabled = models.BooleanField(default=True, help_text="Off: this rule raises no alerts for its scope.")
    severity = models.CharField(max_length=16, choices=Severity.choices, blank=True,
                                help_text="Empty: the type's default severity.")
    params = models.JSONField(default=dict, blank=True,
                              help_text='Thresholds, e.g. {"rpo_hours": 26} or {"max_runtime_minutes": 120}.')

    class Meta:
        ordering = ["type", "database_target__name", "location__name"]
        constraints = [
            models.UniqueConstraint(fields=["type", "database_target", "location"], name="uniq_alert_rule_scope",
                                    nulls_distinct=False),
        ]

    def __str__(self) -> str:
        scope = self.database_target or self.location or "default"
        return f"{self.type} ({scope})"


class Alert(UlidModel):
    type = models.CharField(max_length=32, choices=alert_type_choices, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN, db_index=True)
    fingerprint = models.CharField(max_length=255, help_text="Same condition, same fingerprint: one alert.")
    target = models.CharField(max_length=128, blank=True, db_index=True,
                              help_text="What the alert is about: a target, a location or a document source.")
    database_target = models.ForeignKey("databases.DatabaseTarget", null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    occurrence = models.CharField(max_length=255, blank=True,
                                  help_text="What was last seen (e.g. the failed backup's id): a new one counts.")
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    reopened = models.PositiveIntegerField(default=0)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_note = models.TextField(blank=True)
    auto_resolved = models.BooleanField(default=False, help_text="Resolved because the condition cleared.")
    quiet_until_clear = models.BooleanField(
        default=False, help_text="Resolved by an operator while the condition held: only a new occurrence, or the "
                                 "condition coming back after clearing, re-opens it.")

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            # One active alert per condition, whoever evaluates (a finished job and the health check at once).
            models.UniqueConstraint(fields=["fingerprint"], condition=~Q(status="resolved"),
                                    name="uniq_active_alert_fingerprint"),
        ]
        indexes = [models.Index(fields=["fingerprint", "-last_seen"])]

    def __str__(self) -> str:
        return f"{self.severity} {self.type} {self.target} ({self.status})"

    @property
    def dedup_key(self) -> str:
        """The incident key for PagerDuty: trigger, acknowledge and resolve of this alert share it."""
        return f"backupsite-{self.pk}"


def channel_kind_choices():
    from apps.monitoring.channels import registry

    return registry.choices()


class NotificationChannel(TimeStampedModel):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=channel_kind_choices)
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.HIGH,
                                    help_text="Alerts of this severity and above are sent here.")
    config = models.JSONField(default=dict, blank=True, help_text="Settings that are not secret (see OPERATIONS).")
    # Write-only: webhook URLs with tokens, routing keys, HMAC keys, SMTP passwords, sealed as a JSON object.
    secrets_sealed = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def get_secrets(self) -> dict:
        import json

        from apps.core import secretbox

        return json.loads(secretbox.unseal(self.secrets_sealed) or "{}")

    def set_secrets(self, values: dict) -> None:
        import json

        from apps.core import secretbox

        kept = {k: v for k, v in values.items() if v}
        self.secrets_sealed = secretbox.seal(json.dumps(kept)) if kept else ""

    @property
    def secret_names(self) -> list[str]:
        """Which secrets are set (never their values)."""
        return sorted(self.get_secrets()) if self.secrets_sealed else []


class DeliveryEvent(models.TextChoices):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    TEST = "test"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending (to send or to retry)"
    SENT = "sent"
    FAILED = "failed", "Failed for good (the channel refused it)"


class Delivery(TimeStampedModel):
    """One notification to send: the outbox row, kept with every attempt's outcome."""

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=DeliveryEvent.choices)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response_code = models.IntegerField(null=True, blank=True)
    response = models.TextField(blank=True, help_text="The channel's answer (cut to 2000 characters).")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["channel", "created_at"], condition=Q(status="pending"), name="delivery_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.alert_id or 'test'} → {self.channel.name} ({self.status})"


class HealthCheck(TimeStampedModel):
    """The latest outcome of one live probe (a target reachable, a location reachable): what rules read."""

    probe = models.CharField(max_length=32, help_text="target_reachable or storage_reachable.")
    subject = models.CharField(max_length=128)
    ok = models.BooleanField()
    detail = models.TextField(blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["probe", "subject"]
        constraints = [models.UniqueConstraint(fields=["probe", "subject"], name="uniq_health_check")]

    def __str__(self) -> str:
        return f"{self.probe} {self.subject}: {'ok' if self.ok else 'failing'}"
