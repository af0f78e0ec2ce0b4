"""REST API for database targets: CRUD; the connection password is write-only."""
from django.db import transaction
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
    replica_locations = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), many=True, required=False,
        help_text="Names of the locations every backup is copied to after it commits, in fallback order.",
    )
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)

    class Meta:
        model = DatabaseTarget
        fields = [
            "id", "name", "description", "host", "port", "dbname", "user", "password", "has_password", "sslmode",
            "storage_location", "replica_locations", "wal_archiving", "default_method", "data_directory", "tags", "enabled",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


def _split_fields(validated: dict) -> tuple[dict, str | None, list | None]:
    data = dict(validated)
    return data, data.pop("password", None), data.pop("replica_locations", None)


@crud_schema(DatabaseTargetSerializer, "database target", delete_note=" without backups")
class DatabaseTargetViewSet(ActorMixin, viewsets.ModelViewSet):
    """Databases to back up. Reads: viewer; writes: admin. Every write is audited."""

    queryset = (DatabaseTarget.objects.select_related("storage_location").prefetch_related("replica_locations")
                .order_by("name"))
    serializer_class = DatabaseTargetSerializer
    filterset_fields = ["enabled", "name"]

    @transaction.atomic
    def perform_create(self, serializer):
        data, password, replicas = _split_fields(serializer.validated_data)
        self._save(serializer, DatabaseTarget(**data), password, replicas)

    @transaction.atomic
    def perform_update(self, serializer):
        data, password, replicas = _split_fields(serializer.validated_data)
        target = serializer.instance
        for field, value in data.items():
            setattr(target, field, value)
        self._save(serializer, target, password, replicas)

    def _save(self, serializer, target, password, replicas):
        target = services.save_target(target=target, actor=self.actor, password=password)
        if replicas is not None:
            services.set_target_locations(target=target, primary=None, replicas=replicas, actor=self.actor)
        serializer.instance = target

    def perform_destroy(self, instance):
        services.delete_target(target=instance, actor=self.actor)
