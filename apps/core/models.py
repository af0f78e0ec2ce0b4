from django.conf import settings
from django.db import models

from apps.core.ids import new_id


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class UlidModel(TimeStampedModel):
    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)

    class Meta:
        abstract = True


class LeaseHolder(models.Model):
    """Something whose backups take turns (a database target, a document source): the lease of the running
    backup, renewed by its job's heartbeat, and the process holding it (apps/backups/locks.py)."""

    backup_lock = models.CharField(max_length=26, blank=True, editable=False)
    backup_lock_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)
    backup_lock_owner = models.CharField(max_length=128, blank=True, editable=False)

    class Meta:
        abstract = True


class Interface(models.TextChoices):
    CLI = "cli", "Command line"
    API = "api", "REST API"
    ADMIN = "admin", "Django admin"
    CONSOLE = "console", "Console"
    SCHEDULE = "schedule", "Scheduler"
    SYSTEM = "system", "System"


class AppendOnly(models.QuerySet):
    """Bulk changes through the default manager are refused too, not only save() of an existing row.

    (Deleting a user still clears `actor` on its events: Django's deletion collector goes through the base
    manager. Raw SQL is out of the ORM's reach; in production the metadata database's role can be denied
    UPDATE and DELETE on the table.)"""

    def update(self, **kwargs):
        raise ValueError("Audit events are append-only.")

    def delete(self):
        raise ValueError("Audit events are append-only.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise ValueError("Audit events are append-only.")


class AuditEvent(models.Model):
    """Append-only record of a state-changing action: who, what, on which object, via which interface."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted.")
    via = models.CharField(max_length=16, choices=Interface.choices)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AppendOnly.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")
