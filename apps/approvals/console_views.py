"""The console's approvals page: pending requests with approve / reject forms (CSRF-protected), and the
decided ones. Reads through apps.approvals.selectors, writes through its services."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.approvals import selectors, services
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.console.permissions import console_action, console_page
from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN


@console_page(role=ADMIN, what="The approvals page")
def approvals(request):
    rows = list(selectors.approval_requests()[:200])
    return render(request, "console/approvals.html", {
        "pending": [r for r in rows if r.status == ApprovalStatus.PENDING],
        "decided": [r for r in rows if r.status != ApprovalStatus.PENDING][:50],
    })


@console_action(ADMIN, what="Deciding an approval request")
@require_POST
def decide(request, pk: int, verb: str):
    decide = {"approve": services.approve, "reject": services.reject}.get(verb)
    row = get_object_or_404(ApprovalRequest, pk=pk)
    if decide is None:
        messages.error(request, f"No such decision: {verb}.")
        return redirect("console:approvals")
    try:
        row = decide(request=row, actor=admin_actor(request), note=request.POST.get("note", "")[:2000])
    except UserError as exc:
        messages.error(request, str(exc))
        return redirect("console:approvals")
    if row.status == ApprovalStatus.FAILED:
        messages.error(request, f"Request {row.pk} was approved but the action failed: {row.error}")
    elif row.result.get("job_id"):
        messages.success(request, f"Request {row.pk} {row.status}.")
        return redirect("console:job", job_id=row.result["job_id"])
    else:
        messages.success(request, f"Request {row.pk} {row.status}.")
    return redirect("console:approvals")
