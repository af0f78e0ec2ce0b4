from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.models import TimeStampedModel


class MonthlyThen(models.TextChoices):
    ARCHIVE = "archive", "Move to the archive tier"
    DELETE = "delete", "Delete"


def _days(default: int, help_text: str, *, low: int = 0, high: int = 36500):
    return models.PositiveIntegerField(default=default, help_text=help_text,
                                       validators=[MinValueValidator(low), MaxValueValidator(high)])


class RetentionRule(TimeStampedModel):
    """How long a target's backups are kept (grandfather-father-son, apps/retention/policy.py).

    The rule without a target is the default; a target's own rule replaces it for that target.
    """

    name = models.SlugField(max_length=64, unique=True)
    database_target = models.OneToOneField(
        "databases.DatabaseTarget", null=True, blank=True, on_delete=models.CASCADE, related_name="retention_rule",
        help_text="The target this rule governs; empty: every target without a rule of its own.")
    daily_days = _days(30, "Keep every full backup this many days.")
    incremental_days = _days(7, "Keep incremental backups this many days.")
    weekly_weeks = _days(12, "Keep the first full of each ISO week this many weeks.", high=5200)
    monthly_months = _days(12, "Keep the first full of each month this many months.", high=1200)
    monthly_then = models.CharField(max_length=8, choices=MonthlyThen.choices, default=MonthlyThen.ARCHIVE,
                                    help_text="What happens to a monthly after that.")
    archive_years = _days(7, "Keep archived monthlies this many years, then delete them.", high=100)
    keep_last_fulls = _days(3, "Never delete the newest N successful fulls of a target.", high=1000)
    pitr_window_days = _days(30, "Keep the base backup and WAL needed to recover to any time this many days back.")
    enabled = models.BooleanField(default=True, help_text="Off: the target's backups are all kept.")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["database_target"], condition=models.Q(database_target=None),
                                               name="one_default_retention_rule")]

    def __str__(self) -> str:
        return self.name

    def as_rules(self):
        from apps.retention.policy import Rules

        return Rules(name=self.name, daily_days=self.daily_days, incremental_days=self.incremental_days,
                     weekly_weeks=self.weekly_weeks, monthly_months=self.monthly_months,
                     monthly_then=self.monthly_then, archive_years=self.archive_years,
                     keep_last_fulls=self.keep_last_fulls, pitr_window_days=self.pitr_window_days,
                     enabled=self.enabled)


class RetentionLock(models.Model):
    """One row: who is enforcing retention now (host:pid:start:pidns), renewed by the job heartbeat."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    holder = models.CharField(max_length=128, blank=True)
    job_id = models.CharField(max_length=26, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
