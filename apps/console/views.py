"""Operator pages: the dashboard, back up now, the live job page (and the JSON it polls), the backup page with
verify and restore. Reads through selectors, writes through the job runners (the API's services)."""
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from django import forms
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from apps.backups import selectors as backup_selectors
from apps.backups.jobs import DatabaseBackupJob, RestoreDatabaseJob
from apps.backups.models import BackupKind
from apps.backups.restores import RestoreRequest
from apps.backups.services import LOGICAL_FORMATS
from apps.console import selectors
from apps.console.outcomes import start
from apps.console.permissions import console_action, console_page, request_has_role
from apps.core.admin_utils import admin_actor
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.databases import identifiers
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.jobs import selectors as job_selectors
from apps.jobs.models import JobStatus
from apps.verification.jobs import VerifyBackupsJob
from apps.verification.models import VerificationLevel

_TARGET_ROW = ('<tr id="target-{name}"><td><span class="light light-{light}" title="{light}: last success vs RPO">'
               '</span></td><td><a href="{url}">{name}</a></td><td>{where}</td><td>{last} / {rpo} h</td>'
               '<td class="status-{status}">{status_text}</td><td>{replication}</td><td>{wal}</td>'
               '<td class="{ready_class}">{ready}</td><td>{form}</td></tr>')
_BACKUP_NOW = ('<form method="post" action="{}">{}<select name="format">{}</select>'
               '<button type="submit" class="backup-now">Back up now</button></form>')
_ONE = Decimal(1)


def _whole_seconds(value) -> str:
    """`{{ value|floatformat:0 }} s` (half up, no grouping: this site's settings), or "—" for None; the filter's
    Decimal and localisation machinery was a fifth of the rows' cost. tests/test_console_pages.py compares both."""
    if value is None:
        return "—"
    whole = Decimal(str(value)).quantize(_ONE, ROUND_HALF_UP)
    return f"{whole if whole else 0} s"


def _target_rows_html(request, rows: list[dict], *, can_operate: bool) -> str:
    """Each target row of the dashboard's table as escaped HTML (row["html"]), built once per row here: with 100
    targets, per-row template variables, filters, `{% url %}` and `{% csrf_token %}` tags were a third of the
    page's CPU. Same markup as a template would write: every value is escaped (html.escape, which is what
    django.utils.html.escape does), by str.format rather than format_html, whose lazy wrappers per value cost
    more than the rest of the row. Returns the table's rows joined as the template's loop wrote them (a loop
    over 100 rows in the template was another 200 nodes to render)."""
    from django.template.backends.utils import csrf_input
    from django.utils.html import format_html_join
    from django.utils.safestring import mark_safe

    marker = "987654321"
    tz = timezone.get_current_timezone()
    target_url = reverse("console:target", args=[marker])
    backup_now_url = reverse("console:backup-now", args=[marker])
    if can_operate:
        token = str(csrf_input(request))
        options = str(format_html_join("", '<option value="{}">{}</option>', ((f, f) for f in LOGICAL_FORMATS)))
    for row in rows:
        pk = str(row["target_id"])
        name = escape(str(row["target"]))
        status = escape(str(row["status"]))
        row["html"] = mark_safe(_TARGET_ROW.format(
            name=name, light=escape(str(row["light"])), url=escape(target_url.replace(marker, pk)),
            where=escape(str(row["where"])),
            last=_when(row["last_success_at"], tz=tz) or "never",
            rpo=round(row["rpo_seconds"] / 3600), status=status, status_text=status if row["status"] else "—",
            replication=_whole_seconds(row["replication_lag_seconds"]),
            wal=_whole_seconds(row["wal_archive_lag_seconds"]),
            ready_class="status-succeeded" if row["dr_ready"] else "status-failed",
            ready="yes" if row["dr_ready"] else "no",
            form=_BACKUP_NOW.format(escape(backup_now_url.replace(marker, pk)), token, options) if can_operate else ""))
    return mark_safe("".join(f"{row['html']}\n  " for row in rows))


