from django.urls import path

from apps.approvals import console_views as approval_views
from apps.console import dr_views, monitoring_views, retention_views, views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("targets/<int:target_id>/backup/", views.backup_now, name="backup-now"),
    path("jobs/<ulid:job_id>/", views.job_detail, name="job"),
    path("backups/<ulid:backup_id>/", views.backup_detail, name="backup"),
    path("backups/<ulid:backup_id>/verify/", views.verify_now, name="verify"),
    path("retention/", retention_views.retention, name="retention"),
    path("monitoring/", monitoring_views.monitoring_dashboard, name="monitoring"),
    path("monitoring/alerts/", monitoring_views.alert_list, name="alerts"),
    path("monitoring/alerts/<ulid:alert_id>/<str:verb>/", monitoring_views.alert_action, name="alert-action"),
    path("dr/", dr_views.dr_status, name="dr-status"),
    path("dr/platform/", dr_views.dr_platform, name="dr-platform"),
    path("dr/plans/<int:plan_id>/drill/", dr_views.dr_drill, name="dr-drill"),
    path("dr/plans/<int:plan_id>/failover/", dr_views.dr_failover, name="dr-failover"),
    # Two-person approval (apps/approvals)
    path("approvals/", approval_views.approvals, name="approvals"),
    path("approvals/<int:pk>/<str:verb>/", approval_views.decide, name="approval-decide"),
]
