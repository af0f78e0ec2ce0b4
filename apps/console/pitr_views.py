"""The point-in-time recovery wizard: pick a target, a moment inside its recoverable window (a moment outside
it is refused, naming the window), a destination (a new cluster in a directory under RECOVERY_ROOT, or one
table copied back into the live database, renamed or replacing its rows), review, confirm.

The confirmation calls PointInTimeRecoveryJob.enqueue, the same request service (apps.recovery.pitr.request_pitr)
as POST /v1/.../point-in-time-recovery."""
from django import forms
from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from datetime import timezone

from django.utils import timezone as dj_timezone

from apps.backups import wal_selectors
from apps.console import selectors
from apps.console.outcomes import start
from apps.console.permissions import console_action
from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN
from apps.databases import identifiers
from apps.databases.models import DatabaseTarget
from apps.recovery import selectors as recovery_selectors
from apps.recovery.jobs import PointInTimeRecoveryJob
from apps.recovery.targets import parse_target

NEW_CLUSTER, TABLE = "cluster", "table"


def _checked(check, value, **kw):
    try:
        return check(value, **kw)
    except UserError as exc:
        raise forms.ValidationError(str(exc)) from None


class PitrForm(forms.Form):
    target = forms.ModelChoiceField(queryset=DatabaseTarget.objects.order_by("name"), to_field_name="name")
    at = forms.CharField(label="Moment", max_length=64,
                         help_text="Inside the recoverable window, with a UTC offset, e.g. 2026-11-25 12:00:00+00.")
    mode = forms.ChoiceField(choices=[(NEW_CLUSTER, "a new cluster (started, promoted)"),
                                      (TABLE, "one table copied back into the live database")],
                             widget=forms.RadioSelect, initial=NEW_CLUSTER)
    directory = forms.CharField(max_length=63, required=False,
                                help_text="New directory under the server's RECOVERY_ROOT (a scratch one is named "
                                          "for a table recovery when empty).")
    port = forms.IntegerField(required=False, min_value=1, max_value=65535, help_text="Empty: a free port.")
    table = forms.CharField(max_length=127, required=False, help_text="SCHEMA.TABLE")
    table_action = forms.ChoiceField(choices=[("rename", "copy under a new name"), ("replace", "replace its rows")],
                                     required=False, initial="rename", widget=forms.RadioSelect)
    rename = forms.CharField(max_length=63, required=False, help_text="The new table's name (rename).")

    def clean_at(self):
        return _checked(lambda v: parse_target(time=v).time, self.cleaned_data["at"])

    def clean_directory(self):
        value = self.cleaned_data["directory"]
        return _checked(identifiers.check_name, value, what="directory") if value else ""

    def clean(self):
        data = super().clean()
        target, at = data.get("target"), data.get("at")
        if target is not None and at is not None:
            window = wal_selectors.recovery_window(target).as_dict()
            data["window"] = window
            if not selectors.within_window(window, at):
                self.add_error("at", f"{at.isoformat(sep=' ')} is outside the recoverable window of {target.name}: "
                                     f"{selectors.describe_window(window)}.")
        if data.get("mode") == TABLE:
            if not data.get("table"):
                self.add_error("table", "Give the table to recover (SCHEMA.TABLE).")
            else:
                _checked_field(self, "table", identifiers.check_table, data["table"])
            if data.get("table_action") == "rename":
                if not data.get("rename"):
                    self.add_error("rename", "Give the new table's name, or choose to replace its rows.")
                else:
                    _checked_field(self, "rename", identifiers.check_name, data["rename"], what="table")
            else:
                data["rename"] = ""
            if not data.get("directory") and at is not None:
                data["directory"] = f"table_{dj_timezone.now():%Y%m%d%H%M%S}"
        else:
            data["table"], data["rename"] = "", ""
            if not data.get("directory"):
                self.add_error("directory", "Name the new cluster's directory.")
        return data


def _checked_field(form, field, check, value, **kw):
    try:
        check(value, **kw)
    except UserError as exc:
        form.add_error(field, str(exc))


@console_action(ADMIN, read_role=ADMIN, what="Point-in-time recovery")
def pitr_wizard(request):
    """GET: step 1-3 (target, moment, destination). POST step=review: checked, shown for review. POST
    step=confirm: the recovery is requested and the job page follows."""
    step = request.POST.get("step", "")
    if request.method == "POST":
        form = PitrForm(request.POST)
        target = DatabaseTarget.objects.filter(name=request.POST.get("target", "")).first()
    else:
        target = DatabaseTarget.objects.filter(name=request.GET.get("target", "")).first()
        form = PitrForm(initial={"target": target, "mode": NEW_CLUSTER, "table_action": "rename"})
    window = wal_selectors.recovery_window(target).as_dict() if target else None
    if request.method == "GET" and window and window["latest_at"]:
        form.initial["at"] = window["latest_at"].astimezone(timezone.utc).isoformat(sep=" ", timespec="seconds")
    context = {"form": form, "target": target, "window": window,
               "timeline": selectors.timeline(window) if window else None, "root": settings.RECOVERY_ROOT,
               "step": "choose", "targets": DatabaseTarget.objects.order_by("name")}
    if request.method != "POST":
        return render(request, "console/pitr.html", context)
    if not form.is_valid():
        return render(request, "console/pitr.html", context, status=400)
    v = form.cleaned_data
    goal = parse_target(time=v["at"])
    if step != "confirm":
        try:
            base = recovery_selectors.base_backup_for(v["target"], goal)
        except UserError as exc:
            form.add_error("at", str(exc))
            return render(request, "console/pitr.html", context, status=400)
        context.update(step="review", review=v, base=base, pgdata=settings.RECOVERY_ROOT / v["directory"])
        return render(request, "console/pitr.html", context)

    def request_recovery():
        root = settings.RECOVERY_ROOT
        root.mkdir(parents=True, exist_ok=True)
        return PointInTimeRecoveryJob.enqueue(
            target=v["target"], goal=goal, pgdata=str(root / v["directory"]), port=v.get("port"), start=True,
            table=v["table"] or None, rename=v["rename"] or None, actor=admin_actor(request))

    response, _ = start(request, request_recovery, back=f"{reverse('console:pitr')}?target={v['target'].name}")
    return response