_JOB_ROW = ('\n  <tr>\n    <td><a href="{url}">{pk}</a></td>\n    <td>{type}</td>\n'
            '    <td class="status-{status}">{status}</td>\n    <td>{done}</td>\n    <td>{by}</td>\n'
            '    <td>{created}</td>\n  </tr>\n  ')
_BACKUP_ROW = ('\n  <tr>\n    <td><a href="{url}">{pk}</a></td>\n    <td>{target}</td>\n    <td>{format}</td>\n'
               '    <td class="status-{status}">{status}</td>\n    <td>{size}</td>\n    <td>{finished}</td>\n'
               '    <td class="last-verified">{verified}</td>\n  </tr>\n  ')


def _when(value, fmt: str = "%Y-%m-%d %H:%M:%S", tz=None) -> str:
    """The `date:"Y-m-d H:i:s"` filter (or "Y-m-d H:i" with fmt) of an aware datetime; "" for None. `tz`: the
    current time zone when the caller looked it up once for many values (a lookup per value was most of this)."""
    return timezone.localtime(value, tz).strftime(fmt) if value else ""


def _short_lists_html(jobs, backups) -> tuple[str, str]:
    """The dashboard's recent jobs and backups tables' rows, as the template's loops wrote them (the same
    whitespace and escaping; its `{% url %}`, `date` and `filesizeformat` per cell were most of the page's
    remaining template time). tests/test_console_pages.py compares them with the loops."""
    from django.template.defaultfilters import filesizeformat
    from django.utils.safestring import mark_safe

    marker = "0" * 26  # a ULID, as the two URLs take
    job_url, backup_url = reverse("console:job", args=[marker]), reverse("console:backup", args=[marker])
    tz = timezone.get_current_timezone()
    job_rows = "".join(_JOB_ROW.format(
        url=escape(job_url.replace(marker, str(j.pk))), pk=escape(str(j.pk)), type=escape(str(j.type)),
        status=escape(str(j.status)), done=escape(filesizeformat(j.progress_done)),
        by=escape(str(j.requested_by or j.via)), created=_when(j.created_at, tz=tz)) for j in jobs)
    backup_rows = []
    for b in backups:
        verified = "never"
        if b.last_verified_at:
            verified = '<span class="status-{}">{} ({})</span>'.format(
                "succeeded" if b.last_verification_result == "passed" else "failed",
                _when(b.last_verified_at, "%Y-%m-%d %H:%M", tz), escape(str(b.last_verified_level)))
        backup_rows.append(_BACKUP_ROW.format(
            url=escape(backup_url.replace(marker, str(b.pk))), pk=escape(str(b.pk)),
            target=escape(str(b.database_target)), format=escape(str(b.format)), status=escape(str(b.status)),
            size=escape(filesizeformat("" if b.size_stored is None else b.size_stored)),
            finished=_when(b.finished_at, tz=tz), verified=verified))
    return mark_safe(job_rows), mark_safe("".join(backup_rows))


@console_page
def dashboard(request):
    # The short lists load the columns their tables show (not job logs and results, backup checksums, errors).
    recent_jobs, recent_backups = selectors.recent_lists(jobs=15, backups=20)
    data = selectors.dashboard()
    can_operate = request_has_role(request, OPERATOR)
    job_rows_html, backup_rows_html = _short_lists_html(recent_jobs, recent_backups)
    context = {
        "data": data,
        "target_rows_html": _target_rows_html(request, data["targets"], can_operate=can_operate),
        "charts": selectors.dashboard_charts(data),
        "job_rows_html": job_rows_html,
        "backup_rows_html": backup_rows_html,
        "stats": data["statistics"],
        "can_operate": can_operate,
        "refresh": any(j.status in (JobStatus.QUEUED, JobStatus.RUNNING) for j in recent_jobs),
    }
    return render(request, "console/dashboard.html", context)


