"""Version 1 of the REST API: every app contributes its routes here."""
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from apps.approvals import api as approvals
from apps.backups import api as backups
from apps.backups import wal_api
from apps.core.audit_api import AuditEventViewSet
from apps.core.auth import LoginRateThrottle, LoginUsernameRateThrottle
from apps.databases.api import DatabaseTargetViewSet
from apps.documents import api as documents
from apps.jobs.api import JobViewSet
from apps.monitoring import api as monitoring
from apps.recovery import api as recovery
from apps.recovery import dr_api
from apps.retention import api as retention
from apps.storage.api import StorageLocationViewSet
from apps.verification import api as verification

app_name = "v1"

router = SimpleRouter()
router.register("backup-recovery/database/targets", DatabaseTargetViewSet, basename="target")
router.register("backup-recovery/storage/locations", StorageLocationViewSet, basename="location")
router.register("backup-recovery/documents/sources", documents.DocumentSourceViewSet, basename="document-source")
router.register("backup-recovery/retention/rules", retention.RetentionRuleViewSet, basename="retention-rule")
router.register("backup-recovery/monitoring/channels", monitoring.ChannelViewSet, basename="channel")
router.register("backup-recovery/monitoring/rules", monitoring.AlertRuleViewSet, basename="alert-rule")
router.register("backup-recovery/disaster-recovery/plans", dr_api.DRPlanViewSet, basename="dr-plan")

audit_list = AuditEventViewSet.as_view({"get": "list"})
audit_detail = AuditEventViewSet.as_view({"get": "retrieve"})
approval_list = approvals.ApprovalRequestViewSet.as_view({"get": "list"})
approval_detail = approvals.ApprovalRequestViewSet.as_view({"get": "retrieve"})
job_list = JobViewSet.as_view({"get": "list"})
job_detail = JobViewSet.as_view({"get": "retrieve"})
alert_list = monitoring.AlertViewSet.as_view({"get": "list"})
alert_detail = monitoring.AlertViewSet.as_view({"get": "retrieve"})

urlpatterns = [
    path("auth/token/", TokenObtainPairView.as_view(
        permission_classes=[AllowAny], throttle_classes=[LoginRateThrottle, LoginUsernameRateThrottle],
    ), name="token-obtain"),
    path("auth/token/refresh/", TokenRefreshView.as_view(permission_classes=[AllowAny]), name="token-refresh"),
    # Seed endpoints (no trailing slash, as published).
    path("backup-recovery/database/backup/full", backups.FullBackupView.as_view(), name="backup-full"),
    path("backup-recovery/database/backup/incremental", backups.IncrementalBackupView.as_view(),
         name="backup-incremental"),
    path("backup-recovery/database/backups", backups.BackupListView.as_view(), name="backup-list"),
    path("backup-recovery/database/backups/<ulid:pk>", backups.BackupDetailView.as_view(), name="backup-detail"),
    path("backup-recovery/database/backups/<ulid:pk>/restore", backups.RestoreView.as_view(), name="backup-restore"),
    path("backup-recovery/database/statistics", backups.StatisticsView.as_view(), name="backup-statistics"),
    path("backup-recovery/verification/verify/<ulid:pk>", verification.VerifyBackupView.as_view(),
         name="verify-backup"),
    path("backup-recovery/verification/verify-all", verification.VerifyAllView.as_view(), name="verify-all"),
    path("backup-recovery/verification/runs", verification.VerificationRunListView.as_view(),
         name="verification-run-list"),
    path("backup-recovery/disaster-recovery/point-in-time-recovery", recovery.PointInTimeRecoveryView.as_view(),
         name="pitr"),
    path("backup-recovery/disaster-recovery/recoveries", recovery.RecoveryRunListView.as_view(),
         name="recovery-list"),
    path("backup-recovery/disaster-recovery/failover", dr_api.FailoverView.as_view(), name="dr-failover"),
    path("backup-recovery/disaster-recovery/failovers", dr_api.FailoverListView.as_view(), name="dr-failover-list"),
    path("backup-recovery/disaster-recovery/status", dr_api.StatusView.as_view(), name="dr-status"),
    path("backup-recovery/disaster-recovery/test/<str:plan_id>", dr_api.DrillView.as_view(), name="dr-test"),
    path("backup-recovery/disaster-recovery/drills", dr_api.DrillListView.as_view(), name="dr-drill-list"),
    path("backup-recovery/database/targets/<str:pk>/recovery-window", wal_api.RecoveryWindowView.as_view(),
         name="target-recovery-window"),
    path("backup-recovery/documents/backup", documents.DocumentBackupView.as_view(), name="documents-backup"),
    path("backup-recovery/documents/backups", documents.DocumentVersionListView.as_view(), name="documents-list"),
    path("backup-recovery/documents/backups/<ulid:pk>", documents.DocumentVersionDetailView.as_view(),
         name="documents-detail"),
    path("backup-recovery/documents/backups/<ulid:pk>/files", documents.DocumentFilesView.as_view(),
         name="documents-files"),
    path("backup-recovery/documents/backups/<ulid:pk>/verify", documents.DocumentVerifyView.as_view(),
         name="documents-verify"),
    path("backup-recovery/documents/backups/<ulid:pk>/restore", documents.DocumentRestoreView.as_view(),
         name="documents-restore"),
    path("backup-recovery/documents/statistics", documents.DocumentStatisticsView.as_view(),
         name="documents-statistics"),
    path("backup-recovery/retention/enforce-policies", retention.EnforcePoliciesView.as_view(),
         name="retention-enforce"),
    path("backup-recovery/retention/lifecycle-stats", retention.LifecycleStatsView.as_view(),
         name="retention-lifecycle-stats"),
    path("audit/", audit_list, name="audit-list"),
    path("audit/<int:pk>", audit_detail, name="audit-detail"),
    path("approvals/", approval_list, name="approval-list"),
    path("approvals/<int:pk>", approval_detail, name="approval-detail"),
    path("approvals/<int:pk>/approve", approvals.ApproveView.as_view(), name="approval-approve"),
    path("approvals/<int:pk>/reject", approvals.RejectView.as_view(), name="approval-reject"),
    path("backup-recovery/monitoring/alerts", alert_list, name="alert-list"),
    path("backup-recovery/monitoring/alerts/<ulid:pk>", alert_detail, name="alert-detail"),
    path("backup-recovery/monitoring/alerts/<ulid:pk>/acknowledge", monitoring.AcknowledgeAlertView.as_view(),
         name="alert-acknowledge"),
    path("backup-recovery/monitoring/alerts/<ulid:pk>/resolve", monitoring.ResolveAlertView.as_view(),
         name="alert-resolve"),
    path("backup-recovery/monitoring/dashboard", monitoring.DashboardView.as_view(), name="monitoring-dashboard"),
    path("jobs", job_list, name="job-list"),
    path("jobs/<ulid:pk>", job_detail, name="job-detail"),
    *router.urls,
]
