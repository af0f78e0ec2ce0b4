"""JSON errors for every failure: field errors for bad input, a clear message otherwise, never an HTML 500."""
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import ConflictError, Deferred, NotFound, UserError

log = logging.getLogger(__name__)


def _bad_request(exc) -> Response | None:
    """Requests Django or the parser refuse (too big, too many fields, nested too deeply): 413 or 400."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": f"The request body is too large (at most {limit} bytes)."},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response({"detail": "The request has too many parameters or fields."},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "The request was refused as malformed."}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RecursionError):
        return Response({"detail": "The request is nested too deeply."}, status=status.HTTP_400_BAD_REQUEST)
    return None


def exception_handler(exc, context):
    if (response := _bad_request(exc)) is not None:
        return response
    if isinstance(exc, Deferred):
        return Response(exc.body, status=status.HTTP_202_ACCEPTED)
    if isinstance(exc, ConflictError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, NotFound):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, UserError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "message_dict") else exc.messages)
    if isinstance(exc, IntegrityError):
        return Response({"detail": "The request conflicts with existing data."}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = drf_exception_handler(exc, context)
        if response is not None:
            # The JWT scheme is announced so that session-less clients get 401, not 403.
            response.status_code = status.HTTP_401_UNAUTHORIZED
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("Unhandled API error")
        return Response({"detail": "Internal error; see the server log."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return response


# --- errors raised outside DRF views (no URL matched, an id of the wrong shape, a crash) ----------------

API_PREFIXES = ("/v1/", "/api/")


def _json_or(default_view, status_code: int, detail: str):
    """A Django error handler: JSON under the API's prefixes, Django's own page elsewhere (console, admin)."""

    def view(request, exception=None):
        if request.path.startswith(API_PREFIXES):
            return JsonResponse({"detail": detail}, status=status_code)
        return default_view(request, exception) if exception is not None else default_view(request)

    return view


bad_request = _json_or(defaults.bad_request, 400, "Bad request.")
permission_denied = _json_or(defaults.permission_denied, 403, "Your role does not allow this action.")
page_not_found = _json_or(defaults.page_not_found, 404, "Not found.")
server_error = _json_or(defaults.server_error, 500, "Internal error; it was logged.")
