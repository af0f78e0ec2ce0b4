"""Console pages of disaster recovery: plan status (health, lag, objectives, last drill and failover), a drill
button, and the failover page, which needs the plan's name typed again. Writes go through the job runners."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, VIEWER, has_role
from apps.recovery import selectors
from apps.recovery.jobs import DrillJob, FailoverJob
from apps.recovery.models import DRPlan


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
