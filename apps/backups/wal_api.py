"""REST API for the WAL archive: a target's recovery window, gaps and archiving lag (viewer)."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from apps.backups import wal_selectors
from apps.core.api import COMMON_ERRORS, ERROR_404
from apps.databases.models import DatabaseTarget

_LSN = "LSN as PostgreSQL writes it, e.g. 0/3000028."


class SpanSerializer(serializers.Serializer):
    base_backup_id = serializers.CharField()
    timeline = serializers.IntegerField()
    earliest_at = serializers.DateTimeField(allow_null=True, help_text="End of the base backup.")
    earliest_lsn = serializers.CharField(help_text=_LSN)
    latest_at = serializers.DateTimeField(allow_null=True, help_text="Last commit archived after it.")
    latest_lsn = serializers.CharField(help_text=f"End of the last continuous archived segment. {_LSN}")


class GapSerializer(serializers.Serializer):
    timeline = serializers.IntegerField()
    first_missing = serializers.CharField(help_text="First missing WAL segment.")
    last_missing = serializers.CharField()
    missing = serializers.IntegerField(help_text="Number of missing segments.")
    start_lsn = serializers.CharField(help_text=_LSN)
    end_lsn = serializers.CharField(help_text=_LSN)


class ArchiveLagSerializer(serializers.Serializer):
    files = serializers.IntegerField(help_text="Archived WAL files (segments, history files, labels).")
    last_archived = serializers.CharField(allow_null=True)
    last_archived_at = serializers.DateTimeField(allow_null=True)
    archive_lag_seconds = serializers.FloatField(
        allow_null=True, help_text="Seconds since a WAL file was last archived (an idle database archives nothing).")
    last_commit_at = serializers.DateTimeField(allow_null=True)
    last_commit_age_seconds = serializers.FloatField(
        allow_null=True, help_text="Seconds since the newest commit the archive holds.")


class RecoveryWindowSerializer(serializers.Serializer):
    target = serializers.CharField()
    recoverable = serializers.BooleanField(help_text="Whether any point can be recovered (needs a base backup).")
    earliest_at = serializers.DateTimeField(allow_null=True, help_text="Earliest point in time of the window.")
    earliest_lsn = serializers.CharField(allow_null=True, help_text=_LSN)
    latest_at = serializers.DateTimeField(allow_null=True, help_text="Latest point in time: the last commit archived.")
    latest_lsn = serializers.CharField(allow_null=True, help_text=_LSN)
    base_backup_id = serializers.CharField(allow_null=True, help_text="Base backup the window starts from.")
    timeline = serializers.IntegerField(allow_null=True)
    spans = SpanSerializer(many=True, help_text="Every recoverable stretch, oldest first; the last is the window. "
                                                "Older ones are cut off by gaps.")
    gaps = GapSerializer(many=True, help_text="Missing WAL segments between archived ones.")
    unusable_backups = serializers.DictField(child=serializers.CharField(),
                                             help_text="Base backup id -> why no archived WAL serves it.")
    archive = ArchiveLagSerializer()


class RecoveryWindowView(generics.GenericAPIView):
    """The points in time a target can be recovered to (point-in-time recovery), its WAL gaps and archiving lag."""

    queryset = DatabaseTarget.objects.all()
    serializer_class = RecoveryWindowSerializer

    @extend_schema(summary="Recovery window of a database target",
                   responses={200: RecoveryWindowSerializer, 404: ERROR_404, **COMMON_ERRORS})
    def get(self, request, pk: str):
        target = self.get_object()
        body = wal_selectors.recovery_window(target).as_dict()
        body["archive"] = wal_selectors.archive_status(target)
        return Response(RecoveryWindowSerializer(body).data)
