from django.db import models

from apps.core.models import UlidModel


class RecoveryKind(models.TextChoices):
    PITR = "pitr", "Point-in-time recovery"
    TABLE = "table", "Single-table recovery"


class RecoveryStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RecoveryRun(UlidModel):
    """One point-in-time recovery into a new data directory, with what it reached and how long each part took."""

    database_target = models.ForeignKey("databases.DatabaseTarget", on_delete=models.PROTECT, related_name="recoveries")
    kind = models.CharField(max_length=8, choices=RecoveryKind.choices, default=RecoveryKind.PITR)
    status = models.CharField(max_length=16, choices=RecoveryStatus.choices, default=RecoveryStatus.PENDING,
                              db_index=True)
    target_time = models.DateTimeField(null=True, blank=True)
    target_lsn = models.CharField(max_length=32, blank=True)
    target_name = models.CharField(max_length=63, blank=True, help_text="A named restore point.")
    inclusive = models.BooleanField(default=True, help_text="Stop just after the target (else just before it).")
    base_backup = models.ForeignKey("backups.Backup", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="recoveries")
    pgdata = models.CharField(max_length=1024)
    port = models.PositiveIntegerField(null=True, blank=True)
    start = models.BooleanField(default=False, help_text="Start the recovered cluster and wait until it is ready.")
    table = models.CharField(max_length=127, blank=True, help_text="SCHEMA.TABLE copied back (single-table).")
    table_destination = models.CharField(max_length=300, blank=True,
                                         help_text="Where the table went (host:port/db schema.table), never a password.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    restore_seconds = models.FloatField(null=True, blank=True, help_text="Laying out the base backup.")
    replay_seconds = models.FloatField(null=True, blank=True, help_text="Start to promoted (WAL replay).")
    reached = models.TextField(blank=True, help_text="Where replay stopped, as the server logged it.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.database_target} {self.kind} {self.id}"

    @property
    def goal(self):
        from apps.recovery.targets import RecoveryTarget

        return RecoveryTarget(time=self.target_time, lsn=self.target_lsn, name=self.target_name,
                              inclusive=self.inclusive)

    @property
    def target_description(self) -> str:
        return self.goal.describe()
