from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.models import LeaseHolder, TimeStampedModel


class SslMode(models.TextChoices):
    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class BackupMethod(models.TextChoices):
    LOGICAL = "logical", "Logical (pg_dump)"
    PHYSICAL = "physical", "Physical (pg_basebackup)"


class DatabaseTarget(TimeStampedModel, LeaseHolder):
    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=5432, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    dbname = models.CharField(max_length=63)
    user = models.CharField(max_length=63)
    # Write-only: sealed with a key derived from SECRET_KEY; never shown in admin or API.
    password_sealed = models.TextField(blank=True, editable=False)
    sslmode = models.CharField(max_length=16, choices=SslMode.choices, default=SslMode.PREFER)
    storage_location = models.ForeignKey(
        "storage.StorageLocation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Where backups are written; the primary location when empty.",
    )
    replica_locations = models.ManyToManyField(
        "storage.StorageLocation", blank=True, related_name="replica_of_targets",
        help_text="Every committed backup of this target is copied to these locations too.",
    )
    wal_archiving = models.BooleanField(default=False)
    default_method = models.CharField(
        max_length=16, choices=BackupMethod.choices, default=BackupMethod.LOGICAL,
        help_text="Method of a full backup when the request does not name one.",
    )
    data_directory = models.CharField(
        max_length=1024, blank=True,
        help_text="The cluster's data directory as seen by the machine that runs jobs. Needed for incremental "
                  "backups; empty for a database reachable only over the network.",
    )
    tags = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_sealed)

    def set_password(self, password: str) -> None:
        from apps.core import secretbox  # cryptography: imported when used, not at Django start-up

        self.password_sealed = secretbox.seal(password)

    def get_password(self) -> str:
        from apps.core import secretbox

        return secretbox.unseal(self.password_sealed)
