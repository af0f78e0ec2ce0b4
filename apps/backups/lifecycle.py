"""Storage lifecycle: move replicas to colder tiers by age (apps/storage/tiering.py rules), and keep each
location's used bytes current (for the Storage Full alert).

A replica's artifacts change tier; its manifest never does: it stays readable at once in every location, so
`catalog_sync` and verification of "exists" never wait for a rehydration. A tier moves only colder. Used bytes
come from the catalog (present replicas plus archived WAL), not from listing the store: cheap enough to refresh
after every backup, copy and deletion.
"""
import logging
from datetime import datetime

from django.db.models import Sum
from django.utils import timezone

from apps.backups.models import BackupStatus, Replica, ReplicaStatus, WalSegment
from apps.jobs.progress import JobContext, note
from apps.storage import backends, tiering
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)


def enforce_tiers(*, location: StorageLocation | None = None, now: datetime | None = None, dry_run: bool = False,
                  ctx: JobContext | None = None) -> dict:
    """Apply the tier rules to every present replica (of one location, or all); returns what moved (or would)."""
    now = now or timezone.now()
    replicas = (Replica.objects.filter(status=ReplicaStatus.PRESENT, backup__status=BackupStatus.SUCCEEDED,
                                       location__enabled=True)
                .select_related("backup", "location").order_by("location__name", "backup__created_at"))
    if location is not None:
        replicas = replicas.filter(location=location)
    moved, failed = [], []
    stores: dict[int, object] = {}
    for replica in replicas:
        loc, backup = replica.location, replica.backup
        age_days = (now - (backup.finished_at or backup.created_at)).total_seconds() / 86400
        tier = tiering.due_tier(loc, age_days)
        if tier is None or not tiering.colder(loc.kind, tier, replica.storage_class):
            continue
        entry = {"backup_id": backup.pk, "location": loc.name, "from": replica.storage_class or "(default)",
                 "to": tier, "age_days": round(age_days, 1)}
        if dry_run:
            moved.append(entry)
            continue
        try:
            store = stores.get(loc.pk) or stores.setdefault(loc.pk, backends.for_location(loc))
            for artifact in backup.artifacts.all():
                store.set_tier(artifact.key, tier)
        except StorageError as exc:
            failed.append({**entry, "error": str(exc)})
            note(ctx, logger=log, message=f"tier of {backup.pk}@{loc.name} not changed: {exc}")
            continue
        Replica.objects.filter(pk=replica.pk).update(storage_class=tier, tier_changed_at=now)
        moved.append(entry)
        note(ctx, logger=log, message=f"{backup.pk}@{loc.name}: {entry['from']} → {tier} ({entry['age_days']} days old)")
    if not dry_run:
        for loc in {r.location for r in replicas} if location is None else [location]:
            refresh_used_bytes(loc)
    return {"dry_run": dry_run, "moved": moved, "failed": failed}


def refresh_used_bytes(location: StorageLocation) -> int:
    backups = Replica.objects.filter(location=location, status__in=[ReplicaStatus.PRESENT, ReplicaStatus.CORRUPT]
                                     ).aggregate(n=Sum("bytes"))["n"] or 0
    wal = WalSegment.objects.filter(storage_location=location).aggregate(n=Sum("size_stored"))["n"] or 0
    used = backups + wal
    StorageLocation.objects.filter(pk=location.pk).update(used_bytes=used, used_bytes_at=timezone.now())
    location.used_bytes = used
    return used


