from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import OPERATOR, has_role
from apps.databases.models import DatabaseTarget
from apps.databases.services import delete_target, save_target


class DatabaseTargetForm(forms.ModelForm):
    # Write-only: the stored password is never rendered back into the page.
    password = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored password. A change of host, port, user or SSL mode "
                  "without a new password clears it: a password is never sent to another server.",
    )
    clear_password = forms.BooleanField(required=False, help_text="Remove the stored password.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Optional in a post (a form from before the field existed): missing keeps what the target has.
        self.fields["default_method"].required = False

    def clean_default_method(self):
        return self.cleaned_data.get("default_method") or self.instance.default_method

    class Meta:
        model = DatabaseTarget
        fields = ["name", "description", "host", "port", "dbname", "user", "sslmode", "storage_location",
                  "replica_locations", "default_method", "data_directory", "wal_archiving", "tags", "enabled"]


@admin.register(DatabaseTarget)
class DatabaseTargetAdmin(admin.ModelAdmin):
    form = DatabaseTargetForm
    list_display = ["name", "host", "port", "dbname", "user", "has_password", "storage_location", "enabled",
                    "last_backup"]
    list_filter = ["enabled", "default_method", "wal_archiving", "sslmode"]
    search_fields = ["name", "host", "dbname", "description"]
    actions = ["backup_now"]
    readonly_fields = ["wal_archive"]

    @admin.display(boolean=True)
    def has_password(self, obj):
        return obj.has_password

    @admin.display(description="Last succeeded backup")
    def last_backup(self, obj):
        last = obj.backups.filter(status="succeeded").order_by("-finished_at").first()
        return last.finished_at if last else "—"

    @admin.display(description="WAL archive and recovery window")
    def wal_archive(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        from apps.backups import wal_selectors  # read only on the change page

        window = wal_selectors.recovery_window(obj)
        status = wal_selectors.archive_status(obj)
        cur = window.current
        if cur is None:
            head = format_html("<strong>{}</strong>: no succeeded physical base backup with continuous archived "
                               "WAL after it.", "No recovery window")
        else:
            link = reverse("admin:backups_backup_change", args=[cur.base_backup_id])
            head = format_html(
                "<strong>Recoverable from {} to {}</strong> (LSN {} to {}, timeline {}, base backup "
                '<a href="{}">{}</a>)', cur.earliest_at, cur.latest_at or "—",
                window.as_dict()["earliest_lsn"], window.as_dict()["latest_lsn"], cur.timeline, link,
                cur.base_backup_id)
        lag = format_html(
            "Last archived: {} at {} ({}); newest commit archived {}; {} files", status["last_archived"] or "—",
            status["last_archived_at"] or "—",
            "never" if status["archive_lag_seconds"] is None else f"{status['archive_lag_seconds']:.0f} s ago",
            status["last_commit_at"] or "—", status["files"])
        gaps = format_html_join(
            "", "<li><strong>Gap</strong> on timeline {}: {} segment(s) missing, {} to {}</li>",
            ((g.timeline, g.missing, g.first_missing, g.last_missing) for g in window.gaps))
        unusable = format_html_join("", "<li>Base backup {} cannot be used: {}</li>",
                                    window.unusable_backups.items())
        return format_html("{}<br>{}<ul>{}{}</ul>", head, lag, gaps, unusable)

    def save_model(self, request, obj, form, change):
        password = form.cleaned_data.get("password") or None
        if form.cleaned_data.get("clear_password"):
            password = ""
        save_target(target=obj, actor=admin_actor(request), password=password)

    def delete_model(self, request, obj):
        # Through the service: audited, and refused while the target has backups.
        delete_target(target=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for target in queryset:
            delete_target(target=target, actor=admin_actor(request))

    @admin.action(description="Back up now (full, the target's default method)")
    def backup_now(self, request, queryset):
        if not has_role(request.user, OPERATOR):
            self.message_user(request, "Taking backups needs the operator role.", messages.ERROR)
            return
        # Imported here: the backup services pull in pg_dump's engine, psycopg, zstd and cryptography, which
        # every management command would otherwise load at start-up through admin autodiscovery.
        from apps.backups.jobs import DatabaseBackupJob

        for target in queryset:
            try:
                job = DatabaseBackupJob.enqueue(target=target, actor=admin_actor(request))
            except UserError as exc:
                self.message_user(request, f"{target.name}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{target.name}: backup {job.args['backup_id']} queued as job {job.pk}.",
                              messages.SUCCESS)
