from django.contrib import admin, messages

from apps.core.admin_utils import RecordAdmin, admin_actor
from apps.core.errors import UserError
from apps.core.roles import OPERATOR, has_role
from apps.documents.models import DocumentPack, DocumentSource, DocumentVersion

# The services (pipeline, chunking, cryptography) are imported inside the methods: admin modules are imported
# by every process at start-up, and most never back documents up.


@admin.register(DocumentSource)
class DocumentSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "root_path", "storage_location", "follow_symlinks", "enabled", "last_version"]
    list_filter = ["enabled", "follow_symlinks"]
    search_fields = ["name", "root_path", "description"]
    fields = ["name", "description", "root_path", "object_location", "prefix", "include", "exclude",
              "follow_symlinks", "storage_location", "replica_locations",
              "enabled"]
    actions = ["backup_now"]

    @admin.display(description="Last succeeded version")
    def last_version(self, obj):
        last = obj.versions.filter(status="succeeded").order_by("-created_at").first()
        return last.finished_at if last else "—"

    def save_model(self, request, obj, form, change):
        from apps.documents.services import save_source

        save_source(source=obj, actor=admin_actor(request))

    def delete_model(self, request, obj):
        from apps.documents.services import delete_source

        delete_source(source=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        from apps.documents.services import delete_source

        for source in queryset:
            delete_source(source=source, actor=admin_actor(request))

    @admin.action(description="Back up now")
    def backup_now(self, request, queryset):
        if not has_role(request.user, OPERATOR):
            self.message_user(request, "Taking backups needs the operator role.", messages.ERROR)
            return
        from apps.documents.jobs import DocumentBackupJob

        for source in queryset:
            try:
                job = DocumentBackupJob.enqueue(source=source, actor=admin_actor(request))
            except UserError as exc:
                self.message_user(request, f"{source.name}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{source.name}: version {job.args['version_id']} queued as job {job.pk}.",
                              messages.SUCCESS)


@admin.register(DocumentVersion)
class DocumentVersionAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["id", "source", "status", "files", "files_new", "files_changed", "files_removed", "bytes_added",
                    "bytes_stored", "created_at", "finished_at"]
    list_filter = ["status", "source"]
    search_fields = ["id", "source__name"]


@admin.register(DocumentPack)
class DocumentPackAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["key", "location", "version", "chunks", "size_raw", "size_stored", "created_at"]
    list_filter = ["location"]
    search_fields = ["key"]
