"""Two-person approval: a destructive action asked for by one admin waits here until a second admin approves it.

The row holds what is needed to carry the action out later (its registered name and JSON parameters: ids and
names, never a secret), who asked and who decided, and what came of it (e.g. the job it started).
"""
from django.conf import settings
from django.db import models

from apps.core.models import Interface, TimeStampedModel


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved (running)"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    EXECUTED = "executed", "Executed"
    FAILED = "failed", "Failed"


class ApprovalRequest(TimeStampedModel):
    action = models.CharField(max_length=64, db_index=True, help_text="Registered action name, e.g. backup.delete.")
    summary = models.CharField(max_length=300, help_text="What would be done, for the approver.")
    parameters = models.JSONField(default=dict, blank=True, help_text="Ids and names only, never a secret.")
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING,
                              db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_by_name = models.CharField(max_length=150, blank=True)
    requested_via = models.CharField(max_length=16, choices=Interface.choices)
    expires_at = models.DateTimeField(db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_by_name = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="The decider's note (e.g. why it was rejected).")
    result = models.JSONField(default=dict, blank=True, help_text="What the action returned, e.g. its job id.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} ({self.status})"
