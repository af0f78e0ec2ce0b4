from django.core.validators import MinValueValidator
from django.db import models

from apps.core.models import TimeStampedModel, UlidModel


class RecoveryKind(models.TextChoices):
    PITR = "pitr", "Point-in-time recovery"
    TABLE = "table", "Single-table recovery"
    DRILL = "drill", "DR drill (scratch cluster)"


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


# --- disaster recovery -------------------------------------------------------------------------------------------

class DRStrategy(models.TextChoices):
    PROMOTE_STANDBY = "promote_standby", "Promote a streaming standby"
    RESTORE_FROM_BACKUP = "restore_from_backup", "Restore the latest backup + WAL"


class FenceMode(models.TextChoices):
    READ_ONLY = "read_only", "Make it read-only and end its sessions (when reachable)"
    STOP = "stop", "Stop it with pg_ctl (its data directory is on this machine)"
    NONE = "none", "Do not fence"


class DRPlan(TimeStampedModel):
    """A primary, its standbys, how to fail over, what to prove in drills, and the objectives to meet.

    Auto-failover counts consecutive failed health checks of the primary in `consecutive_failures`; it fires at
    `failure_threshold` and then disarms (`auto_failover_armed` false) until an operator re-arms the plan, so
    it never flaps back and forth.
    """

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    primary = models.ForeignKey("databases.DatabaseTarget", on_delete=models.PROTECT, related_name="dr_plans")
    standbys = models.ManyToManyField("databases.DatabaseTarget", blank=True, related_name="dr_standby_of",
                                      help_text="Streaming replicas of the primary, each a target of its own.")
    strategy = models.CharField(max_length=24, choices=DRStrategy.choices, default=DRStrategy.PROMOTE_STANDBY)
    rpo_objective_seconds = models.PositiveIntegerField(default=300, help_text="Most data a disaster may lose.")
    rto_objective_seconds = models.PositiveIntegerField(default=900, help_text="Longest time back to service.")
    # Failover
    fence = models.CharField(max_length=16, choices=FenceMode.choices, default=FenceMode.READ_ONLY)
    max_lag_bytes = models.BigIntegerField(
        null=True, blank=True, default=16 * 1024 * 1024,
        help_text="Refuse to promote a standby further behind the primary than this (empty: no limit).")
    catchup_seconds = models.PositiveIntegerField(
        default=30, help_text="After fencing, wait this long at most for the standby to replay what it received.")
    switch_hook_command = models.JSONField(
        default=list, blank=True,
        help_text="Argument list run without a shell after promotion; the new primary is in DR_NEW_PRIMARY_HOST, "
                  "DR_NEW_PRIMARY_PORT, DR_NEW_PRIMARY_DBNAME, DR_NEW_PRIMARY_TARGET and DR_PLAN.")
    switch_hook_url = models.URLField(blank=True, help_text="Or: POSTed a JSON body naming the new primary.")
    switch_hook_timeout_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])
    # Auto-failover
    auto_failover = models.BooleanField(default=False)
    auto_failover_armed = models.BooleanField(
        default=True, help_text="Cleared by a failover; an operator re-arms the plan after checking it.")
    failure_threshold = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)],
                                                    help_text="Consecutive failed checks that fire it.")
    health_timeout_seconds = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)])
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_health_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_health = models.JSONField(default=dict, blank=True, editable=False)
    last_primary_lsn = models.CharField(max_length=32, blank=True, editable=False,
                                        help_text="The primary's WAL position at its last good check.")
    # Drills
    drills_enabled = models.BooleanField(default=True, help_text="Drilled by the weekly schedule.")
    drill_tables = models.JSONField(default=list, blank=True,
                                    help_text="SCHEMA.TABLE names whose rows a drill counts (each must exist).")
    drill_probe_sql = models.TextField(blank=True,
                                       help_text="A query the restored database must answer with true.")
    notification_channels = models.JSONField(
        default=list, blank=True, help_text="Names of notification channels told about failovers and drills.")

    class Meta:
        ordering = ["name"]
        verbose_name = "DR plan"

    def __str__(self) -> str:
        return self.name


class FailoverStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Failover(UlidModel):
    """One failover of a plan: what was checked, fenced and promoted, and the measured RTO and data-loss window."""

    plan = models.ForeignKey(DRPlan, on_delete=models.CASCADE, related_name="failovers")
    status = models.CharField(max_length=16, choices=FailoverStatus.choices, default=FailoverStatus.PENDING,
                              db_index=True)
    automatic = models.BooleanField(default=False)
    requested_standby = models.ForeignKey("databases.DatabaseTarget", null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="+")
    old_primary = models.ForeignKey("databases.DatabaseTarget", null=True, on_delete=models.SET_NULL,
                                    related_name="+")
    new_primary = models.ForeignKey("databases.DatabaseTarget", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    fenced = models.CharField(max_length=200, blank=True, help_text="What was done to the old primary.")
    lag_bytes_at_start = models.BigIntegerField(null=True, blank=True)
    lag_seconds_at_start = models.FloatField(null=True, blank=True)
    old_primary_lsn = models.CharField(max_length=32, blank=True,
                                       help_text="The old primary's last known WAL position.")
    promoted_lsn = models.CharField(max_length=32, blank=True, help_text="Replayed by the standby when promoted.")
    data_loss_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="WAL the old primary had that the standby had not replayed (LSN difference).")
    promote_seconds = models.FloatField(null=True, blank=True)
    rto_seconds = models.FloatField(null=True, blank=True, help_text="From the start to a verified write.")
    hook_result = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.plan} failover {self.id}"


class DrillStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class DRDrill(UlidModel):
    """A drill of a plan: the latest backup + WAL restored into a scratch cluster, checked, measured, removed."""

    plan = models.ForeignKey(DRPlan, on_delete=models.CASCADE, related_name="drills")
    status = models.CharField(max_length=16, choices=DrillStatus.choices, default=DrillStatus.PENDING, db_index=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recovery = models.ForeignKey(RecoveryRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    base_backup = models.ForeignKey("backups.Backup", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rto_seconds = models.FloatField(null=True, blank=True, help_text="From the start to accepting queries.")
    rpo_seconds = models.FloatField(null=True, blank=True,
                                    help_text="From the last commit the restore replayed to the drill's restore.")
    last_commit_at = models.DateTimeField(null=True, blank=True)
    checks = models.JSONField(default=dict, blank=True, help_text="Row counts per table and the probe's answer.")
    objectives_met = models.BooleanField(null=True, blank=True)
    reasons = models.JSONField(default=list, blank=True, help_text="Why the drill failed or missed an objective.")
    scratch_removed = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "DR drill"

    def __str__(self) -> str:
        return f"{self.plan} drill {self.id}"
