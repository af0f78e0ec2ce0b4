"""REST API for retention: rules (CRUD), enforcement (dry run inline, real run as a job), lifecycle statistics."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.core.api import COMMON_ERRORS, FIELD_ERRORS, ActorMixin, JobAcceptedSerializer, crud_schema, job_accepted
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.databases.models import DatabaseTarget
from apps.retention import selectors, services
from apps.retention.jobs import EnforceRetentionJob
from apps.retention.models import RetentionRule


class RetentionRuleSerializer(serializers.ModelSerializer):
    target = serializers.SlugRelatedField(
        source="database_target", slug_field="name", queryset=DatabaseTarget.objects.all(), required=False,
        allow_null=True, help_text="Target this rule governs; null: the default rule for every other target.",
        error_messages={"does_not_exist": "No database target named {value}."},
    )

    class Meta:
        model = RetentionRule
        fields = ["id", "name", "target", "daily_days", "incremental_days", "weekly_weeks", "monthly_months",
                  "monthly_then", "archive_years", "keep_last_fulls", "pitr_window_days", "enabled", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


@crud_schema(RetentionRuleSerializer, "retention rule", delete_note=" (not the default one)")
class RetentionRuleViewSet(ActorMixin, viewsets.ModelViewSet):
    """How long backups are kept, per target (or the default rule). Reads: viewer; writes: admin; audited."""

    queryset = RetentionRule.objects.select_related("database_target").order_by("name")
    serializer_class = RetentionRuleSerializer
    write_role = ADMIN

    def perform_create(self, serializer):
        serializer.instance = services.save_rule(rule=RetentionRule(**serializer.validated_data), actor=self.actor)

    def perform_update(self, serializer):
        rule = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(rule, field, value)
        serializer.instance = services.save_rule(rule=rule, actor=self.actor)

    def perform_destroy(self, instance):
        services.delete_rule(rule=instance, actor=self.actor)


class EnforceInputSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(help_text="true: only list the decisions (operator), answered at once. false: "
                                       "enforce them (admin); answers 202 with the job. Required: a request never "
                                       "deletes by default.")
    target = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), required=False, allow_null=True, default=None,
        help_text="Only the backups of this target (all targets when omitted).",
        error_messages={"does_not_exist": "No database target named {value}."},
    )


class DecisionSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    target = serializers.CharField()
    action = serializers.ChoiceField(choices=["keep", "archive", "delete"])
    rule = serializers.CharField(help_text="The retention rule that governs the backup.")
    reason = serializers.CharField(help_text="Which part of the rule (or which protection) decided.")
    size = serializers.IntegerField(help_text="Stored bytes.")


class PreviewSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Backups per action.")
    bytes = serializers.DictField(child=serializers.IntegerField(), help_text="Stored bytes per action.")
    decisions = DecisionSerializer(many=True)
    wal_deletions = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                          help_text="WAL files per target the PITR window no longer needs.")
    pitr_bases = serializers.DictField(child=serializers.CharField(allow_null=True),
                                       help_text="Per target, the base backup the PITR window starts from.")


class EnforcePoliciesView(ActorMixin, generics.GenericAPIView):
    """Enforce the retention rules. A dry run (operator) answers at once with every backup's decision; a real
    run (admin) is a job: deletes from every location, archives, audits each backup."""

    write_role = OPERATOR
    serializer_class = EnforceInputSerializer

    @extend_schema(summary="Enforce retention policies", request=EnforceInputSerializer,
                   responses={200: PreviewSerializer, 202: JobAcceptedSerializer, 400: FIELD_ERRORS, **COMMON_ERRORS})
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = data.validated_data["target"]
        if data.validated_data["dry_run"]:
            return Response(PreviewSerializer(services.preview(target=target)).data)
        if not has_role(request.user, ADMIN):
            raise PermissionDenied("Enforcing retention (deleting backups) needs the admin role; a dry run does not.")
        job = EnforceRetentionJob.enqueue(target=target, actor=self.actor)
        return Response(job_accepted(job), status=status.HTTP_202_ACCEPTED)


class CountBytesSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    bytes = serializers.IntegerField()


class TierSerializer(CountBytesSerializer):
    location = serializers.CharField()
    tier = serializers.CharField(help_text="Storage class / access tier; `default` when never changed.")


class AgeBandSerializer(CountBytesSerializer):
    band = serializers.CharField()


class TargetLifecycleSerializer(CountBytesSerializer):
    target = serializers.CharField()
    archived = serializers.IntegerField()
    oldest_at = serializers.DateTimeField(allow_null=True)
    newest_at = serializers.DateTimeField(allow_null=True)


class NextActionSerializer(CountBytesSerializer):
    backup_ids = serializers.ListField(child=serializers.CharField())


class NextRunSerializer(serializers.Serializer):
    delete = NextActionSerializer()
    archive = NextActionSerializer()


class WalLifecycleSerializer(CountBytesSerializer):
    next_run_deletes = serializers.IntegerField()


class LifecycleStatsSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    by_status = serializers.DictField(child=CountBytesSerializer(), help_text="Database backups per status.")
    by_tier = TierSerializer(many=True, help_text="Present copies of succeeded backups per location and tier.")
    by_age = AgeBandSerializer(many=True, help_text="Succeeded backups per age band.")
    targets = TargetLifecycleSerializer(many=True)
    wal = WalLifecycleSerializer()
    next_run = NextRunSerializer(help_text="What the next enforcement would delete and archive.")


class LifecycleStatsView(generics.GenericAPIView):
    """Where the backups are in their life: counts and bytes per status, tier and age; what goes next."""

    serializer_class = LifecycleStatsSerializer

    @extend_schema(summary="Backup lifecycle statistics", responses={200: LifecycleStatsSerializer, **COMMON_ERRORS})
    def get(self, request):
        return Response(LifecycleStatsSerializer(selectors.lifecycle_stats()).data)
