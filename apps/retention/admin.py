from django.contrib import admin

from apps.core.admin_utils import admin_actor
from apps.retention.models import RetentionRule


@admin.register(RetentionRule)
class RetentionRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "database_target", "daily_days", "incremental_days", "weekly_weeks", "monthly_months",
                    "monthly_then", "archive_years", "keep_last_fulls", "pitr_window_days", "enabled"]
    list_filter = ["enabled", "monthly_then"]

    def save_model(self, request, obj, form, change):
        from apps.retention import services

        services.save_rule(rule=obj, actor=admin_actor(request))

    def delete_model(self, request, obj):
        from apps.retention import services

        services.delete_rule(rule=obj, actor=admin_actor(request))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.database_target_id is not None)
