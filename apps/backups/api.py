"""REST API for database backups: run one now, list and show them, restore one, statistics."""
import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from apps.backups import deletion, restores, selectors, services
from apps.backups.jobs import DatabaseBackupJob, RestoreDatabaseJob
from apps.backups.models import Backup, BackupArtifact, BackupFormat, BackupKind, BackupStatus, Replica
from apps.core.api import (
    COMMON_ERRORS, ERROR_404, ERROR_409, FIELD_ERRORS, AcceptedLinksSerializer, ActorMixin,
    backup_link, checked, job_link,
)
from apps.core.roles import ADMIN, OPERATOR
from apps.databases import identifiers
from apps.databases.connection import PgConn
from apps.databases.models import BackupMethod, DatabaseTarget

# --- serializers -------------------------------------------------------------------------------------


def _target_field(help_text: str) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), help_text=help_text,
        error_messages={"does_not_exist": "No database target named {value}."},
    )


class FullBackupInputSerializer(serializers.Serializer):
    target = _target_field("Name of the database target to back up.")
    method = serializers.ChoiceField(
        choices=BackupMethod.choices, required=False, allow_null=True, default=None,
        help_text="logical (pg_dump) or physical (pg_basebackup of the whole cluster); default: the target's "
                  "default_method.",
    )
    format = serializers.ChoiceField(
        choices=[(f.value, f.label) for f in services.LOGICAL_FORMATS], required=False, allow_null=True,
        default=None,
        help_text="pg_dump output of a logical backup: custom (default; allows single-table restore), plain, "
                  "schema (only) or data (only).",
    )


class IncrementalBackupInputSerializer(serializers.Serializer):
    target = _target_field("Name of the database target to back up; it needs a data_directory and a physical "
                           "backup to build on.")


class RestoreInputSerializer(serializers.Serializer):
    target = _target_field("Database target whose server and credentials receive the restore.")
    dbname = serializers.CharField(max_length=63, help_text="Database on that server to restore into.")
    create = serializers.BooleanField(default=False, help_text="Create the database first (it must not exist).")
    table = serializers.CharField(
        max_length=127, required=False, allow_null=True, allow_blank=True, default=None,
        help_text="Restore only this table (SCHEMA.TABLE or TABLE); needs a custom-format backup.",
    )
    schema = serializers.CharField(
        max_length=63, required=False, allow_null=True, allow_blank=True, default=None,
        help_text="Restore only this schema; needs a custom-format backup.",
    )
    no_owner = serializers.BooleanField(default=False, help_text="Skip ownership and privilege commands.")

    # Names only, never connection strings: the checks shared with the console, the CLI and the service.
    def validate_dbname(self, value: str) -> str:
        checked(identifiers.check_name, value)
        return value

    def validate_schema(self, value: str | None) -> str | None:
        if value:
            checked(identifiers.check_name, value, what="schema")
        return value

    def validate_table(self, value: str | None) -> str | None:
        if value:
            checked(identifiers.check_table, value)
        return value


class BackupAcceptedSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    backup_id = serializers.CharField()
    status = serializers.CharField(help_text="Job status when answered: queued, running, succeeded or failed.")
    links = AcceptedLinksSerializer()


class BackupArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = BackupArtifact
        fields = ["name", "key", "size_raw", "size_stored", "sha256_raw", "sha256_stored", "compression", "cipher",
                  "key_id"]


class ReplicaSerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="location.name", read_only=True)
    kind = serializers.CharField(source="location.kind", read_only=True)
    lag_seconds = serializers.SerializerMethodField(
        help_text="Seconds from the backup's end to the copy's (to now while it is not copied); null for the "
                  "location the backup was written to.")

    class Meta:
        model = Replica
        fields = ["location", "kind", "status", "storage_class", "bytes", "checksum_verified_at", "copied_at",
                  "tier_changed_at", "attempts", "last_error", "lag_seconds"]

    def get_lag_seconds(self, obj) -> float | None:
        from apps.backups.replication import lag_seconds

        return lag_seconds(obj)


class BackupSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="database_target.name", read_only=True, allow_null=True)
    storage_location = serializers.CharField(source="storage_location.name", read_only=True)
    job = serializers.CharField(source="job_id", read_only=True, allow_null=True, help_text="Id of its job.")
    parent = serializers.CharField(source="parent_id", read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    row_counts = serializers.DictField(child=serializers.IntegerField(), read_only=True,
                                       help_text="Rows per table (schema.table) when the backup was taken.")
    artifacts = BackupArtifactSerializer(many=True, read_only=True)
    replicas = ReplicaSerializer(many=True, read_only=True)

    class Meta:
        model = Backup
        fields = [
            "id", "target", "kind", "format", "status", "storage_location", "job", "parent", "created_at",
            "started_at", "finished_at", "duration_seconds", "size_raw", "size_stored", "sha256", "compression",
            "encryption_key_id", "server_version", "system_identifier", "lsn_start", "lsn_stop", "timeline",
            "row_counts",
            "manifest_key", "legal_hold", "error", "last_verified_at", "last_verified_level",
            "last_verification_result", "verification_error", "archived_at", "artifacts", "replicas",
        ]
        read_only_fields = fields


class TargetStatisticsSerializer(serializers.Serializer):
    target = serializers.CharField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    backups = serializers.IntegerField()
    stored_bytes = serializers.IntegerField()


class StatisticsSerializer(serializers.Serializer):
    window_days = serializers.IntegerField(help_text="Window of `success_rate`, in days.")
    total_backups = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    successful_backups = serializers.IntegerField()
    stored_bytes = serializers.IntegerField()
    raw_bytes = serializers.IntegerField()
    compression_ratio = serializers.FloatField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    success_rate = serializers.FloatField(allow_null=True, help_text="Succeeded / finished within the window.")
    targets = TargetStatisticsSerializer(many=True)


class StatisticsQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=3660, default=30)


