"""REST API for point-in-time recovery (the seed's POST …/disaster-recovery/point-in-time-recovery) and its runs."""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from apps.core.api import COMMON_ERRORS, FIELD_ERRORS, ActorMixin, JobAcceptedSerializer, checked, job_accepted
from apps.core.roles import ADMIN
from apps.databases import identifiers
from apps.databases.models import DatabaseTarget
from apps.recovery import selectors
from apps.recovery.jobs import PointInTimeRecoveryJob
from apps.recovery.models import RecoveryRun
from apps.recovery.targets import parse_target


class PitrInputSerializer(serializers.Serializer):
    target = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), help_text="Database target to recover.",
        error_messages={"does_not_exist": "No database target named {value}."},
    )
    target_time = serializers.CharField(required=False, allow_blank=True,
                                        help_text="ISO 8601 with a UTC offset, e.g. 2026-11-25T12:00:00+00:00.")
    target_lsn = serializers.CharField(required=False, allow_blank=True, help_text="e.g. 0/3000060")
    target_name = serializers.CharField(required=False, allow_blank=True,
                                        help_text="A restore point made with pg_create_restore_point().")
    inclusive = serializers.BooleanField(default=True, help_text="Stop just after the target (else just before).")
    directory = serializers.CharField(
        max_length=63, help_text="Name of the new data directory, under the server's RECOVERY_ROOT.")
    port = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=65535)
    start = serializers.BooleanField(default=True, help_text="Start the recovered cluster and wait until ready.")
    table = serializers.CharField(required=False, allow_blank=True, max_length=127,
                                  help_text="SCHEMA.TABLE to copy back into the target's database, then discard "
                                            "the recovered cluster.")
    rename = serializers.CharField(required=False, allow_blank=True, max_length=63,
                                   help_text="With `table`: copy under this name instead of replacing its rows.")

    def validate_directory(self, value):
        return checked(identifiers.check_name, value, what="directory")

    def validate_table(self, value):
        if value:
            checked(identifiers.check_table, value)
        return value

    def validate_rename(self, value):
        if value:
            checked(identifiers.check_name, value, what="table")
        return value

    def validate(self, data):
        data["goal"] = checked(parse_target, time=data.get("target_time"), lsn=data.get("target_lsn"),
                                name=data.get("target_name"), inclusive=data["inclusive"])
        if data.get("rename") and not data.get("table"):
            raise serializers.ValidationError({"rename": "rename goes with table."})
        return data


class RecoveryRunSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="database_target.name", read_only=True)
    base_backup = serializers.CharField(source="base_backup_id", read_only=True, allow_null=True)
    job = serializers.CharField(source="job_id", read_only=True, allow_null=True)

    class Meta:
        model = RecoveryRun
        fields = ["id", "target", "kind", "status", "target_time", "target_lsn", "target_name", "inclusive",
                  "base_backup", "pgdata", "port", "table", "table_destination", "job", "started_at", "finished_at",
                  "restore_seconds", "replay_seconds", "reached", "error"]
        read_only_fields = fields


class PitrAcceptedSerializer(JobAcceptedSerializer):
    recovery_id = serializers.CharField()


class PointInTimeRecoveryView(ActorMixin, generics.GenericAPIView):
    """Recover a target to a point in time into a new data directory on the worker's machine (admin)."""

    write_role = ADMIN
    serializer_class = PitrInputSerializer

    @extend_schema(summary="Point-in-time recovery", request=PitrInputSerializer,
                   responses={202: PitrAcceptedSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS})
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        root = settings.RECOVERY_ROOT
        root.mkdir(parents=True, exist_ok=True)
        job = PointInTimeRecoveryJob.enqueue(
            target=v["target"], goal=v["goal"], pgdata=str(root / v["directory"]), port=v.get("port"),
            start=v["start"], table=v.get("table") or None, rename=v.get("rename") or None, actor=self.actor,
        )
        return Response(job_accepted(job, recovery_id=job.args["recovery_id"]), status=status.HTTP_202_ACCEPTED)


@extend_schema(summary="List recovery runs", responses={200: RecoveryRunSerializer(many=True), **COMMON_ERRORS})
class RecoveryRunListView(generics.ListAPIView):
    """Point-in-time and single-table recoveries, newest first, with what they reached and how long they took."""

    serializer_class = RecoveryRunSerializer

    def get_queryset(self):
        return selectors.recovery_runs(target=self.request.query_params.get("target") or None)
