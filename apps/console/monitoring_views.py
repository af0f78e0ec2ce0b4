"""Console pages of monitoring: the dashboard (charts from the vendored Chart.js) and the alert list with
acknowledge / resolve. Reads through apps.monitoring.selectors, writes through its services."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.console import selectors as console_selectors
from apps.console.permissions import console_action, console_page
from apps.core.roles import OPERATOR, has_role
from apps.monitoring import selectors, services
from apps.monitoring.models import Alert, AlertStatus, Severity


@console_page
def monitoring_dashboard(request):
    data = selectors.dashboard()
    # What the charts draw, handed to the page with json_script (never inlined as raw HTML).
    charts = {
        "sizes": [{"target": row["target"],
                   "points": [{"x": p["at"].isoformat(), "y": p["size_stored"]} for p in row["sizes"]]}
                  for row in data["targets"]],
        "storage": [{"location": row["location"], "tiers": row["bytes_by_tier"] or {"used": row["used_bytes"]},
                     "capacity": row["capacity_bytes"]}
                    for row in data["storage"]],
        "alerts": data["open_alerts_by_severity"],
    }
    return render(request, "console/monitoring/dashboard.html", {"data": data, "charts": charts})


@console_page
def alert_list(request, status_code: int = 200):
    status = request.GET.get("status", "active")
    qs = selectors.alerts(severity=request.GET.get("severity") or None, target=request.GET.get("target") or None,
                          type=request.GET.get("type") or None)
    if request.GET.get("id"):  # the link in a notification: that alert, whatever its status now
        qs, status = qs.filter(pk=request.GET["id"].upper()[:26]), "all"
    elif status == "active":
        qs = qs.filter(status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED])
    elif status in AlertStatus.values:
        qs = qs.filter(status=status)
    context = {"alerts": qs[:200], "status": status, "statuses": ["active", "all", *AlertStatus.values],
               "severities": Severity.values, "types": console_selectors.alert_types(),
               "can_operate": has_role(request.user, OPERATOR)}
    return render(request, "console/monitoring/alerts.html", context, status=status_code)


@console_action(OPERATOR, what="Acknowledging and resolving alerts")
def alert_action(request, alert_id: str, verb: str):
    if request.method != "POST":
        return redirect("console:alerts")
    service = {"acknowledge": services.acknowledge, "resolve": services.resolve}.get(verb)
    alert = get_object_or_404(Alert, pk=alert_id)
    if service is None:
        messages.error(request, f"No such action: {verb}.")
        return redirect("console:alerts")
    note = request.POST.get("note", "").strip()[:2000]
    if not note:
        messages.error(request, f"Say why in a note to {verb} an alert.")
        return alert_list.__wrapped__(request, status_code=400)
    try:
        service(alert=alert, actor=admin_actor(request), note=note)
    except UserError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Alert {alert.type} on {alert.target}: {verb}d.")
    back = str(request.POST.get("next", ""))
    return redirect(back if back.startswith("/monitoring/alerts/") else "console:alerts")
