"""The health check (every 5 minutes): live probes of what the catalog cannot tell, then every rule.

Probes: each enabled target accepts a connection; each enabled location answers its backend's check. Their
outcomes are stored (HealthCheck rows, one per probe and subject) for the unreachable rules and the dashboard.
Backup age, WAL lag, capacity and replication are judged by the rules from the catalog."""
import logging

import psycopg
from django.utils import timezone

from apps.core.errors import UserError
from apps.monitoring import engine
from apps.monitoring.models import HealthCheck
from apps.monitoring.rules import storage_unreachable, target_unreachable

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5


def probe_target(target) -> tuple[bool, str]:
    from apps.databases.connection import PgConn

    try:
        kwargs = {**PgConn.for_target(target).kwargs(app_name="backupsite-health"), "connect_timeout": CONNECT_TIMEOUT}
        with psycopg.connect(**kwargs) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    except (psycopg.Error, UserError, OSError) as exc:
        return False, str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    return True, f"PostgreSQL {version}"


def probe_location(location) -> tuple[bool, str]:
    from apps.storage import backends
    from apps.storage.backends import StorageError

    try:
        backends.for_location(location).check()
    except (StorageError, OSError) as exc:
        return False, str(exc)[:500]
    except Exception as exc:  # an SDK's own error: unreachable all the same, never a crashed health check
        return False, f"{type(exc).__name__}: {exc}"[:500]
    return True, "reachable"


def record(probe: str, subject: str, ok: bool, detail: str) -> None:
    HealthCheck.objects.update_or_create(probe=probe, subject=subject,
                                         defaults={"ok": ok, "detail": detail, "checked_at": timezone.now()})


def run_health_checks() -> dict:
    from apps.backups import lifecycle
    from apps.databases.models import DatabaseTarget
    from apps.storage.models import StorageLocation

    report = {"targets": {}, "locations": {}}
    targets = list(DatabaseTarget.objects.filter(enabled=True))
    for target in targets:
        ok, detail = probe_target(target)
        record(target_unreachable.PROBE, target.name, ok, detail)
        report["targets"][target.name] = {"ok": ok, "detail": detail}
    locations = list(StorageLocation.objects.filter(enabled=True))
    for location in locations:
        ok, detail = probe_location(location)
        lifecycle.refresh_used_bytes(location)  # from the catalog: the Storage Full rule reads it
        record(storage_unreachable.PROBE, location.name, ok, detail)
        report["locations"][location.name] = {"ok": ok, "detail": detail}
    # Subjects removed or disabled since: forget their probes (their alerts then resolve).
    HealthCheck.objects.filter(probe=target_unreachable.PROBE).exclude(subject__in=[t.name for t in targets]).delete()
    HealthCheck.objects.filter(probe=storage_unreachable.PROBE).exclude(
        subject__in=[loc.name for loc in locations]).delete()
    report["alerts"] = engine.evaluate()
    return report
