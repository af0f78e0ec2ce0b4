"""Shared pieces of the REST API: the audit actor of a request, links, and the shapes of common responses."""
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from apps.core.errors import UserError
from apps.core.models import Interface
from apps.core.services import Actor, request_actor


def api_actor(request) -> Actor:
    """Who calls, for services and the audit log: the authenticated user, via the API, from this address."""
    return request_actor(request, via=Interface.API)


def checked(check, *args, **kwargs):
    """check(*args, **kwargs) for a serializer: its UserError (a service's own check) becomes a field error."""
    try:
        return check(*args, **kwargs)
    except UserError as exc:
        raise serializers.ValidationError(str(exc)) from None


def job_link(job_id: str) -> str:
    return reverse("v1:job-detail", kwargs={"pk": job_id})


def backup_link(backup_id: str) -> str:
    return reverse("v1:backup-detail", kwargs={"pk": backup_id})


class ErrorSerializer(serializers.Serializer):
    """Every error that is not a field error: a human-readable message."""

    detail = serializers.CharField()


class AcceptedLinksSerializer(serializers.Serializer):
    job = serializers.CharField(help_text="Poll this for status, progress, log and result.")
    backup = serializers.CharField(required=False, help_text="The backup this job works on, when there is one.")


class JobAcceptedSerializer(serializers.Serializer):
    """Answer to a request that starts long work: the job to poll."""

    job_id = serializers.CharField()
    status = serializers.CharField(help_text="Job status when answered: queued, running, succeeded or failed.")
    links = AcceptedLinksSerializer()


def job_accepted(job, **extra) -> dict:
    return {"job_id": job.pk, "status": job.status, **extra, "links": {"job": job_link(job.pk)}}


class ActorMixin:
    """For views: `self.actor` is the audit actor of the current request."""

    @property
    def actor(self) -> Actor:
        return api_actor(self.request)


# Responses shared by the operation descriptions of the schema.
FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Bad input: a list of messages per field (or `detail` for a request that cannot be carried out).",
)
ERROR_401 = OpenApiResponse(ErrorSerializer, description="Not authenticated.")
ERROR_403 = OpenApiResponse(ErrorSerializer, description="Your role does not allow this action.")
ERROR_404 = OpenApiResponse(ErrorSerializer, description="No such object.")
ERROR_409 = OpenApiResponse(ErrorSerializer, description="The action clashes with the current state.")
COMMON_ERRORS = {401: ERROR_401, 403: ERROR_403}


def crud_schema(serializer, noun: str, *, plural: str | None = None, deletable: bool = True, delete_note: str = ""):
    """Schema descriptions of a configuration viewset (reads: viewer; writes: admin)."""
    plural = plural or f"{noun}s"
    one = {200: serializer, 404: ERROR_404, **COMMON_ERRORS}
    changed = {200: serializer, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS}
    views = dict(
        list=extend_schema(summary=f"List {plural}", responses={200: serializer(many=True), **COMMON_ERRORS}),
        retrieve=extend_schema(summary=f"Show a {noun}", responses=one),
        create=extend_schema(summary=f"Add a {noun} (admin)",
                             responses={201: serializer, 400: FIELD_ERRORS, **COMMON_ERRORS}),
        update=extend_schema(summary=f"Replace a {noun} (admin)", responses=changed),
        partial_update=extend_schema(summary=f"Change a {noun} (admin)", responses=changed),
    )
    if deletable:
        views["destroy"] = extend_schema(summary=f"Delete a {noun}{delete_note} (admin)",
                                         responses={204: None, 400: FIELD_ERRORS, 404: ERROR_404, **COMMON_ERRORS})
    return extend_schema_view(**views)
