from django.core.validators import MinValueValidator
from django.db import models

from apps.core.models import TimeStampedModel
from apps.storage.backends import kind_choices


class StorageKind(models.TextChoices):
    """Kinds the code refers to by name. Which kinds may be used is what the backend registry knows."""

    LOCAL = "local", "Local disk"


class ImmutabilityMode(models.TextChoices):
    OFF = "", "Off"
    GOVERNANCE = "governance", "Governance (privileged users may shorten it)"
    COMPLIANCE = "compliance", "Compliance (nobody can shorten it)"


class StorageLocation(TimeStampedModel):
    name = models.SlugField(max_length=64, unique=True)
    # Choices from the backend registry (a callable: registering a backend needs no migration).
    kind = models.CharField(max_length=16, choices=kind_choices, default=StorageKind.LOCAL)
    region = models.CharField(max_length=64, blank=True)
    bucket = models.CharField(max_length=255, blank=True, help_text="Bucket (S3, GCS) or container (Azure).")
    path = models.CharField(max_length=1024, blank=True, help_text="Root directory (local) or key prefix (cloud).")
    endpoint_url = models.URLField(blank=True, help_text="Custom endpoint (S3-compatible services, emulators).")
    credentials_ref = models.CharField(
        max_length=255,
        blank=True,
        help_text="Where credentials live: env:VAR or file:/path. Never the secret itself.",
    )
    storage_class = models.CharField(max_length=32, blank=True, help_text="Default class / tier for new objects.")
    is_primary = models.BooleanField(default=False, help_text="New backups are written here first.")
    capacity_bytes = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)],
                                         help_text="Quota: the Storage Full alert fires when used bytes near it.")
    used_bytes = models.BigIntegerField(default=0, editable=False, help_text="Bytes this location holds for us.")
    used_bytes_at = models.DateTimeField(null=True, blank=True, editable=False)
    immutability = models.CharField(max_length=16, choices=ImmutabilityMode.choices, default=ImmutabilityMode.OFF,
                                    blank=True, help_text="Write-once storage: every upload carries a retention.")
    retention_days = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="Retention of write-once objects, in days.")
    tier_rules = models.JSONField(
        default=list, blank=True,
        help_text='Move objects to colder tiers by age, e.g. [{"after_days": 30, "tier": "STANDARD_IA"}].',
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
