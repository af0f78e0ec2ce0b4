"""django-q2 entry points (setup_schedules): thin wrappers."""
from apps.monitoring import engine, health, outbox


def health_check() -> dict:
    """Every 5 minutes: probe targets and locations, then evaluate every alert rule."""
    return health.run_health_checks()


def replication_check() -> dict:
    """Hourly: replicas failed or lagging raise (or clear) Replication Failed."""
    return engine.evaluate(types=["replication_failed"])


def deliver_outbox() -> dict:
    """Every minute, and right after alerts change: send the deliveries that are due."""
    return outbox.deliver_due()
