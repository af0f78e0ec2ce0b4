from django.urls import path

from apps.approvals import console_views as approval_views
from apps.console import (audit_views, document_views, dr_views, monitoring_views, pitr_views, retention_views,
                          target_views, views)

app_name = "console"

# State-changing views carry @console_action(role) (apps/console/permissions.py): permissions.actions() lists them.
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/charts.json", views.dashboard_charts, name="dashboard-charts"),
    path("targets/<int:target_id>/", target_views.target_detail, name="target"),
    path("targets/<int:target_id>/backup/", views.backup_now, name="backup-now"),
    path("documents/<int:source_id>/", document_views.source_detail, name="source"),
    path("documents/<int:source_id>/backup/", document_views.source_backup, name="source-backup"),
    path("documents/<int:source_id>/restore/", document_views.version_restore, name="version-restore"),
    path("documents/<int:source_id>/versions/<ulid:version_id>/verify/", document_views.version_verify,
         name="version-verify"),
    path("jobs/<ulid:job_id>/", views.job_detail, name="job"),
    path("jobs/<ulid:job_id>/progress.json", views.job_progress, name="job-progress"),
    path("backups/<ulid:backup_id>/", views.backup_detail, name="backup"),
    path("backups/<ulid:backup_id>/verify/", views.verify_now, name="verify"),
    path("recovery/pitr/", pitr_views.pitr_wizard, name="pitr"),
    path("retention/", retention_views.retention, name="retention"),
    path("monitoring/", monitoring_views.monitoring_dashboard, name="monitoring"),
    path("monitoring/alerts/", monitoring_views.alert_list, name="alerts"),
    path("monitoring/alerts/<ulid:alert_id>/<str:verb>/", monitoring_views.alert_action, name="alert-action"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("dr/", dr_views.dr_status, name="dr-status"),
    path("dr/platform/", dr_views.dr_platform, name="dr-platform"),
    path("dr/plans/<int:plan_id>/", dr_views.dr_plan, name="dr-plan"),
    path("dr/plans/<int:plan_id>/drill/", dr_views.dr_drill, name="dr-drill"),
    path("dr/plans/<int:plan_id>/failover/", dr_views.dr_failover, name="dr-failover"),
    # Two-person approval (apps/approvals)
    path("approvals/", approval_views.approvals, name="approvals"),
    path("approvals/<int:pk>/<str:verb>/", approval_views.decide, name="approval-decide"),
]
