"""REST API of disaster recovery: plans (CRUD), failover, status, drills (the seed's …/disaster-recovery/...)."""
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
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
from apps.core.errors import NotFound
from apps.core.roles import ADMIN, OPERATOR
from apps.databases.models import DatabaseTarget
from apps.recovery import selectors, services
from apps.recovery.jobs import DrillJob, FailoverJob
from apps.recovery.models import DRDrill, DRPlan, Failover


class DRPlanSerializer(serializers.ModelSerializer):
    primary = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), help_text="Name of the primary's target.",
        error_messages={"does_not_exist": "No database target named {value}."})
    standbys = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), many=True, required=False,
        help_text="Names of the standby targets (streaming replicas of the primary).")
    switch_hook_command = serializers.ListField(
        child=serializers.CharField(max_length=1024), required=False, max_length=64,
        help_text="Program (absolute path) and arguments, run without a shell; the new primary is in DR_NEW_PRIMARY_* "
                  "environment variables.")
    drill_tables = serializers.ListField(child=serializers.CharField(max_length=127), required=False, max_length=200)
    notification_channels = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=32,
        help_text="Names of notification channels (the monitoring app's) to tell about failovers and drills.")

    class Meta:
        model = DRPlan
        fields = ["id", "name", "description", "primary", "standbys", "strategy", "rpo_objective_seconds",
                  "rto_objective_seconds", "fence", "max_lag_bytes", "catchup_seconds", "switch_hook_command",
                  "switch_hook_url", "switch_hook_timeout_seconds", "auto_failover", "auto_failover_armed",
                  "failure_threshold", "health_timeout_seconds", "consecutive_failures", "last_health_at",
                  "drills_enabled", "drill_tables", "drill_probe_sql", "notification_channels",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "consecutive_failures", "last_health_at", "created_at", "updated_at"]

    def validate(self, data):
        instance = self.instance
        primary = data.get("primary", instance.primary if instance else None)
        standbys = data.get("standbys", list(instance.standbys.all()) if instance else [])
        checked(services.check_plan_fields, primary=primary, standbys=standbys,
                switch_hook_command=data.get("switch_hook_command", instance.switch_hook_command if instance else []),
                drill_tables=data.get("drill_tables", instance.drill_tables if instance else []),
                notification_channels=data.get("notification_channels",
                                                instance.notification_channels if instance else []))
        return data


@crud_schema(DRPlanSerializer, "DR plan", delete_note=" (not while a failover or drill runs)")
class DRPlanViewSet(ActorMixin, viewsets.ModelViewSet):
    """Disaster-recovery plans. Reads: viewer; writes: admin. Every write is audited."""

    queryset = DRPlan.objects.select_related("primary").prefetch_related("standbys").order_by("name")
    serializer_class = DRPlanSerializer
    filterset_fields = ["name", "strategy", "auto_failover"]

    def _save(self, serializer, plan: DRPlan):
        data = dict(serializer.validated_data)
        standbys = data.pop("standbys", None)
        for field, value in data.items():
            setattr(plan, field, value)
        serializer.instance = services.save_plan(plan=plan, standbys=standbys, actor=self.actor)

    def perform_create(self, serializer):
        self._save(serializer, DRPlan())

    def perform_update(self, serializer):
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance):
        services.delete_plan(plan=instance, actor=self.actor)


class FailoverInputSerializer(serializers.Serializer):
    plan = serializers.PrimaryKeyRelatedField(queryset=DRPlan.objects.all(), help_text="The plan's id.",
                                              error_messages={"does_not_exist": "No DR plan with id {pk_value}."})
    confirm = serializers.CharField(max_length=64, help_text="The plan's name, typed again: failover cannot be undone.")
    standby = serializers.SlugRelatedField(
        slug_field="name", queryset=DatabaseTarget.objects.all(), required=False, allow_null=True,
        help_text="Promote this standby (default: the healthy one least behind).",
        error_messages={"does_not_exist": "No database target named {value}."})

    def validate(self, data):
        if data["confirm"] != data["plan"].name:
            raise serializers.ValidationError({"confirm": "Type the plan's name exactly to confirm the failover."})
        return data


class FailoverAcceptedSerializer(JobAcceptedSerializer):
    failover_id = serializers.CharField()


