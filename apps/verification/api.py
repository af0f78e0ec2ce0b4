"""REST API for verification: check one backup or all succeeded ones, and list the runs."""
import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from apps.backups import selectors as backup_selectors
from apps.backups.models import Backup, BackupStatus
from apps.core.api import COMMON_ERRORS, ERROR_404, FIELD_ERRORS, ActorMixin, JobAcceptedSerializer, job_accepted
from apps.core.roles import OPERATOR
from apps.databases.models import DatabaseTarget
from apps.verification.jobs import VerifyBackupsJob
from apps.verification.models import VerificationLevel, VerificationResult, VerificationRun


class VerifyInputSerializer(serializers.Serializer):
    level = serializers.ChoiceField(
        choices=VerificationLevel.choices, default=VerificationLevel.CHECKSUM.value,
        help_text="exists: every artifact is there with its size; checksum (default): read back, SHA-256 matches; "
                  "decrypt: also decrypt, decompress and parse the dump, row counts match; restore: restore into a "
                  "scratch cluster that is removed afterwards, compare row counts and content hashes (logical) or "
                  "run amcheck on the started cluster (physical).",
    )


class VerifyAllInputSerializer(VerifyInputSerializer):
    target = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), required=False, allow_null=True, default=None,
        help_text="Only the backups of this target (all targets when omitted).",
        error_messages={"does_not_exist": "No database target named {value}."},
    )


class VerifyAcceptedSerializer(JobAcceptedSerializer):
    backups = serializers.IntegerField(help_text="How many backups the job verifies.")


class VerificationRunSerializer(serializers.ModelSerializer):
    backup = serializers.CharField(source="backup_id", read_only=True)
    location = serializers.CharField(source="location.name", read_only=True, allow_null=True)
    job = serializers.CharField(source="job_id", read_only=True, allow_null=True)
    details = serializers.DictField(read_only=True)

    class Meta:
        model = VerificationRun
        fields = ["id", "backup", "location", "level", "result", "bytes_read", "seconds", "details", "error", "job",
                  "created_at"]
        read_only_fields = fields


class VerificationRunFilter(django_filters.FilterSet):
    backup = django_filters.CharFilter(field_name="backup_id", help_text="Backup id.")
    level = django_filters.ChoiceFilter(choices=VerificationLevel.choices)
    result = django_filters.ChoiceFilter(choices=VerificationResult.choices)

    class Meta:
        model = VerificationRun
        fields = ["backup", "level", "result"]


def _accepted(job, count: int) -> Response:
    return Response(job_accepted(job, backups=count), status=status.HTTP_202_ACCEPTED)


class VerifyBackupView(ActorMixin, generics.GenericAPIView):
    """Verify every replica of one backup (operator)."""

    write_role = OPERATOR
    serializer_class = VerifyInputSerializer
    queryset = Backup.objects.all()

    @extend_schema(summary="Verify a backup", request=VerifyInputSerializer,
                   responses={202: VerifyAcceptedSerializer, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS})
    def post(self, request, pk: str):
        backup = get_object_or_404(Backup, pk=pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = VerifyBackupsJob.enqueue(backup_ids=[backup.pk], level=data.validated_data["level"], actor=self.actor)
        return _accepted(job, 1)


class VerifyAllView(ActorMixin, generics.GenericAPIView):
    """Verify every succeeded backup, or those of one target (operator)."""

    write_role = OPERATOR
    serializer_class = VerifyAllInputSerializer

    @extend_schema(summary="Verify all succeeded backups", request=VerifyAllInputSerializer,
                   responses={202: VerifyAcceptedSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS})
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = data.validated_data["target"]
        ids = list(
            backup_selectors.backups(target=target.name if target else None, status=BackupStatus.SUCCEEDED)
            .values_list("pk", flat=True)
        )
        job = VerifyBackupsJob.enqueue(backup_ids=ids, level=data.validated_data["level"], actor=self.actor)
        return _accepted(job, len(ids))


@extend_schema(summary="List verification runs",
               responses={200: VerificationRunSerializer(many=True), 400: FIELD_ERRORS, **COMMON_ERRORS})
class VerificationRunListView(generics.ListAPIView):
    """Verification runs, newest first: one per backup replica and level checked."""

    serializer_class = VerificationRunSerializer
    filterset_class = VerificationRunFilter

    def get_queryset(self):
        return VerificationRun.objects.select_related("location").order_by("-created_at", "-id")
