"""REST API for document backups (the seed's …/documents/… endpoints): sources, versions, browse, restore,
verify, statistics. Reads: viewer; back up and verify: operator; restore and source configuration: admin."""
import django_filters
from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import (
    COMMON_ERRORS,
    ERROR_404,
    ERROR_409,
    FIELD_ERRORS,
    ActorMixin,
    JobAcceptedSerializer,
    checked,
    crud_schema,
    job_accepted,
)
from apps.core.roles import ADMIN, OPERATOR
from apps.databases import identifiers
from apps.documents import selectors, services
from apps.documents.jobs import DocumentBackupJob, DocumentRestoreJob, DocumentVerifyJob
from apps.documents.models import DocumentSource, DocumentVersion, VersionStatus
from apps.storage.models import StorageLocation

# --- sources -----------------------------------------------------------------------------------------


class DocumentSourceSerializer(serializers.ModelSerializer):
    storage_location = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), required=False, allow_null=True,
        help_text="Name of the storage location for its versions; the primary location when null.",
    )
    object_location = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), required=False, allow_null=True,
        help_text="Back up the objects under `prefix` of this storage location (S3, Azure, GCS) instead of root_path.",
    )
    replica_locations = serializers.SlugRelatedField(
        slug_field="name", queryset=StorageLocation.objects.all(), many=True, required=False,
        help_text="Names of further locations each committed version is copied to.",
    )
    include = serializers.ListField(child=serializers.CharField(max_length=255), required=False, max_length=100)
    exclude = serializers.ListField(child=serializers.CharField(max_length=255), required=False, max_length=100)

    class Meta:
        model = DocumentSource
        fields = ["id", "name", "description", "root_path", "object_location", "prefix", "include", "exclude",
                  "follow_symlinks", "storage_location", "replica_locations", "enabled", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_root_path(self, value):
        return checked(services.check_root_path, value) if value else ""

    def validate_prefix(self, value):
        return checked(services.check_prefix, value)


@crud_schema(DocumentSourceSerializer, "document source", delete_note=" without versions")
class DocumentSourceViewSet(ActorMixin, viewsets.ModelViewSet):
    """Directory trees to back up. Reads: viewer; writes: admin. Every write is audited."""

    queryset = (DocumentSource.objects.select_related("storage_location", "object_location")
                .prefetch_related("replica_locations").order_by("name"))
    serializer_class = DocumentSourceSerializer
    filterset_fields = ["enabled", "name"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        replicas = data.pop("replica_locations", None)
        serializer.instance = services.save_source(source=DocumentSource(**data), actor=self.actor,
                                                   replica_locations=replicas)

    def perform_update(self, serializer):
        source = serializer.instance
        data = dict(serializer.validated_data)
        replicas = data.pop("replica_locations", None)
        for field, value in data.items():
            setattr(source, field, value)
        serializer.instance = services.save_source(source=source, actor=self.actor, replica_locations=replicas)

    def perform_destroy(self, instance):
        services.delete_source(source=instance, actor=self.actor)


# --- versions ----------------------------------------------------------------------------------------


class DocumentReplicaSerializer(serializers.Serializer):
    location = serializers.CharField(source="location.name")
    status = serializers.CharField(help_text="pending, copying, present or failed.")
    bytes = serializers.IntegerField()
    attempts = serializers.IntegerField()
    copied_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


class DocumentVersionSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source.name", read_only=True)
    storage_location = serializers.CharField(source="storage_location.name", read_only=True)
    parent = serializers.CharField(source="parent_id", read_only=True, allow_null=True)
    job = serializers.CharField(source="job_id", read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    problems = serializers.ListField(child=serializers.DictField(child=serializers.CharField()), read_only=True,
                                     help_text="Files that vanished or changed while being read.")
    replicas = DocumentReplicaSerializer(many=True, read_only=True,
                                         help_text="Copies in the source's replica locations.")

    class Meta:
        model = DocumentVersion
        fields = ["id", "source", "status", "storage_location", "parent", "job", "created_at", "started_at",
                  "finished_at", "duration_seconds", "files", "files_new", "files_changed", "files_removed",
                  "bytes_total", "bytes_added", "bytes_stored", "problems", "manifest_key", "replicas", "error"]
        read_only_fields = fields


class VersionFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__name", help_text="Source name.")
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)

    class Meta:
        model = DocumentVersion
        fields = ["source", "status"]


class DocumentBackupInputSerializer(serializers.Serializer):
    source = serializers.SlugRelatedField(
        slug_field="name", queryset=DocumentSource.objects.all(), help_text="Name of the document source.",
        error_messages={"does_not_exist": "No document source named {value}."},
    )


class VersionAcceptedSerializer(JobAcceptedSerializer):
    version_id = serializers.CharField()


class DocumentBackupView(ActorMixin, generics.GenericAPIView):
    """Back up a document source now (operator): a new version, deduplicated against everything stored."""

    write_role = OPERATOR
    serializer_class = DocumentBackupInputSerializer

    @extend_schema(summary="Back up documents now", request=DocumentBackupInputSerializer,
                   responses={202: VersionAcceptedSerializer, 400: FIELD_ERRORS, 409: ERROR_409, **COMMON_ERRORS})
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = DocumentBackupJob.enqueue(source=data.validated_data["source"], actor=self.actor)
        return Response(job_accepted(job, version_id=job.args["version_id"]), status=status.HTTP_202_ACCEPTED)


@extend_schema(summary="List document versions",
               responses={200: DocumentVersionSerializer(many=True), 400: FIELD_ERRORS, **COMMON_ERRORS})
class DocumentVersionListView(generics.ListAPIView):
    """Versions, newest first: files, new/changed/removed counts, bytes added. Filter by source and status."""

    serializer_class = DocumentVersionSerializer
    filterset_class = VersionFilter

    def get_queryset(self):
        return selectors.versions()


@extend_schema(summary="Show a document version",
               responses={200: DocumentVersionSerializer, 404: ERROR_404, **COMMON_ERRORS})
class DocumentVersionDetailView(generics.RetrieveAPIView):
    serializer_class = DocumentVersionSerializer

    def get_queryset(self):
        return selectors.versions()


class FileRowSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.CharField(help_text="file, dir or symlink")
    size = serializers.IntegerField(allow_null=True)
    mode = serializers.IntegerField(allow_null=True)
    mtime_ns = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_blank=True)
    target = serializers.CharField(allow_blank=True, help_text="Of a symlink: what it points to.")


class DocumentFilesView(generics.GenericAPIView):
    """Browse a version: the entries directly under `path` (the top of the tree when omitted), or one file."""

    serializer_class = FileRowSerializer
    queryset = DocumentVersion.objects.all()

    @extend_schema(summary="Browse a document version",
                   parameters=[OpenApiParameter("path", OpenApiTypes.STR, description="Directory or file, relative.")],
                   responses={200: FileRowSerializer(many=True), 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS})
    def get(self, request, pk: str):
        version = services.committed(get_object_or_404(selectors.versions(), pk=pk))
        rows = selectors.files_at(version=version, path=request.query_params.get("path"))
        return Response(FileRowSerializer(rows, many=True).data)


class DocumentRestoreInputSerializer(serializers.Serializer):
    directory = serializers.CharField(
        max_length=63, help_text="Name of the new directory to restore into, under the server's "
                                 "DOCUMENTS_RESTORE_ROOT.")
    path = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=4096, default=None,
                                 help_text="Only this file or directory of the version (relative path).")
    overwrite = serializers.BooleanField(default=False, help_text="Replace files that exist in the directory.")

    def validate_directory(self, value):
        return checked(identifiers.check_name, value, what="directory")

    def validate_path(self, value):
        from apps.documents.manifest import normalize_request_path

        return checked(normalize_request_path, value)


