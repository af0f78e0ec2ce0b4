from django.db import connection
from django.db.models import QuerySet

from apps.core.models import AuditEvent


def fetch_all(sql: str, params: list) -> list[tuple]:
    """The rows of one statement written once (the dashboard's reads whose composed querysets cost more Python
    than the query itself); its table names from the models' _meta, its values as parameters, never in the text."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def audit_events() -> QuerySet[AuditEvent]:
    """Newest first; the actor's name is on the row, so listing needs no join."""
    return AuditEvent.objects.order_by("-at", "-id")