# --- filters -----------------------------------------------------------------------------------------


class BackupFilter(django_filters.FilterSet):
    target = django_filters.CharFilter(field_name="database_target__name", help_text="Target name.")
    status = django_filters.ChoiceFilter(choices=BackupStatus.choices)
    kind = django_filters.ChoiceFilter(choices=BackupKind.choices)
    format = django_filters.ChoiceFilter(choices=BackupFormat.choices)

    class Meta:
        model = Backup
        fields = ["target", "status", "kind", "format"]


# --- views -------------------------------------------------------------------------------------------


def _accepted(*, job, backup_id: str) -> Response:
    body = {"job_id": job.pk, "backup_id": backup_id, "status": job.status,
            "links": {"job": job_link(job.pk), "backup": backup_link(backup_id)}}
    return Response(body, status=status.HTTP_202_ACCEPTED)


class FullBackupView(ActorMixin, generics.GenericAPIView):
    """Start a full backup of a database target now (operator): logical (pg_dump) or physical (pg_basebackup)."""

    write_role = OPERATOR
    serializer_class = FullBackupInputSerializer

    @extend_schema(
        summary="Back up a database now",
        request=FullBackupInputSerializer,
        responses={202: BackupAcceptedSerializer, 400: FIELD_ERRORS, 409: ERROR_409, **COMMON_ERRORS},
    )
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = DatabaseBackupJob.enqueue(target=v["target"], fmt=v["format"], method=v["method"], actor=self.actor)
        return _accepted(job=job, backup_id=job.args["backup_id"])


class IncrementalBackupView(ActorMixin, generics.GenericAPIView):
    """Start an incremental backup of a database target now (operator): the files changed since its latest
    physical backup, with the WAL that makes them consistent. Refused (400) for a target without a
    data_directory (a database reachable only over the network) and before its first physical backup."""

    write_role = OPERATOR
    serializer_class = IncrementalBackupInputSerializer

    @extend_schema(
        summary="Incremental backup of a database now",
        request=IncrementalBackupInputSerializer,
        responses={202: BackupAcceptedSerializer, 400: FIELD_ERRORS, 409: ERROR_409, **COMMON_ERRORS},
    )
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = DatabaseBackupJob.enqueue(target=data.validated_data["target"], kind=BackupKind.INCREMENTAL,
                                        actor=self.actor)
        return _accepted(job=job, backup_id=job.args["backup_id"])


class BackupQuerysetMixin:
    serializer_class = BackupSerializer

    def get_queryset(self):
        return selectors.backups().prefetch_related("artifacts", "replicas__location")


@extend_schema(summary="List database backups", responses={200: BackupSerializer(many=True), 400: FIELD_ERRORS,
                                                           **COMMON_ERRORS})
class BackupListView(BackupQuerysetMixin, generics.ListAPIView):
    """Backups, newest first, with their artifacts and replicas. Filter by target name, status, kind, format."""

    filterset_class = BackupFilter


@extend_schema_view(
    get=extend_schema(summary="Show a database backup", responses={200: BackupSerializer, 404: ERROR_404,
                                                                    **COMMON_ERRORS}),
    delete=extend_schema(
        summary="Delete a database backup (admin)",
        description="Removes its manifest (first) and artifacts from every storage location; the record stays, "
                    "with status `deleted`. Refused (409) under legal hold, while pending or running, or when "
                    "other backups depend on it.",
        responses={200: BackupSerializer, 404: ERROR_404, 409: ERROR_409, **COMMON_ERRORS},
    ),
)
class BackupDetailView(ActorMixin, BackupQuerysetMixin, generics.RetrieveDestroyAPIView):
    """One backup with its artifacts (sizes, checksums, cipher), replicas and per-table row counts."""

    write_role = ADMIN

    def destroy(self, request, *args, **kwargs):
        backup = deletion.delete_backup(backup=self.get_object(), actor=self.actor)
        return Response(self.get_serializer(self.get_queryset().get(pk=backup.pk)).data)


class RestoreView(ActorMixin, generics.GenericAPIView):
    """Restore a backup into a database on a target's server (admin): the whole database or one table/schema."""

    write_role = ADMIN
    serializer_class = RestoreInputSerializer
    queryset = Backup.objects.all()

    @extend_schema(
        summary="Restore a backup",
        request=RestoreInputSerializer,
        responses={202: BackupAcceptedSerializer, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS},
    )
    def post(self, request, pk: str):
        backup = get_object_or_404(Backup, pk=pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        target, dbname = v["target"], v["dbname"]
        destination = PgConn(host=target.host, port=target.port, dbname=dbname, user=target.user,
                             sslmode=target.sslmode).redacted()
        restore = restores.RestoreRequest(table=v["table"] or None, schema=v["schema"] or None, create=v["create"],
                                          no_owner=v["no_owner"])
        job = RestoreDatabaseJob.enqueue(backup=backup, destination=destination, request=restore, actor=self.actor,
                                         target=target, dbname=dbname)
        return _accepted(job=job, backup_id=backup.pk)


class StatisticsView(generics.GenericAPIView):
    """Counts, sizes, success rate and last success per target."""

    serializer_class = StatisticsSerializer

    @extend_schema(
        summary="Backup statistics",
        parameters=[OpenApiParameter("days", OpenApiTypes.INT, description="Window of the success rate (default 30).")],
        responses={200: StatisticsSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS},
    )
    def get(self, request):
        query = StatisticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(StatisticsSerializer(selectors.statistics(days=query.validated_data["days"])).data)
