"""REST API for storage locations. Credentials are references (env:VAR, file:/path), never secrets."""
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from apps.core.api import COMMON_ERRORS, ERROR_404, FIELD_ERRORS, ActorMixin
from apps.storage import services
from apps.storage.models import StorageLocation


class StorageLocationSerializer(serializers.ModelSerializer):
    class Meta:
        model = StorageLocation
        fields = [
            "id", "name", "kind", "region", "bucket", "path", "endpoint_url", "credentials_ref", "storage_class",
            "is_primary", "capacity_bytes", "enabled", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


@extend_schema_view(
    list=extend_schema(summary="List storage locations",
                       responses={200: StorageLocationSerializer(many=True), **COMMON_ERRORS}),
    retrieve=extend_schema(summary="Show a storage location",
                           responses={200: StorageLocationSerializer, 404: ERROR_404, **COMMON_ERRORS}),
    create=extend_schema(summary="Add a storage location (admin)",
                         responses={201: StorageLocationSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS}),
    update=extend_schema(summary="Replace a storage location (admin)",
                         responses={200: StorageLocationSerializer, 400: FIELD_ERRORS, 404: ERROR_404,
                                    **COMMON_ERRORS}),
    partial_update=extend_schema(summary="Change a storage location (admin)",
                                 responses={200: StorageLocationSerializer, 400: FIELD_ERRORS, 404: ERROR_404,
                                            **COMMON_ERRORS}),
)
class StorageLocationViewSet(ActorMixin, viewsets.ModelViewSet):
    """Where backups are stored. Reads: viewer; writes: admin. Deleting is not offered: disable a location instead."""

    queryset = StorageLocation.objects.order_by("name")
    serializer_class = StorageLocationSerializer
    filterset_fields = ["kind", "enabled", "is_primary"]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.save_location(location=StorageLocation(**serializer.validated_data),
                                                     actor=self.actor)

    def perform_update(self, serializer):
        location = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(location, field, value)
        serializer.instance = services.save_location(location=location, actor=self.actor)
