"""The retention page: the dry-run preview (what would go, and why), then enforcement confirmed by an admin."""
from django.contrib import messages
from django.shortcuts import render

from apps.core.admin_utils import admin_actor
from apps.console.outcomes import start
from apps.console.permissions import console_action
from apps.core.roles import ADMIN, has_role
from apps.databases.models import DatabaseTarget
from apps.retention import selectors, services
from apps.retention.jobs import EnforceRetentionJob
from apps.retention.models import RetentionRule


@console_action(ADMIN, what="Enforcing retention (deleting backups)")
def retention(request):
    name = request.POST.get("target") or request.GET.get("target") or ""
    target = DatabaseTarget.objects.filter(name=name).first() if name else None
    preview = services.preview(target=target)
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            messages.error(request, "Tick the confirmation box to enforce retention.")
        elif request.POST.get("expected") != _fingerprint(preview):
            # What would be deleted changed since the page was shown: show the new preview and ask again.
            messages.error(request, "The plan changed since the preview was shown; review it again.")
        else:
            response, _ = start(request, lambda: EnforceRetentionJob.enqueue(target=target, actor=admin_actor(request)),
                                back=request.get_full_path())
            return response
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
    return render(request, "console/retention.html", context, status=400 if request.method == "POST" else 200)


def _fingerprint(preview: dict) -> str:
    """What the admin confirms: the counts of the plan shown (a changed plan needs a new look)."""
    c = preview["counts"]
    wal = sum(len(v) for v in preview["wal_deletions"].values())
    return f"{c['delete']}-{c['archive']}-{wal}"
