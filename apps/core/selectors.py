from django.db.models import QuerySet

from apps.core.models import AuditEvent


def audit_events() -> QuerySet[AuditEvent]:
    """Newest first; the actor's name is on the row, so listing needs no join."""
    return AuditEvent.objects.order_by("-at", "-id")
