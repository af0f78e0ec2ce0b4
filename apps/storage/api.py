"""REST API for storage locations. Credentials are references (env:VAR, file:/path), never secrets: no response
holds a secret, and the connection test reports only what it checked."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import COMMON_ERRORS, ERROR_404, ActorMixin, crud_schema
from apps.core.roles import ADMIN, OPERATOR
from apps.storage import services
from apps.storage.models import StorageLocation


class StorageLocationSerializer(serializers.ModelSerializer):
    effective_tier_rules = serializers.SerializerMethodField(
        help_text="The rules in force: tier_rules, or the kind's defaults when tier_rules is empty.")
    used_fraction = serializers.SerializerMethodField(help_text="used_bytes / capacity_bytes, when a quota is set.")

    class Meta:
        model = StorageLocation
        fields = [
            "id", "name", "kind", "region", "bucket", "path", "endpoint_url", "credentials_ref", "storage_class",
            "is_primary", "capacity_bytes", "used_bytes", "used_bytes_at", "used_fraction", "immutability",
            "retention_days", "tier_rules", "effective_tier_rules", "enabled", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "used_bytes", "used_bytes_at", "created_at", "updated_at"]
        # The kind's choices come from the backend registry (the model field's callable choices).
        extra_kwargs = {"kind": {"error_messages": {
            "invalid_choice": "Unknown storage kind \"{input}\": no backend for it.",
        }}}

    def get_effective_tier_rules(self, obj) -> list[dict]:
        from apps.storage import tiering

        return tiering.rules_for(obj)

    def get_used_fraction(self, obj) -> float | None:
        return round(obj.used_bytes / obj.capacity_bytes, 4) if obj.capacity_bytes else None


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class ImmutabilityReportSerializer(serializers.Serializer):
    required = serializers.BooleanField()
    mode = serializers.CharField(allow_null=True)
    enforced = serializers.BooleanField(allow_null=True, help_text="Whether the store refused to destroy a fresh "
                                        "probe object (null when not tested).")
    detail = serializers.CharField()


class ConnectionTestSerializer(serializers.Serializer):
    location = serializers.CharField()
    kind = serializers.CharField()
    ok = serializers.BooleanField()
    checks = CheckSerializer(many=True)
    immutability = ImmutabilityReportSerializer()


@crud_schema(StorageLocationSerializer, "storage location", deletable=False)
class StorageLocationViewSet(ActorMixin, viewsets.ModelViewSet):
    """Where backups are stored. Reads: viewer; writes: admin; the connection test: operator. Deleting is not
    offered: disable a location instead."""

    queryset = StorageLocation.objects.order_by("name")
    serializer_class = StorageLocationSerializer
    filterset_fields = ["kind", "enabled", "is_primary"]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    write_role = ADMIN  # the connection test lowers it to operator (its route's initkwargs)

    def perform_create(self, serializer):
        serializer.instance = services.save_location(location=StorageLocation(**serializer.validated_data),
                                                     actor=self.actor)

    def perform_update(self, serializer):
        location = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(location, field, value)
        serializer.instance = services.save_location(location=location, actor=self.actor)

    @extend_schema(summary="Test a storage location's connection", request=None,
                   description="Connects, writes, reads back and deletes a probe object; for a write-once location, "
                               "checks that the store refuses to delete a fresh object. 200 whatever the outcome: "
                               "`ok` says whether every check passed.",
                   responses={200: ConnectionTestSerializer, 404: ERROR_404, **COMMON_ERRORS})
    @action(detail=True, methods=["post"], write_role=OPERATOR)
    def test(self, request, pk=None):
        return Response(services.test_location(location=self.get_object(), actor=self.actor))
