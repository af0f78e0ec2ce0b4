"""Console pages of disaster recovery: plan status (health, lag, objectives, last drill and failover), a drill
button, the failover page, which needs the plan's name typed again, and the platform at one moment (database
and documents as they were at a time, into a new directory). Writes go through the job runners."""
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.console.permissions import console_action
from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, VIEWER, has_role
from apps.recovery import selectors
from apps.databases import identifiers
from apps.databases.models import DatabaseTarget
from apps.documents.models import DocumentSource
from apps.recovery.jobs import DrillJob, FailoverJob, PlatformRecoveryJob
from apps.recovery.models import DRPlan
from apps.recovery.targets import parse_target


def _forbidden(request):
    return render(request, "console/forbidden.html", status=403)


@login_required
def dr_status(request):
    if not has_role(request.user, VIEWER):
        return _forbidden(request)
    plans = [selectors.plan_status(p) for p in selectors.plans()]
    return render(request, "console/dr_status.html", {
        "plans": plans, "can_drill": has_role(request.user, OPERATOR), "can_failover": has_role(request.user, ADMIN)})


@login_required
@console_action(OPERATOR)
@require_POST
def dr_drill(request, plan_id: int):
    plan = get_object_or_404(DRPlan, pk=plan_id)
    if not has_role(request.user, OPERATOR):
        messages.error(request, "Drills need the operator role.")
        return redirect("console:dr-status")
    try:
        job = DrillJob.enqueue(plan=plan, actor=admin_actor(request))
    except UserError as exc:
        messages.error(request, f"{plan.name}: {exc}")
        return redirect("console:dr-status")
    return redirect("console:job", job_id=job.pk)


class FailoverForm(forms.Form):
    confirm = forms.CharField(max_length=64, label="Type the plan's name to confirm")

    def __init__(self, *args, plan: DRPlan, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan

    def clean_confirm(self):
        if self.cleaned_data["confirm"] != self.plan.name:
            raise forms.ValidationError(f"That is not {self.plan.name}; nothing was done.")
        return self.cleaned_data["confirm"]


@login_required
@console_action(ADMIN)
def dr_failover(request, plan_id: int):
    if not has_role(request.user, ADMIN):
        return _forbidden(request)
    plan = get_object_or_404(selectors.plans(), pk=plan_id)
    form = FailoverForm(request.POST or None, plan=plan)
    if request.method == "POST" and form.is_valid():
        try:
            job = FailoverJob.enqueue(plan=plan, actor=admin_actor(request))
        except UserError as exc:
            messages.error(request, str(exc))
        else:
            return redirect("console:job", job_id=job.pk)
    return render(request, "console/dr_failover.html",
                  {"plan": plan, "form": form, "status": selectors.plan_status(plan)})


class PlatformForm(forms.Form):
    """The platform at one moment: which database, which documents, when, and a new directory's name."""

    target = forms.ModelChoiceField(queryset=DatabaseTarget.objects.order_by("name"), to_field_name="name")
    source = forms.ModelChoiceField(queryset=DocumentSource.objects.order_by("name"), to_field_name="name",
                                    label="Document source")
    at = forms.CharField(label="Moment", help_text="e.g. 2026-11-25 12:00:00+00 (a UTC offset is required)")
    directory = forms.CharField(max_length=63, help_text="A new directory under the server's recovery root.")

    def clean_at(self):
        try:
            return parse_target(time=self.cleaned_data["at"]).time
        except UserError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_directory(self):
        try:
            return identifiers.check_name(self.cleaned_data["directory"], what="directory")
        except UserError as exc:
            raise forms.ValidationError(str(exc)) from None


@login_required
@console_action(ADMIN)
def dr_platform(request):
    if not has_role(request.user, ADMIN):
        return _forbidden(request)
    form = PlatformForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        v = form.cleaned_data
        root = Path(settings.RECOVERY_ROOT)
        root.mkdir(parents=True, exist_ok=True)
        try:
            job = PlatformRecoveryJob.enqueue(target=v["target"], source=v["source"], at=v["at"],
                                              destination=str(root / v["directory"]), actor=admin_actor(request))
        except UserError as exc:
            messages.error(request, str(exc))
        else:
            return redirect("console:job", job_id=job.pk)
    return render(request, "console/dr_platform.html", {"form": form, "root": settings.RECOVERY_ROOT})
