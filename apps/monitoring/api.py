"""REST API of monitoring: alerts (list, acknowledge, resolve), channels and alert rules (CRUD, admin), the
dashboard. Channel secrets are write-only: the API shows which are set, never their values."""
import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import COMMON_ERRORS, ERROR_404, ERROR_409, FIELD_ERRORS, ActorMixin, checked, crud_schema
from apps.core.roles import OPERATOR
from apps.databases.models import DatabaseTarget
from apps.monitoring import selectors, services
from apps.monitoring.channels import registry as channel_registry
from apps.monitoring.models import (
    Alert, AlertRule, AlertStatus, Delivery, NotificationChannel, Severity, alert_type_choices,
)
from apps.storage.models import StorageLocation


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", read_only=True, allow_null=True)
    resolved_by = serializers.CharField(source="resolved_by.username", read_only=True, allow_null=True)
    details = serializers.DictField(read_only=True)
    dedup_key = serializers.CharField(read_only=True, help_text="PagerDuty dedup_key of this alert.")

    class Meta:
        model = Alert
        fields = ["id", "type", "severity", "status", "target", "message", "details", "count", "first_seen",
                  "last_seen", "reopened", "acknowledged_by", "acknowledged_at", "acknowledged_note", "resolved_by",
                  "resolved_at", "resolved_note", "auto_resolved", "fingerprint", "dedup_key"]
        read_only_fields = fields


class AlertFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AlertStatus.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    target = django_filters.CharFilter(help_text="Name of the target, location or document source.")
    type = django_filters.ChoiceFilter(choices=alert_type_choices)

    class Meta:
        model = Alert
        fields = ["status", "severity", "target", "type"]


@extend_schema_view(
    list=extend_schema(summary="List alerts", responses={200: AlertSerializer(many=True), 400: FIELD_ERRORS,
                                                         **COMMON_ERRORS}),
    retrieve=extend_schema(summary="Show an alert", responses={200: AlertSerializer, 404: ERROR_404,
                                                               **COMMON_ERRORS}),
)
class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts, the most recently seen first."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter

    def get_queryset(self):
        return selectors.alerts()


class AlertActionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class _AlertActionView(ActorMixin, generics.GenericAPIView):
    write_role = OPERATOR
    serializer_class = AlertActionSerializer
    queryset = Alert.objects.all()
    service = None

    def post(self, request, pk: str):
        alert = get_object_or_404(Alert, pk=pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        alert = type(self).service(alert=alert, actor=self.actor, note=data.validated_data["note"])
        return Response(AlertSerializer(selectors.alerts().get(pk=alert.pk)).data)


_ACTION_RESPONSES = {200: AlertSerializer, 400: FIELD_ERRORS, 404: ERROR_404, 409: ERROR_409, **COMMON_ERRORS}


class AcknowledgeAlertView(_AlertActionView):
    """Acknowledge an open alert (operator): who, when and the note are recorded."""

    service = staticmethod(services.acknowledge)

    @extend_schema(summary="Acknowledge an alert", request=AlertActionSerializer, responses=_ACTION_RESPONSES)
    def post(self, request, pk: str):
        return super().post(request, pk)


class ResolveAlertView(_AlertActionView):
    """Resolve an open or acknowledged alert (operator): who, when and the note are recorded."""

    service = staticmethod(services.resolve)

    @extend_schema(summary="Resolve an alert", request=AlertActionSerializer, responses=_ACTION_RESPONSES)
    def post(self, request, pk: str):
        return super().post(request, pk)


class ChannelSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=channel_registry.choices())
    config = serializers.DictField(required=False, default=dict,
                                   help_text="Settings that are not secret, per kind (see OPERATIONS.md).")
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=2048), write_only=True,
        required=False, help_text="Write-only: webhook URLs, routing keys, HMAC keys, SMTP passwords. Given keys "
                                  "replace the stored ones (an empty string clears one); omitted: kept.")
    secrets_set = serializers.ListField(child=serializers.CharField(), source="secret_names", read_only=True,
                                        help_text="Names of the secrets that are set (never their values).")

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "enabled", "min_severity", "config", "secrets", "secrets_set", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        instance = self.instance
        kind = attrs.get("kind", instance.kind if instance else None)
        config = attrs.get("config", instance.config if instance else {})
        secrets = instance.get_secrets() if instance is not None and instance.secrets_sealed else {}
        secrets.update(attrs.get("secrets", {}))
        checked(services.check_channel, kind=kind, config=config, secrets={k: v for k, v in secrets.items() if v})
        return attrs


class DeliverySerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.name", read_only=True)
    alert = serializers.CharField(source="alert_id", read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = ["id", "alert", "channel", "event", "status", "attempts", "next_attempt_at", "last_attempt_at",
                  "sent_at", "response_code", "response", "error", "created_at"]
        read_only_fields = fields


@crud_schema(ChannelSerializer, "notification channel")
class ChannelViewSet(ActorMixin, viewsets.ModelViewSet):
    """Where alerts are sent. Reads: viewer; writes and test sends: admin. Every write is audited."""

    queryset = NotificationChannel.objects.order_by("name")
    serializer_class = ChannelSerializer
    filterset_fields = ["kind", "enabled"]

    def _save(self, serializer, channel):
        data = dict(serializer.validated_data)
        secrets = data.pop("secrets", None)
        for field, value in data.items():
            setattr(channel, field, value)
        serializer.instance = services.save_channel(channel=channel, actor=self.actor, secrets=secrets)

    def perform_create(self, serializer):
        self._save(serializer, NotificationChannel())

    def perform_update(self, serializer):
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance):
        services.delete_channel(channel=instance, actor=self.actor)

    @extend_schema(summary="Send a test notification (admin)", request=None,
                   responses={200: DeliverySerializer, 404: ERROR_404, **COMMON_ERRORS})
    @action(detail=True, methods=["post"], url_path="test")
    def test(self, request, pk=None):
        """Send a test message now; the answer is the delivery, with the channel's response or error."""
        delivery = services.test_channel(channel=self.get_object(), actor=self.actor)
        return Response(DeliverySerializer(delivery).data)


class AlertRuleSerializer(serializers.ModelSerializer):
    type = serializers.ChoiceField(choices=alert_type_choices())
    target = serializers.SlugRelatedField(
        source="database_target", slug_field="name", queryset=DatabaseTarget.objects.all(), required=False,
        allow_null=True, default=None, help_text="A target's name; null: the default for every target.",
        error_messages={"does_not_exist": "No database target named {value}."})
    location = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), required=False, allow_null=True, default=None,
        help_text="A storage location's name (storage rules).",
        error_messages={"does_not_exist": "No storage location named {value}."})
    params = serializers.DictField(required=False, default=dict,
                                   help_text='Thresholds of the type, e.g. {"rpo_hours": 26}.')

    class Meta:
        model = AlertRule
        fields = ["id", "type", "target", "location", "enabled", "severity", "params", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # the scope's uniqueness is checked by the service, with a clear message

    def validate(self, attrs):
        rule = AlertRule(pk=self.instance.pk if self.instance else None)
        for field in ("type", "database_target", "location", "enabled", "severity", "params"):
            value = attrs.get(field, getattr(self.instance, field) if self.instance else None)
            if value is not None:
                setattr(rule, field, value)
        checked(services.check_rule, rule)
        return attrs


@crud_schema(AlertRuleSerializer, "alert rule")
class AlertRuleViewSet(ActorMixin, viewsets.ModelViewSet):
    """Thresholds per alert type: a default (no target) and per target or location. Writes: admin."""

    queryset = AlertRule.objects.select_related("database_target", "location").order_by("type", "pk")
    serializer_class = AlertRuleSerializer
    filterset_fields = ["type", "enabled"]

    def _save(self, serializer, rule):
        for field, value in serializer.validated_data.items():
            setattr(rule, field, value)
        serializer.instance = services.save_rule(rule=rule, actor=self.actor)

    def perform_create(self, serializer):
        self._save(serializer, AlertRule())

    def perform_update(self, serializer):
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance):
        services.delete_rule(rule=instance, actor=self.actor)


class DashboardView(APIView):
    """Per target: last backup, status, age vs RPO, success rates, sizes, replication and WAL lag, last
    verification, DR readiness; storage by location and tier; open alerts by severity."""

    @extend_schema(summary="Monitoring dashboard",
                   responses={200: {"type": "object", "additionalProperties": True}, **COMMON_ERRORS})
    def get(self, request):
        return Response(selectors.dashboard())

