from django.core.validators import MinValueValidator
from django.db import models

from apps.core.models import TimeStampedModel
from apps.storage.backends import kind_choices


class StorageKind(models.TextChoices):
    """Kinds the code refers to by name. Which kinds may be used is what the backend registry knows."""

    LOCAL = "local", "Local disk"


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
    capacity_bytes = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
