from django.contrib import admin

from apps.core.admin_utils import RecordAdmin
from apps.core.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["at", "actor_name", "via", "action", "object_type", "object_id", "remote_addr"]
    list_filter = ["via", "action", "object_type"]
    search_fields = ["actor_name", "action", "object_id"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    # Append-only: nobody edits or deletes history, not even from the console.
    def has_delete_permission(self, request, obj=None):
        return False