class FailoverView(ActorMixin, generics.GenericAPIView):
    """Fail a plan over to a standby (admin): fence, promote, switch hook, verified write; a job."""

    write_role = ADMIN
    serializer_class = FailoverInputSerializer

    @extend_schema(summary="Fail over to a standby", request=FailoverInputSerializer,
                   responses={202: FailoverAcceptedSerializer, 400: FIELD_ERRORS, 409: ERROR_409, **COMMON_ERRORS})
    def post(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = FailoverJob.enqueue(plan=v["plan"], standby=v.get("standby"), actor=self.actor)
        return Response(job_accepted(job, failover_id=job.args["failover_id"]), status=status.HTTP_202_ACCEPTED)


class DrillAcceptedSerializer(JobAcceptedSerializer):
    drill_id = serializers.CharField()


class DrillView(ActorMixin, APIView):
    """Drill a plan now (operator): restore into a scratch cluster, check, measure RTO/RPO, tear down; a job."""

    write_role = OPERATOR

    @extend_schema(summary="Run a DR drill", request=None,
                   responses={202: DrillAcceptedSerializer, 404: ERROR_404, 409: ERROR_409, **COMMON_ERRORS})
    def post(self, request, plan_id: str):
        # Matched as text so that authentication and roles are checked first whatever the id looks like.
        numeric = plan_id.isascii() and plan_id.isdigit() and len(plan_id) < 19
        plan = get_object_or_404(DRPlan, pk=int(plan_id)) if numeric else None
        if plan is None:
            raise NotFound(f"No DR plan with id {plan_id[:40]!r}.")
        job = DrillJob.enqueue(plan=plan, actor=self.actor)
        return Response(job_accepted(job, drill_id=job.args["drill_id"]), status=status.HTTP_202_ACCEPTED)


STATUS_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT, description="{plans: [...]}: per plan the primary's and standbys' health and lag, "
                                     "objectives, last drill and failover, and the recoverable window.")


class StatusView(APIView):
    """Disaster-recovery status of every plan, read live from the servers (viewer)."""

    @extend_schema(summary="Disaster-recovery status", responses={200: STATUS_RESPONSE, **COMMON_ERRORS})
    def get(self, request):
        return Response({"plans": [selectors.plan_status(p) for p in selectors.plans()]})


class DrillSerializer(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.name", read_only=True)
    # Plain text in the schema: as an enum it would clash with the other "status" enums' name.
    status = serializers.CharField(read_only=True, help_text="pending, running, passed or failed.")

    class Meta:
        model = DRDrill
        fields = ["id", "plan", "status", "job", "recovery", "base_backup", "started_at", "finished_at",
                  "rto_seconds", "rpo_seconds", "last_commit_at", "checks", "objectives_met", "reasons",
                  "scratch_removed", "error"]
        read_only_fields = fields


class FailoverSerializer(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.name", read_only=True)
    old_primary = serializers.CharField(source="old_primary.name", read_only=True, allow_null=True)
    new_primary = serializers.CharField(source="new_primary.name", read_only=True, allow_null=True)
    status = serializers.CharField(read_only=True, help_text="pending, running, succeeded or failed.")

    class Meta:
        model = Failover
        fields = ["id", "plan", "status", "automatic", "job", "old_primary", "new_primary", "started_at",
                  "promoted_at", "finished_at", "fenced", "lag_bytes_at_start", "lag_seconds_at_start",
                  "old_primary_lsn", "promoted_lsn", "data_loss_bytes", "promote_seconds", "rto_seconds",
                  "hook_result", "error"]
        read_only_fields = fields


@extend_schema(summary="List DR drills", responses={200: DrillSerializer(many=True), **COMMON_ERRORS})
class DrillListView(generics.ListAPIView):
    """Drills, newest first, with measured RTO/RPO and why a drill failed."""

    serializer_class = DrillSerializer
    queryset = DRDrill.objects.select_related("plan")


@extend_schema(summary="List failovers", responses={200: FailoverSerializer(many=True), **COMMON_ERRORS})
class FailoverListView(generics.ListAPIView):
    """Failovers, newest first, with measured RTO and data-loss window."""

    serializer_class = FailoverSerializer
    queryset = Failover.objects.select_related("plan", "old_primary", "new_primary")
    filterset_fields = ["status"]
