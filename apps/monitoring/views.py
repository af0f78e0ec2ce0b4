"""Plain endpoints for probes and scrapers: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).

/healthz answers 200 whenever the process serves requests: no database, no auth (a liveness probe must not
restart the server because the database is down). /readyz answers 200 only when the metadata database answers
and the django-q2 job worker is alive (503 otherwise, with what failed); no auth, and it names no data.
/metrics: see METRICS_TOKEN in the settings and docs/OPERATIONS.md."""
import hmac
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core.roles import VIEWER, has_role
from apps.monitoring import metrics


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def worker_alive() -> tuple[bool, str]:
    """The cluster finished a task recently (its minute-by-minute sweep guarantees one), or reports itself."""
    if settings.Q_CLUSTER.get("sync"):
        return True, "tasks run inline (Q_CLUSTER sync)"
    from django_q.models import Task

    since = timezone.now() - timedelta(seconds=settings.READYZ_WORKER_SECONDS)
    last = Task.objects.filter(stopped__gte=since).order_by("-stopped").values_list("stopped", flat=True).first()
    if last is not None:
        return True, f"last task finished {(timezone.now() - last).total_seconds():.0f} s ago"
    try:
        from django_q.status import Stat

        clusters = Stat.get_all()
    except Exception:  # the broker's status store is unreachable: judged by tasks alone
        clusters = []
    if clusters:
        return True, f"{len(clusters)} cluster(s) reporting"
    return False, f"no task finished in the last {settings.READYZ_WORKER_SECONDS} s and no cluster reporting"


@never_cache
@require_GET
def readyz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = {"ok": True, "detail": "answers"}
    except DatabaseError as exc:
        checks["database"] = {"ok": False, "detail": type(exc).__name__}
    if checks["database"]["ok"]:
        ok, detail = worker_alive()
        checks["worker"] = {"ok": ok, "detail": detail}
    else:
        checks["worker"] = {"ok": False, "detail": "not checked: the database does not answer"}
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def _metrics_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    if settings.METRICS_PUBLIC:
        return True
    return has_role(getattr(request, "user", None), VIEWER)


@never_cache
@require_GET
def metrics_view(request):
    if not _metrics_allowed(request):
        response = HttpResponse("Metrics need a bearer token (METRICS_TOKEN) or a signed-in viewer.\n",
                                status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)
