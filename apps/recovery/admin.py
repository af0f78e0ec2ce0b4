from django.contrib import admin

from apps.recovery.models import RecoveryRun


@admin.register(RecoveryRun)
class RecoveryRunAdmin(admin.ModelAdmin):
    list_display = ["id", "database_target", "kind", "status", "target_description", "base_backup", "pgdata",
                    "restore_seconds", "replay_seconds", "created_at"]
    list_filter = ["status", "kind", "database_target"]
    readonly_fields = [f.name for f in RecoveryRun._meta.fields]

    def has_add_permission(self, request):
        return False  # recoveries are requested with `pitr` or the API, which check them

    def has_change_permission(self, request, obj=None):
        return False
