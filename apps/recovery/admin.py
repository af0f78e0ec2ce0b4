from django.contrib import admin, messages

from apps.core.admin_utils import RecordAdmin, admin_actor
from apps.recovery.models import DRDrill, DRPlan, Failover, RecoveryRun


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


@admin.register(DRPlan)
class DRPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "primary", "strategy", "auto_failover", "auto_failover_armed", "consecutive_failures",
                    "rpo_objective_seconds", "rto_objective_seconds", "last_health_at"]
    list_filter = ["strategy", "auto_failover"]
    filter_horizontal = ["standbys"]
    readonly_fields = ["consecutive_failures", "last_health_at", "last_health", "last_primary_lsn"]
    actions = ["rearm_auto_failover"]

    def save_model(self, request, obj, form, change):
        from apps.recovery import services  # on use, like every admin: start-up never needs it

        # Standbys are saved by save_related (the form's m2m); the plan's own checks and audit go through the service.
        services.save_plan(plan=obj, standbys=list(form.cleaned_data.get("standbys") or []),
                           actor=admin_actor(request))

    def delete_model(self, request, obj):
        from apps.recovery import services

        services.delete_plan(plan=obj, actor=admin_actor(request))

    @admin.action(description="Re-arm auto-failover (after checking the plan's standbys)")
    def rearm_auto_failover(self, request, queryset):
        from apps.recovery import failover

        for plan in queryset:
            failover.rearm(plan=plan, actor=admin_actor(request))
        messages.success(request, f"Re-armed {queryset.count()} plan(s).")


@admin.register(Failover)
class FailoverAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["id", "plan", "status", "automatic", "old_primary", "new_primary", "rto_seconds",
                    "data_loss_bytes", "created_at"]
    list_filter = ["status", "automatic", "plan"]


@admin.register(DRDrill)
class DRDrillAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["id", "plan", "status", "rto_seconds", "rpo_seconds", "objectives_met", "scratch_removed",
                    "created_at"]
    list_filter = ["status", "plan"]
