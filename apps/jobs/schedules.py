"""Recurring jobs of the django-q2 cluster, by name, so `setup_schedules` can run again without duplicating them.

Later features (nightly backups, retention, verification, health) add their entries to SCHEDULES.
"""
from django_q.models import Schedule

SCHEDULES = [
    # name, function, when: every N minutes (an int) or a cron line (server time zone)
    ("Settle dead jobs", "apps.jobs.tasks.reap_dead_jobs", 1),
    ("Full database backups", "apps.backups.tasks.full_backups", "0 2 * * *"),
    ("Incremental database backups", "apps.backups.tasks.incremental_backups", "0 0,6,12,18 * * *"),
    ("Full document backups", "apps.documents.tasks.backup_all_sources", "0 3 * * *"),
    ("Enforce storage tiers", "apps.backups.tasks.enforce_tiers", "30 4 * * *"),
    ("Enforce retention", "apps.retention.tasks.enforce_retention", "0 1 * * *"),
    ("Verify backups", "apps.verification.tasks.verify_backups", "0 4 * * *"),
    ("Health checks", "apps.monitoring.tasks.health_check", 5),
    ("Replication check", "apps.monitoring.tasks.replication_check", "15 * * * *"),
    ("Deliver notifications", "apps.monitoring.tasks.deliver_outbox", 1),
    ("DR drill", "apps.recovery.tasks.dr_drills", "0 4 * * 0"),
    ("DR health checks", "apps.recovery.tasks.dr_health_checks", 1),
    ("Expire approval requests", "apps.approvals.tasks.expire_requests", 5),
]


def ensure() -> list[tuple[str, bool]]:
    done = []
    for name, func, when in SCHEDULES:
        timing = ({"schedule_type": Schedule.MINUTES, "minutes": when} if isinstance(when, int)
                  else {"schedule_type": Schedule.CRON, "cron": when})
        _, created = Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "repeats": -1, **timing},
        )
        done.append((name, created))
    return done
