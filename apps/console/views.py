"""Operator pages: the dashboard with run-now buttons and a live job page. Writes go through services."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.backups import selectors as backup_selectors
from apps.backups.jobs import DatabaseBackupJob, RestoreDatabaseJob
from apps.backups.restores import RestoreRequest
from apps.backups.services import LOGICAL_FORMATS
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, VIEWER, has_role
from apps.core.admin_utils import admin_actor
from apps.databases import identifiers
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.jobs import selectors as job_selectors
from apps.jobs.models import JobStatus
from apps.verification.models import VerificationLevel
from apps.verification.jobs import VerifyBackupsJob


def _require_viewer(request):
    if not has_role(request.user, VIEWER):
        return render(request, "console/forbidden.html", status=403)
    return None


@login_required
def dashboard(request):
    if (denied := _require_viewer(request)) is not None:
        return denied
    recent_jobs = list(job_selectors.jobs()[:15])
    stats = backup_selectors.statistics()  # once: it aggregates over every backup
    last_by_target = {row["target"]: row for row in stats["targets"]}
    targets = list(DatabaseTarget.objects.select_related("storage_location").order_by("name"))
    for target in targets:  # looked up here: a loop over every target's row in the template is quadratic
        target.last_success = last_by_target.get(target.name)
    context = {
        "targets": targets,
        "backups": backup_selectors.backups()[:20],
        "jobs": recent_jobs,
        "stats": stats,
        "formats": LOGICAL_FORMATS,
        "can_operate": has_role(request.user, OPERATOR),
        "refresh": any(j.status in (JobStatus.QUEUED, JobStatus.RUNNING) for j in recent_jobs),
    }
    return render(request, "console/dashboard.html", context)


@login_required
@require_POST
def backup_now(request, target_id: int):
    if not has_role(request.user, OPERATOR):
        messages.error(request, "Taking backups needs the operator role.")
        return redirect("console:dashboard")
    target = get_object_or_404(DatabaseTarget, pk=target_id)
    fmt = request.POST.get("format") or None  # none: the target's default method
    try:
        job = DatabaseBackupJob.enqueue(target=target, fmt=fmt, actor=admin_actor(request))
    except UserError as exc:
        messages.error(request, f"{target.name}: {exc}")
        return redirect("console:dashboard")
    messages.success(request, f"Backup of {target.name} queued.")
    return redirect("console:job", job_id=job.pk)


@login_required
def job_detail(request, job_id: str):
    if (denied := _require_viewer(request)) is not None:
        return denied
    job = get_object_or_404(job_selectors.jobs(), pk=job_id)
    return render(request, "console/job.html", {"job": job, "refresh": not job.is_finished})


class RestoreForm(forms.Form):
    target = forms.ModelChoiceField(queryset=DatabaseTarget.objects.order_by("name"), to_field_name="name",
                                    help_text="Server and credentials to restore with.")
    dbname = forms.CharField(max_length=63, help_text="Destination database on that server.")
    create = forms.BooleanField(required=False, initial=True, help_text="Create the database first.")
    table = forms.CharField(required=False, max_length=200, help_text="Only this table (SCHEMA.TABLE); custom format.")

    # Names only, never connection strings: the checks shared with the API, the CLI and the service.
    def clean_dbname(self) -> str:
        return _checked(identifiers.check_name, self.cleaned_data["dbname"])

    def clean_table(self) -> str:
        value = self.cleaned_data["table"]
        if value:
            _checked(identifiers.check_table, value)
        return value


def _checked(check, value):
    try:
        check(value)
    except UserError as exc:
        raise forms.ValidationError(str(exc)) from None
    return value


@login_required
def backup_detail(request, backup_id: str):
    if (denied := _require_viewer(request)) is not None:
        return denied
    backup = get_object_or_404(backup_selectors.backups(), pk=backup_id)
    form = RestoreForm(request.POST or None, initial={"target": backup.database_target})
    if request.method == "POST":
        if not has_role(request.user, ADMIN):
            messages.error(request, "Restoring needs the admin role.")
        elif form.is_valid():
            data = form.cleaned_data
            target = data["target"]
            # Only the redacted destination is needed here: never unseal the password in the web request.
            conn = PgConn(host=target.host, port=target.port, dbname=data["dbname"], user=target.user,
                          sslmode=target.sslmode)
            try:
                job = RestoreDatabaseJob.enqueue(
                    backup=backup, destination=conn.redacted(),
                    request=RestoreRequest(table=data["table"] or None, create=data["create"]),
                    actor=admin_actor(request), target=target, dbname=data["dbname"],
                )
            except UserError as exc:
                messages.error(request, str(exc))
            else:
                return redirect("console:job", job_id=job.pk)
    context = {
        "backup": backup,
        "artifacts": backup.artifacts.all(),
        "replicas": backup.replicas.select_related("location"),
        "verifications": backup.verifications.select_related("location")[:10],
        "form": form,
        "can_operate": has_role(request.user, OPERATOR),
        "can_restore": has_role(request.user, ADMIN),
        "levels": VerificationLevel.choices,
    }
    return render(request, "console/backup.html", context)


@login_required
@require_POST
def verify_now(request, backup_id: str):
    backup = get_object_or_404(backup_selectors.backups(), pk=backup_id)
    if not has_role(request.user, OPERATOR):
        messages.error(request, "Verifying needs the operator role.")
        return redirect("console:backup", backup_id=backup.pk)
    try:
        job = VerifyBackupsJob.enqueue(backup_ids=[backup.pk], level=request.POST.get("level", "checksum"),
                                       actor=admin_actor(request))
    except UserError as exc:
        messages.error(request, str(exc))
        return redirect("console:backup", backup_id=backup.pk)
    return redirect("console:job", job_id=job.pk)
