"""REST API for storage locations. Credentials are references (env:VAR, file:/path), never secrets."""
from rest_framework import serializers, viewsets

from apps.core.api import ActorMixin, crud_schema
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
        # The kind's choices come from the backend registry (the model field's callable choices).
        extra_kwargs = {"kind": {"error_messages": {
            "invalid_choice": "Unknown storage kind \"{input}\": no backend for it.",
        }}}


@crud_schema(StorageLocationSerializer, "storage location", deletable=False)
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
