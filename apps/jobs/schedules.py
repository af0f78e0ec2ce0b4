"""Recurring jobs of the django-q2 cluster, by name, so `setup_schedules` can run again without duplicating them.

Later features (nightly backups, retention, verification, health) add their entries to SCHEDULES.
"""
from django_q.models import Schedule

SCHEDULES = [
    # name, function, schedule type, every N minutes
    ("Settle dead jobs", "apps.jobs.tasks.reap_dead_jobs", Schedule.MINUTES, 1),
    ("Enforce storage tiers", "apps.jobs.tasks.enforce_tiers", Schedule.MINUTES, 24 * 60),
]


def ensure() -> list[tuple[str, bool]]:
    done = []
    for name, func, schedule_type, minutes in SCHEDULES:
        _, created = Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes,
                                 "repeats": -1},
        )
        done.append((name, created))
    return done
