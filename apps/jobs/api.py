"""REST API for jobs: status, progress, log and result of long work (backups, restores, verifications)."""
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from apps.core.api import COMMON_ERRORS, ERROR_404, FIELD_ERRORS
from apps.jobs import selectors
from apps.jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    percent = serializers.FloatField(read_only=True, allow_null=True, help_text="Progress in percent, when known.")
    is_finished = serializers.BooleanField(read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, allow_null=True)
    args = serializers.DictField(read_only=True, help_text="What the job was asked to do (never secrets).")
    result = serializers.DictField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "type", "status", "is_finished", "args", "progress_done", "progress_total", "percent", "log",
            "result", "error", "requested_by", "via", "created_at", "started_at", "finished_at", "heartbeat_at",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List jobs", responses={200: JobSerializer(many=True), 400: FIELD_ERRORS,
                                                       **COMMON_ERRORS}),
    retrieve=extend_schema(summary="Show a job", responses={200: JobSerializer, 404: ERROR_404, **COMMON_ERRORS}),
)
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Jobs, newest first; poll one for its status, progress and log."""

    serializer_class = JobSerializer
    filterset_fields = ["status", "type"]

    def get_queryset(self):
        return selectors.jobs()
