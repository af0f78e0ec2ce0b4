from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from apps.backups.deletion import delete_backup
from apps.backups.models import Backup, BackupArtifact, Replica
from apps.core.admin_utils import RecordAdmin, admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.verification.models import VerificationLevel


class ArtifactInline(RecordAdmin, admin.TabularInline):
    model = BackupArtifact
    extra = 0
    can_delete = False
    fields = readonly_fields = ["name", "key", "size_raw", "size_stored", "sha256_stored", "compression", "cipher",
                                "key_id"]


class ReplicaInline(RecordAdmin, admin.TabularInline):
    model = Replica
    extra = 0
    can_delete = False
    fields = readonly_fields = ["location", "status", "storage_class", "bytes", "copied_at", "lag",
                                "checksum_verified_at", "tier_changed_at", "attempts", "last_error"]

    @admin.display(description="Lag (s)")
    def lag(self, obj):
        from apps.backups.replication import lag_seconds

        lag = lag_seconds(obj)
        return "—" if lag is None else lag



@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["id", "database_target", "kind", "format", "status", "size_stored", "created_at", "duration",
                    "last_verified", "job_link"]
    list_filter = ["status", "kind", "format", "database_target", "storage_location", "legal_hold",
                   "last_verification_result", "last_verified_level"]
    search_fields = ["id", "database_target__name", "sha256", "error"]
    date_hierarchy = "created_at"
    inlines = [ArtifactInline, ReplicaInline]
    actions = ["verify_exists", "verify_checksum", "verify_restore", "delete_backups"]
    readonly_fields = [f.name for f in Backup._meta.fields if f.name != "legal_hold"]

    def has_add_permission(self, request):
        return False  # backups are taken with "Back up now" on a target, not typed in

    def has_delete_permission(self, request, obj=None):
        # Never Django's row delete: it ignored legal hold, left the stored objects and was not audited.
        # The "Delete backups" action goes through apps.backups.deletion instead.
        return False

    def save_model(self, request, obj, form, change):
        # Only the legal hold is editable here; it goes through the service so that it is audited.
        from apps.backups.services import set_legal_hold  # lazily: see DatabaseTargetAdmin.backup_now

        try:
            set_legal_hold(backup=obj, hold=form.cleaned_data["legal_hold"], actor=admin_actor(request))
        except UserError as exc:  # lifting a hold may wait for a second admin (two-person approval)
            self.message_user(request, str(exc), messages.WARNING)

    @admin.display(description="Duration (s)")
    def duration(self, obj):
        return round(obj.duration_seconds, 1) if obj.duration_seconds is not None else "—"

    @admin.display(description="Last verified", ordering="last_verified_at")
    def last_verified(self, obj):
        if obj.last_verified_at is None:
            return "never"
        text = f"{obj.last_verified_at:%Y-%m-%d %H:%M} ({obj.last_verified_level})"
        if obj.last_verification_result == "failed":
            return format_html('<span style="color:#b42318" title="{}">FAILED {}</span>', obj.verification_error, text)
        return text

    @admin.display(description="Job")
    def job_link(self, obj):
        if not obj.job_id:
            return "—"
        return format_html('<a href="/admin/jobs/job/{}/change/">{}</a>', obj.job_id, obj.job_id)

    def _verify(self, request, queryset, level):
        if not has_role(request.user, OPERATOR):
            self.message_user(request, "Verifying backups needs the operator role.", messages.ERROR)
            return
        from apps.verification.jobs import VerifyBackupsJob  # lazily: heavy imports, see databases.admin

        ids = list(queryset.values_list("pk", flat=True))
        try:
            job = VerifyBackupsJob.enqueue(backup_ids=ids, level=level, actor=admin_actor(request))
        except UserError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Verification ({level}) of {len(ids)} backups queued as job {job.pk}.")

    @admin.action(description="Verify: sizes match")
    def verify_exists(self, request, queryset):
        self._verify(request, queryset, VerificationLevel.EXISTS)

    @admin.action(description="Verify: read back and check SHA-256")
    def verify_checksum(self, request, queryset):
        self._verify(request, queryset, VerificationLevel.CHECKSUM)

    @admin.action(description="Verify: restore into a scratch cluster")
    def verify_restore(self, request, queryset):
        self._verify(request, queryset, VerificationLevel.RESTORE)

    @admin.action(description="Delete backups (stored objects too; audited)")
    def delete_backups(self, request, queryset):
        if not has_role(request.user, ADMIN):
            self.message_user(request, "Deleting backups needs the admin role.", messages.ERROR)
            return None
        if request.POST.get("confirm") != "yes":
            context = {**self.admin_site.each_context(request), "backups": list(queryset),
                       "title": "Delete backups", "opts": self.model._meta}
            return TemplateResponse(request, "admin/backups/backup/delete_backups.html", context)
        for backup in queryset:
            try:
                delete_backup(backup=backup, actor=admin_actor(request))
            except UserError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Backup {backup.pk} deleted.", messages.SUCCESS)
        return None


@admin.register(BackupArtifact)
class BackupArtifactAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["key", "backup", "size_stored", "compression", "cipher", "key_id", "created_at"]
    list_filter = ["compression", "cipher", "key_id"]
    search_fields = ["key", "backup__id", "sha256_stored"]
    readonly_fields = [f.name for f in BackupArtifact._meta.fields]


@admin.register(Replica)
class ReplicaAdmin(RecordAdmin, admin.ModelAdmin):
    """Every copy of every backup: filter by status to see failed or lagging replication."""

    list_display = ["backup", "location", "status", "storage_class", "bytes", "copied_at", "checksum_verified_at",
                    "attempts", "last_error"]
    list_filter = ["status", "location", "storage_class"]
    search_fields = ["backup__id", "location__name", "last_error"]
    readonly_fields = [f.name for f in Replica._meta.fields]
