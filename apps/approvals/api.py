"""REST API of two-person approval (admin only): list and show requests, approve (runs the action) or reject."""
import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.approvals import selectors, services
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.core.api import COMMON_ERRORS, ERROR_404, ERROR_409, FIELD_ERRORS, ActorMixin
from apps.core.roles import ADMIN


class ApprovalRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by_name", read_only=True)
    decided_by = serializers.CharField(source="decided_by_name", read_only=True)
    parameters = serializers.DictField(read_only=True)
    result = serializers.DictField(read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = ["id", "action", "summary", "parameters", "object_type", "object_id", "status", "requested_by",
                  "requested_via", "created_at", "expires_at", "decided_by", "decided_at", "note", "result", "error"]
        read_only_fields = fields


class ApprovalPendingSerializer(serializers.Serializer):
    """Answer to a destructive request the policy holds for a second admin (202)."""

    approval_request = serializers.IntegerField(help_text="Id of the ApprovalRequest (GET /v1/approvals/{id}).")
    status = serializers.CharField(help_text="Always `pending`.")
    expires_at = serializers.DateTimeField()
    detail = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ApprovalFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalStatus.choices)
    action = django_filters.CharFilter(lookup_expr="startswith", help_text="Action name or its beginning.")
    requested_by = django_filters.CharFilter(field_name="requested_by_name", help_text="Username.")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "action", "requested_by"]


@extend_schema_view(
    list=extend_schema(summary="List approval requests (admin)",
                       responses={200: ApprovalRequestSerializer(many=True), 400: FIELD_ERRORS, **COMMON_ERRORS}),
    retrieve=extend_schema(summary="Show an approval request (admin)",
                           responses={200: ApprovalRequestSerializer, 404: ERROR_404, **COMMON_ERRORS}),
)
class ApprovalRequestViewSet(viewsets.ReadOnlyModelViewSet):
    """Destructive actions waiting for (or decided by) a second admin, newest first."""

    serializer_class = ApprovalRequestSerializer
    filterset_class = ApprovalFilter
    read_role = ADMIN

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no database reads
            return ApprovalRequest.objects.none()
        return selectors.approval_requests()


class _DecisionView(ActorMixin, generics.GenericAPIView):
    write_role = ADMIN
    serializer_class = DecisionSerializer
    decide = None

    def post(self, request, pk: int):
        row = get_object_or_404(ApprovalRequest, pk=pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = type(self).decide(request=row, actor=self.actor, note=data.validated_data["note"])
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(ApprovalRequestSerializer(row).data)


DECISION_ERRORS = {400: FIELD_ERRORS, 404: ERROR_404, 409: ERROR_409, **COMMON_ERRORS}


class ApproveView(_DecisionView):
    """Approve a pending request of another admin: the action runs now with the stored parameters (status
    `executed` with its result, e.g. a job id, or `failed` with the error). 403 for one's own request; 409 when
    it is expired or already decided."""

    decide = staticmethod(services.approve)

    @extend_schema(summary="Approve an approval request (admin, not the requester)", request=DecisionSerializer,
                   responses={200: ApprovalRequestSerializer, **DECISION_ERRORS})
    def post(self, request, pk: int):
        return super().post(request, pk)


class RejectView(_DecisionView):
    """Reject a pending request (the requester may reject, i.e. withdraw, their own); nothing is done."""

    decide = staticmethod(services.reject)

    @extend_schema(summary="Reject an approval request (admin)", request=DecisionSerializer,
                   responses={200: ApprovalRequestSerializer, **DECISION_ERRORS})
    def post(self, request, pk: int):
        return super().post(request, pk)
