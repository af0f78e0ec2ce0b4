"""What the catalog_sync tests compare: the catalog as it was, and the catalog wiped as on a fresh database."""
from apps.backups.models import Backup, BackupArtifact, Replica, WalSegment
from apps.databases.models import DatabaseTarget


def catalog_snapshot() -> dict:
    return {
        b.pk: {"kind": b.kind, "format": b.format, "parent": b.parent_id, "sha256": b.sha256, "status": b.status,
               "size_stored": b.size_stored, "row_counts": b.row_counts, "lsn_stop": b.lsn_stop,
               "system_identifier": b.system_identifier, "created_at": b.created_at, "manifest_key": b.manifest_key,
               "artifacts": sorted((a.name, a.key, a.sha256_stored, a.sha256_raw, a.size_stored, a.key_id)
                                   for a in b.artifacts.all())}
        for b in Backup.objects.filter(status="succeeded")
    }


def wipe_catalog() -> None:
    """Everything catalog_sync rebuilds goes, as after losing the metadata database (locations stay)."""
    WalSegment.objects.all().delete()
    Replica.objects.all().delete()
    BackupArtifact.objects.all().delete()
    while Backup.objects.exists():  # children before parents (PROTECT)
        Backup.objects.filter(children__isnull=True).delete()
    for target in DatabaseTarget.objects.all():
        target.replica_locations.clear()
    DatabaseTarget.objects.all().delete()
