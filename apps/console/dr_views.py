"""Console pages of disaster recovery: plan status (health, lag, objectives, last drill and failover), a drill
button, the failover page, which needs the plan's name typed again, and the platform at one moment (database
and documents as they were at a time, into a new directory). Writes go through the job runners."""
from pathlib import Path

from django import forms
from django.conf import settings
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.console import selectors as console_selectors
from apps.console.outcomes import start
from apps.console.permissions import console_action, console_page
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.recovery import selectors
from apps.databases import identifiers
from apps.databases.models import DatabaseTarget
from apps.documents.models import DocumentSource
from apps.recovery.jobs import DrillJob, FailoverJob, PlatformRecoveryJob
from apps.recovery.models import DRPlan
from apps.recovery.targets import parse_target


@console_page
def dr_status(request):
    plans = [selectors.plan_status(p) for p in selectors.plans()]
    return render(request, "console/dr_status.html", {
        "plans": plans, "can_drill": has_role(request.user, OPERATOR), "can_failover": has_role(request.user, ADMIN)})


@console_page
def dr_plan(request, plan_id: int):
    """One plan: health and lag now, objectives, drill and failover history, the drill and failover buttons."""
    plan = get_object_or_404(selectors.plans(), pk=plan_id)
    return render(request, "console/dr_plan.html", {
        "p": selectors.plan_status(plan), "plan": plan, "history": console_selectors.plan_history(plan),
        "can_drill": has_role(request.user, OPERATOR), "can_failover": has_role(request.user, ADMIN)})


@console_action(OPERATOR, what="Running a drill")
def dr_drill(request, plan_id: int):
    plan = get_object_or_404(DRPlan, pk=plan_id)
    if request.method != "POST":
        return redirect("console:dr-plan", plan_id=plan.pk)
    response, _ = start(request, lambda: DrillJob.enqueue(plan=plan, actor=admin_actor(request)),
                        back=reverse("console:dr-plan", args=[plan.pk]), prefix=f"{plan.name}: ")
    return response


class FailoverForm(forms.Form):
    confirm = forms.CharField(max_length=64, label="Type the plan's name to confirm")

    def __init__(self, *args, plan: DRPlan, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan

    def clean_confirm(self):
        if self.cleaned_data["confirm"] != self.plan.name:
            raise forms.ValidationError(f"That is not {self.plan.name}; nothing was done.")
        return self.cleaned_data["confirm"]


@console_action(ADMIN, read_role=ADMIN, what="Failing over")
def dr_failover(request, plan_id: int):
    plan = get_object_or_404(selectors.plans(), pk=plan_id)
    form = FailoverForm(request.POST or None, plan=plan)
    if request.method == "POST":
        if form.is_valid():
            response, _ = start(request, lambda: FailoverJob.enqueue(plan=plan, actor=admin_actor(request)),
                                back=request.path)
            return response
    return render(request, "console/dr_failover.html",
                  {"plan": plan, "form": form, "status": selectors.plan_status(plan)},
                  status=400 if request.method == "POST" else 200)


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


@console_action(ADMIN, read_role=ADMIN, what="Recovering the platform")
def dr_platform(request):
    form = PlatformForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        v = form.cleaned_data

        def enqueue():
            root = Path(settings.RECOVERY_ROOT)
            root.mkdir(parents=True, exist_ok=True)
            return PlatformRecoveryJob.enqueue(target=v["target"], source=v["source"], at=v["at"],
                                               destination=str(root / v["directory"]), actor=admin_actor(request))

        response, _ = start(request, enqueue, back=request.path)
        return response
    return render(request, "console/dr_platform.html", {"form": form, "root": settings.RECOVERY_ROOT},
                  status=400 if request.method == "POST" else 200)
