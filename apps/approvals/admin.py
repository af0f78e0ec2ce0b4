from django.contrib import admin

from apps.approvals.models import ApprovalRequest
from apps.core.admin_utils import RecordAdmin


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(RecordAdmin, admin.ModelAdmin):
    """Read-only: requests are decided on the console's approvals page or through the API (audited)."""

    list_display = ["id", "action", "summary", "status", "requested_by_name", "decided_by_name", "created_at",
                    "expires_at"]
    list_filter = ["status", "action"]
    search_fields = ["summary", "requested_by_name", "decided_by_name", "object_id"]
