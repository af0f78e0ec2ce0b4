"""The retention page: the dry-run preview (what would go, and why), then enforcement confirmed by an admin."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from apps.console.permissions import console_action
from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, VIEWER, has_role
from apps.databases.models import DatabaseTarget
from apps.retention import selectors, services
from apps.retention.jobs import EnforceRetentionJob
from apps.retention.models import RetentionRule


@login_required
@console_action(ADMIN)
def retention(request):
    if not has_role(request.user, VIEWER):
        return render(request, "console/forbidden.html", status=403)
    name = request.POST.get("target") or request.GET.get("target") or ""
    target = DatabaseTarget.objects.filter(name=name).first() if name else None
    preview = services.preview(target=target)
    if request.method == "POST":
        if not has_role(request.user, ADMIN):
            messages.error(request, "Enforcing retention (deleting backups) needs the admin role.")
        elif request.POST.get("confirm") != "yes":
            messages.error(request, "Tick the confirmation box to enforce retention.")
        elif request.POST.get("expected") != _fingerprint(preview):
            # What would be deleted changed since the page was shown: show the new preview and ask again.
            messages.error(request, "The plan changed since the preview was shown; review it again.")
        else:
            try:
                job = EnforceRetentionJob.enqueue(target=target, actor=admin_actor(request))
            except UserError as exc:
                messages.error(request, str(exc))
            else:
                return redirect("console:job", job_id=job.pk)
    show_all = request.GET.get("all") == "1"
    context = {
        "preview": preview,
        "changes": [d for d in preview["decisions"] if show_all or d["action"] != "keep"],
        "show_all": show_all,
        "fingerprint": _fingerprint(preview),
        "rules": RetentionRule.objects.select_related("database_target").order_by("name"),
        "targets": DatabaseTarget.objects.order_by("name"),
        "target": target,
        "stats": selectors.lifecycle_stats(),
        "can_enforce": has_role(request.user, ADMIN),
    }
    return render(request, "console/retention.html", context)


def _fingerprint(preview: dict) -> str:
    """What the admin confirms: the counts of the plan shown (a changed plan needs a new look)."""
    c = preview["counts"]
    wal = sum(len(v) for v in preview["wal_deletions"].values())
    return f"{c['delete']}-{c['archive']}-{wal}"