@console_page
def dashboard_charts(request):
    """The dashboard's 30-day size and duration lines, fetched by its script (the page itself does not compute
    them): two aggregates, a point per target or source and day."""
    return JsonResponse({"series": selectors.chart_series()})


@console_action(OPERATOR, what="Taking backups")
def backup_now(request, target_id: int):
    """Full (a pg_dump format, or a method: logical / physical) or incremental (physical) backup of a target."""
    if request.method != "POST":
        return redirect("console:target", target_id=target_id)
    target = get_object_or_404(DatabaseTarget, pk=target_id)
    kind = request.POST.get("kind") or BackupKind.FULL
    fmt = request.POST.get("format") or None  # none: the target's default method
    method = request.POST.get("method") or None
    back = request.POST.get("next") or reverse("console:dashboard")
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("console:dashboard")
    response, _ = start(
        request, lambda: DatabaseBackupJob.enqueue(target=target, fmt=fmt, method=method, kind=kind,
                                                   actor=admin_actor(request)),
        back=back, prefix=f"{target.name}: ", success=f"Backup of {target.name} queued.")
    return response


@console_page
def job_detail(request, job_id: str):
    job = get_object_or_404(job_selectors.jobs(), pk=job_id)
    return render(request, "console/job.html", {"job": job, "progress": job_progress_data(job)})


def job_progress_data(job) -> dict:
    """Status, bytes, rate, ETA and log of a job: what the job page polls."""
    now = timezone.now()
    elapsed = ((job.finished_at or now) - job.started_at).total_seconds() if job.started_at else None
    rate = job.progress_done / elapsed if elapsed and elapsed > 0 and job.progress_done else None
    eta = None
    if rate and job.progress_total and not job.is_finished:
        eta = max(job.progress_total - job.progress_done, 0) / rate
    return {"id": job.pk, "type": job.type, "status": job.status, "finished": job.is_finished,
            "done": job.progress_done, "total": job.progress_total,
            "percent": 100.0 if job.status == JobStatus.SUCCEEDED else job.percent,
            "rate": round(rate, 1) if rate else None, "eta_seconds": round(eta, 1) if eta is not None else None,
            "elapsed_seconds": round(elapsed, 1) if elapsed is not None else None,
            "log": job.log[-20000:], "error": job.error, "result": job.result}


@console_page
def job_progress(request, job_id: str):
    job = get_object_or_404(job_selectors.jobs(), pk=job_id)
    return JsonResponse(job_progress_data(job))


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
    from apps.core.errors import UserError

    try:
        check(value)
    except UserError as exc:
        raise forms.ValidationError(str(exc)) from None
    return value


@console_action(ADMIN, what="Restoring")
def backup_detail(request, backup_id: str):
    backup = get_object_or_404(backup_selectors.backups(), pk=backup_id)
    form = RestoreForm(request.POST or None, initial={"target": backup.database_target})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        target = data["target"]
        # Only the redacted destination is needed here: never unseal the password in the web request.
        conn = PgConn(host=target.host, port=target.port, dbname=data["dbname"], user=target.user,
                      sslmode=target.sslmode)
        response, job = start(request, lambda: RestoreDatabaseJob.enqueue(
            backup=backup, destination=conn.redacted(),
            request=RestoreRequest(table=data["table"] or None, create=data["create"]),
            actor=admin_actor(request), target=target, dbname=data["dbname"],
        ), back=request.path)
        return response
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
    return render(request, "console/backup.html", context, status=400 if request.method == "POST" else 200)


@console_action(OPERATOR, what="Verifying")
def verify_now(request, backup_id: str):
    backup = get_object_or_404(backup_selectors.backups(), pk=backup_id)
    if request.method != "POST":
        return redirect("console:backup", backup_id=backup.pk)
    response, _ = start(request, lambda: VerifyBackupsJob.enqueue(
        backup_ids=[backup.pk], level=request.POST.get("level", "checksum"), actor=admin_actor(request)),
        back=reverse("console:backup", args=[backup.pk]))
    return response
