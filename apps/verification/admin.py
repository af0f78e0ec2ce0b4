from django.contrib import admin

from apps.core.admin_utils import RecordAdmin
from apps.verification.models import VerificationRun


@admin.register(VerificationRun)
class VerificationRunAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["created_at", "backup", "location", "level", "result", "bytes_read", "seconds"]
    list_filter = ["result", "level", "location"]
    search_fields = ["backup__id", "error"]
    readonly_fields = [f.name for f in VerificationRun._meta.fields]
