from django.db.models import QuerySet

from apps.approvals.models import ApprovalRequest


def approval_requests(*, status: str | None = None) -> QuerySet[ApprovalRequest]:
    """Newest first; pending requests past their time are shown expired (services.expire_stale runs first)."""
    from apps.approvals.services import expire_stale

    expire_stale()
    qs = ApprovalRequest.objects.order_by("-created_at", "-id")
    return qs.filter(status=status) if status else qs
