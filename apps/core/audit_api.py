"""REST API for the audit log: read-only, admin only (it names people, addresses and every change)."""
import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from apps.core import selectors
from apps.core.api import COMMON_ERRORS, ERROR_404, FIELD_ERRORS
from apps.core.models import AuditEvent, Interface
from apps.core.roles import ADMIN


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", read_only=True, help_text="Username (kept if the user is deleted).")
    details = serializers.DictField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "via", "action", "object_type", "object_id", "remote_addr", "details"]
        read_only_fields = fields


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_name", help_text="Username.")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith",
                                       help_text="Action, or its beginning (e.g. `backup.` for every backup action).")
    object_type = django_filters.CharFilter(help_text="e.g. `backups.backup`.")
    object_id = django_filters.CharFilter()
    via = django_filters.ChoiceFilter(choices=Interface.choices)
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte", help_text="ISO 8601 time, inclusive.")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt", help_text="ISO 8601 time, exclusive.")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "object_type", "object_id", "via", "since", "until"]


@extend_schema_view(
    list=extend_schema(summary="List audit events (admin)",
                       responses={200: AuditEventSerializer(many=True), 400: FIELD_ERRORS, **COMMON_ERRORS}),
    retrieve=extend_schema(summary="Show an audit event (admin)",
                           responses={200: AuditEventSerializer, 404: ERROR_404, **COMMON_ERRORS}),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Every state-changing action, newest first: who, what, on which object, from where, via which interface."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    read_role = ADMIN

    def get_queryset(self):
        return selectors.audit_events()
