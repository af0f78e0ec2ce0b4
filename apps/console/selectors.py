"""Reads of the console pages that span apps: each composes the apps' own selectors (monitoring's dashboard,
documents' statistics, recovery's plan status, the WAL recovery window) into what one page shows."""
from datetime import timedelta
from types import SimpleNamespace

from django.db.models import DurationField, ExpressionWrapper, F, Max
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.core.selectors import fetch_all


def _rpo_hours() -> int:
    """The backup_age rule's built-in RPO (a class attribute: no threshold rows to read for it)."""
    from apps.monitoring.rules import registry

    return registry.get("backup_age").defaults["rpo_hours"]


def _light(last_success_at, rpo_seconds: float, now) -> str:
    """green: last success within the RPO; amber: within twice it; red: older or never."""
    if last_success_at is None:
        return "red"
    age = (now - last_success_at).total_seconds()
    return "green" if age <= rpo_seconds else "amber" if age <= 2 * rpo_seconds else "red"


def _daily(qs, *, group: str, size: str, now, days: int) -> dict:
    """Per `group` and day (UTC) of `finished_at`, over rows finished in the last `days`: the largest `size` and
    the longest run (finished_at - started_at) of the day, aggregated by the database. One query, at most one
    row per group and day whatever the number of rows: what the 30-day charts draw."""
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    out: dict = {}
    for key, day, largest, longest in (
            qs.filter(finished_at__gte=now - timedelta(days=days)).annotate(day=TruncDate("finished_at"))
            .values(group, "day").annotate(largest=Max(size), longest=Max(took))
            .order_by(group, "day").values_list(group, "day", "largest", "longest")):
        out.setdefault(key, []).append({"at": day, "size": largest,
                                        "seconds": round(longest.total_seconds(), 2) if longest is not None else None})
    return out


def daily_series(*, now=None, days: int = 30) -> dict[int, list[dict]]:
    """Per target id: one point a day over `days` of its succeeded backups ({"at": date, "size": the day's
    largest stored bytes, "seconds": the day's longest backup, None if no start was recorded})."""
    from apps.backups.models import Backup, BackupStatus

    return _daily(Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False),
                  group="database_target", size="size_stored", now=now or timezone.now(), days=days)


def document_rows(*, now=None) -> list[dict]:
    """Each document source: last success against the RPO, versions, files and size (the charts' daily series
    are served apart: chart_series)."""
    from apps.documents import selectors as doc_selectors

    now = now or timezone.now()
    rpo_seconds = _rpo_hours() * 3600
    return [{**row, "rpo_seconds": rpo_seconds, "light": _light(row["last_success_at"], rpo_seconds, now)}
            for row in doc_selectors.source_rows(with_ids=True)]


def chart_series(*, now=None, days: int = 30) -> list[dict]:
    """The 30-day size and duration lines of every target and document source (by name), one point a day: two
    aggregate queries and the names, whatever the number of backups. What /dashboard/charts.json serves."""
    from apps.databases.models import DatabaseTarget
    from apps.documents.models import DocumentSource, DocumentVersion, VersionStatus

    now = now or timezone.now()

    def line(name, kind, points):
        return {"name": name, "kind": kind,
                "sizes": [{"x": p["at"].isoformat(), "y": p["size"]} for p in points if p["size"] is not None],
                "durations": [{"x": p["at"].isoformat(), "y": p["seconds"]} for p in points
                              if p["seconds"] is not None]}

    targets = daily_series(now=now, days=days)
    sources = _daily(DocumentVersion.objects.filter(status=VersionStatus.SUCCEEDED), group="source",
                     size="bytes_stored", now=now, days=days)
    return ([line(name, "database", targets.get(pk, []))
             for pk, name in DatabaseTarget.objects.order_by("name").values_list("pk", "name")]
            + [line(name, "documents", sources.get(pk, []))
               for pk, name in DocumentSource.objects.order_by("name").values_list("pk", "name")])


def dashboard(*, now=None) -> dict:
    """Every target and document source with its status light, alerts by severity, storage per location and
    tier, replication lag, DR readiness (plans as last checked, no live probe) and the backup totals
    (`statistics`, as apps.backups.selectors.statistics(per_target=False)). A fixed number of queries; no
    backup row comes to Python one by one. The 30-day series are not here: chart_series, fetched by the page."""
    from apps.backups import selectors as backup_selectors
    from apps.monitoring import selectors as monitoring
    from apps.recovery import selectors as recovery

    now = now or timezone.now()
    # One scan of the backups per target serves the rows' rates and the cards' totals (statistics_of).
    figures = backup_selectors.target_figures(now=now, windows=(7, 30))
    # The rows carry their target's id and address (read with the targets, not by a second query of them).
    data = monitoring.dashboard(now=now, size_points=False, figures=figures, address=True)
    data["statistics"] = backup_selectors.statistics_of(figures, days=30)
    for row in data["targets"]:
        row["light"] = _light(row["last_success_at"], row["rpo_seconds"], now)
    data["documents"] = document_rows(now=now)
    data["plans"] = [recovery.plan_status(p, live=False) for p in recovery.plans()]
    return data


_JOB_COLUMNS = ("pk", "type", "status", "progress_done", "requested_by", "via", "created_at")
_BACKUP_COLUMNS = ("pk", "database_target", "format", "status", "size_stored", "finished_at", "last_verified_at",
                   "last_verification_result", "last_verified_level")


