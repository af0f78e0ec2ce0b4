from django.db import models

from apps.core.models import TimeStampedModel


class VerificationLevel(models.TextChoices):
    EXISTS = "exists", "Exists (sizes match)"
    CHECKSUM = "checksum", "Checksum (read back, SHA-256 matches)"
    DECRYPT = "decrypt", "Decrypt (authenticate, decompress, parse the dump, row counts match)"
    RESTORE = "restore", "Restore (into a scratch cluster: row counts and content hashes, or amcheck)"


class VerificationResult(models.TextChoices):
    PASSED = "passed"
    FAILED = "failed"


class VerificationRun(TimeStampedModel):
    backup = models.ForeignKey("backups.Backup", on_delete=models.CASCADE, related_name="verifications")
    location = models.ForeignKey("storage.StorageLocation", null=True, on_delete=models.SET_NULL, related_name="+")
    level = models.CharField(max_length=16, choices=VerificationLevel.choices)
    result = models.CharField(max_length=8, choices=VerificationResult.choices)
    bytes_read = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0)
    details = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.backup_id} {self.level}: {self.result}"
