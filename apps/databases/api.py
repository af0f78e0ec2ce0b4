"""REST API for database targets: CRUD; the connection password is write-only."""
from rest_framework import serializers, viewsets

from apps.core.api import ActorMixin, crud_schema
from apps.databases import services
from apps.databases.models import DatabaseTarget
from apps.storage.models import StorageLocation


class DatabaseTargetSerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, max_length=1024,
        style={"input_type": "password"},
        help_text="Write-only. Omit to keep the stored password; an empty string clears it.",
    )
    has_password = serializers.BooleanField(read_only=True)
    storage_location = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), required=False, allow_null=True,
        help_text="Name of the storage location for its backups; the primary location when null.",
    )
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)

    class Meta:
        model = DatabaseTarget
        fields = [
            "id", "name", "description", "host", "port", "dbname", "user", "password", "has_password", "sslmode",
            "storage_location", "wal_archiving", "default_method", "data_directory", "tags", "enabled",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


def _split_password(validated: dict) -> tuple[dict, str | None]:
    data = dict(validated)
    return data, data.pop("password", None)


@crud_schema(DatabaseTargetSerializer, "database target", delete_note=" without backups")
class DatabaseTargetViewSet(ActorMixin, viewsets.ModelViewSet):
    """Databases to back up. Reads: viewer; writes: admin. Every write is audited."""

    queryset = DatabaseTarget.objects.select_related("storage_location").order_by("name")
    serializer_class = DatabaseTargetSerializer
    filterset_fields = ["enabled", "name"]

    def perform_create(self, serializer):
        data, password = _split_password(serializer.validated_data)
        serializer.instance = services.save_target(target=DatabaseTarget(**data), actor=self.actor,
                                                   password=password)

    def perform_update(self, serializer):
        data, password = _split_password(serializer.validated_data)
        target = serializer.instance
        for field, value in data.items():
            setattr(target, field, value)
        serializer.instance = services.save_target(target=target, actor=self.actor, password=password)

    def perform_destroy(self, instance):
        services.delete_target(target=instance, actor=self.actor)