class DocumentRestoreView(ActorMixin, generics.GenericAPIView):
    """Restore a version, or one file or directory of it, into a directory under DOCUMENTS_RESTORE_ROOT (admin)."""

    write_role = ADMIN
    serializer_class = DocumentRestoreInputSerializer
    queryset = DocumentVersion.objects.all()

    @extend_schema(summary="Restore a document version", request=DocumentRestoreInputSerializer,
                   responses={202: JobAcceptedSerializer, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS})
    def post(self, request, pk: str):
        version = get_object_or_404(selectors.versions(), pk=pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        root = settings.DOCUMENTS_RESTORE_ROOT
        root.mkdir(parents=True, exist_ok=True)
        job = DocumentRestoreJob.enqueue(version=version, to=str(root / v["directory"]), path=v["path"],
                                         overwrite=v["overwrite"], actor=self.actor)
        return Response(job_accepted(job), status=status.HTTP_202_ACCEPTED)


class DocumentVerifyView(ActorMixin, APIView):
    """Read back every chunk of a version and compare hashes (operator); the job names missing and corrupt files."""

    write_role = OPERATOR

    @extend_schema(summary="Verify a document version", request=None,
                   responses={202: JobAcceptedSerializer, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS})
    def post(self, request, pk: str):
        version = get_object_or_404(selectors.versions(), pk=pk)
        job = DocumentVerifyJob.enqueue(version=version, actor=self.actor)
        return Response(job_accepted(job), status=status.HTTP_202_ACCEPTED)


class DocumentSourceStatisticsSerializer(serializers.Serializer):
    source = serializers.CharField()
    versions = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    files = serializers.IntegerField(help_text="Files in its latest version.")
    bytes_total = serializers.IntegerField(help_text="Size of its latest version's files.")


class DocumentStatisticsSerializer(serializers.Serializer):
    window_days = serializers.IntegerField()
    total_versions = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    stored_bytes = serializers.IntegerField(help_text="Bytes of every pack stored (deduplicated, compressed).")
    raw_bytes = serializers.IntegerField(help_text="Bytes of the chunks in those packs, before compression.")
    bytes_added = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    success_rate = serializers.FloatField(allow_null=True, help_text="Succeeded / finished within the window.")
    sources = DocumentSourceStatisticsSerializer(many=True)


class StatisticsQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=3660, default=30)


class DocumentStatisticsView(generics.GenericAPIView):
    """Versions by status, stored bytes after deduplication and compression, success rate, per source."""

    serializer_class = DocumentStatisticsSerializer

    @extend_schema(summary="Document backup statistics",
                   parameters=[OpenApiParameter("days", OpenApiTypes.INT, description="Window (default 30).")],
                   responses={200: DocumentStatisticsSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS})
    def get(self, request):
        query = StatisticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(DocumentStatisticsSerializer(selectors.statistics(days=query.validated_data["days"])).data)
