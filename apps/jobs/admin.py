from django.contrib import admin

from apps.core.admin_utils import RecordAdmin
from apps.jobs.models import Job


@admin.register(Job)
class JobAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["id", "type", "status", "progress", "requested_by", "via", "created_at", "finished_at"]
    list_filter = ["status", "type", "via"]
    search_fields = ["id", "type", "error"]
    readonly_fields = [f.name for f in Job._meta.fields] + ["progress"]
    date_hierarchy = "created_at"

    @admin.display(description="Progress")
    def progress(self, obj):
        pct = obj.percent
        done = f"{obj.progress_done:,} bytes"
        return f"{pct}% ({done})" if pct is not None else done
