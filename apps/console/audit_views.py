"""The audit log page: every recorded action, filtered by user, action, object and time range with the same
filter (and selector) as GET /v1/audit/. Admin only, as in the API: it names people and addresses."""
from django.core.paginator import Paginator
from django.shortcuts import render

from apps.console.permissions import console_page
from apps.core import selectors
from apps.core.audit_api import AuditEventFilter
from apps.core.roles import ADMIN


@console_page(role=ADMIN, what="Reading the audit log")
def audit_log(request):
    filtered = AuditEventFilter(request.GET, queryset=selectors.audit_events())
    valid = filtered.is_valid()
    qs = filtered.qs if valid else selectors.audit_events().none()
    page = Paginator(qs, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "console/audit.html", {"filter": filtered, "page": page, "query": query.urlencode()},
                  status=200 if valid else 400)