def recent_lists(*, jobs: int = 15, backups: int = 20) -> tuple[list, list]:
    """The dashboard's short lists, newest first: the last `jobs` jobs and `backups` backups with the columns their
    tables show (attributes as on the models; `requested_by` and `database_target` are the user's and target's
    names, or None, as the template printed them). On PostgreSQL two statements written once (the two composed
    querysets and their model instances were ~4 ms a page); elsewhere the ORM's, as models."""
    from django.db import connection

    from apps.backups import selectors as backup_selectors
    from apps.backups.models import Backup
    from apps.databases.models import DatabaseTarget
    from apps.jobs import selectors as job_selectors
    from apps.jobs.models import Job

    if connection.vendor != "postgresql":
        return (list(job_selectors.jobs().only("id", "type", "status", "progress_done", "via", "created_at",
                                               "requested_by__username")[:jobs]),
                list(backup_selectors.backups().select_related(None).select_related("database_target").only(
                    "id", "database_target__name", "format", "status", "size_stored", "finished_at", "created_at",
                    "last_verified_at", "last_verification_result", "last_verified_level")[:backups]))
    from django.contrib.auth import get_user_model

    user = get_user_model()
    q = connection.ops.quote_name
    job_rows = [SimpleNamespace(**dict(zip(_JOB_COLUMNS, row))) for row in fetch_all(f"""
            SELECT j.id, j.type, j.status, j.progress_done, u.{q(user.USERNAME_FIELD)}, j.via, j.created_at
            FROM {Job._meta.db_table} j LEFT JOIN {user._meta.db_table} u ON u.id = j.requested_by_id
            ORDER BY j.created_at DESC LIMIT %s""", [jobs])]
    backup_rows = [SimpleNamespace(**dict(zip(_BACKUP_COLUMNS, row))) for row in fetch_all(f"""
            SELECT b.id, t.name, b.format, b.status, b.size_stored, b.finished_at, b.last_verified_at,
                   b.last_verification_result, b.last_verified_level
            FROM {Backup._meta.db_table} b LEFT JOIN {DatabaseTarget._meta.db_table} t ON t.id = b.database_target_id
            ORDER BY b.created_at DESC LIMIT %s""", [backups])]
    return job_rows, backup_rows


def dashboard_charts(data: dict) -> dict:
    """What the dashboard's bar and doughnut draw, from what the page computed anyway (JSON for json_script,
    never inlined HTML); the lines come from /dashboard/charts.json (chart_series)."""
    return {
        "storage": [{"location": s["location"], "tiers": s["bytes_by_tier"] or {"used": s["used_bytes"]}}
                    for s in data["storage"]],
        "alerts": data["open_alerts_by_severity"],
    }


def timeline(window: dict, *, now=None) -> dict:
    """The recoverable window (wal_selectors.recovery_window(...).as_dict()) laid out on one time axis: each
    span and each gap as left / width percentages, for the target page's drawing."""
    spans = [s for s in window.get("spans", []) if s.get("earliest_at") and s.get("latest_at")]
    if not spans:
        return {"spans": [], "gaps": window.get("gaps", []), "start": None, "end": None}
    start = min(s["earliest_at"] for s in spans)
    end = max(s["latest_at"] for s in spans)
    total = max((end - start).total_seconds(), 1.0)

    def place(a, b) -> dict:
        return {"left": round(100 * (a - start).total_seconds() / total, 2),
                "width": max(round(100 * (b - a).total_seconds() / total, 2), 0.5)}

    laid = [{**s, **place(s["earliest_at"], s["latest_at"])} for s in spans]
    holes = []
    ordered = sorted(spans, key=lambda s: s["earliest_at"])
    for before, after in zip(ordered, ordered[1:]):
        if after["earliest_at"] > before["latest_at"]:
            holes.append({"from": before["latest_at"], "to": after["earliest_at"],
                          **place(before["latest_at"], after["earliest_at"])})
    return {"spans": laid, "holes": holes, "gaps": window.get("gaps", []), "start": start, "end": end}


def within_window(window: dict, moment) -> bool:
    return any(s.get("earliest_at") and s.get("latest_at") and s["earliest_at"] <= moment <= s["latest_at"]
               for s in window.get("spans", []))


def describe_window(window: dict) -> str:
    spans = [s for s in window.get("spans", []) if s.get("earliest_at") and s.get("latest_at")]
    if not spans:
        return "no recoverable window (no physical backup with its WAL archived)"
    return "; ".join(f"{s['earliest_at'].isoformat(sep=' ', timespec='seconds')} to "
                     f"{s['latest_at'].isoformat(sep=' ', timespec='seconds')}" for s in spans)


def chains(target, *, limit: int = 200) -> list[dict]:
    """The target's newest backups grouped into chains: a full backup followed by the incrementals built on it
    (logical backups are chains of one). Newest chain first."""
    from apps.backups import selectors as backup_selectors

    rows = list(backup_selectors.backups(target=target.name)[:limit])
    by_id = {b.pk: b for b in rows}

    def root_of(b):
        seen = set()
        while b.parent_id and b.parent_id in by_id and b.pk not in seen:
            seen.add(b.pk)
            b = by_id[b.parent_id]
        return b.parent_id if b.parent_id else b.pk

    grouped: dict[str, list] = {}
    for b in rows:
        grouped.setdefault(root_of(b), []).append(b)
    out = []
    for root_id, members in grouped.items():
        members.sort(key=lambda b: (b.created_at, b.pk))
        out.append({"root": root_id, "backups": members, "newest": members[-1].created_at,
                    "complete": root_id in by_id})
    return sorted(out, key=lambda c: c["newest"], reverse=True)


def alert_types() -> list[str]:
    """The alert types that occur, for the alerts page's filter."""
    from apps.monitoring.models import Alert

    return list(Alert.objects.order_by("type").values_list("type", flat=True).distinct())


def plan_history(plan, *, limit: int = 20) -> dict:
    """A DR plan's latest drills and failovers, newest first."""
    return {"drills": list(plan.drills.all()[:limit]), "failovers": list(plan.failovers.all()[:limit])}
