"""A large catalog in a few bulk inserts: targets, their backups (with artifacts, replicas and jobs) and alerts.

Used by the query-count tests (tests/test_prod_queries.py) and the load benchmark (bench/load_catalog.py). The
rows are what the lists show; nothing is stored in any location.
"""
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.backups.models import (
    Backup,
    BackupArtifact,
    BackupStatus,
    Replica,
    ReplicaStatus,
)
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job, JobStatus
from apps.monitoring.models import Alert, AlertStatus, Severity
from apps.storage.models import StorageLocation

STATUSES = [BackupStatus.SUCCEEDED] * 8 + [BackupStatus.FAILED, BackupStatus.EXPIRED]


def fill(*, targets: int, backups: int, alerts: int = 0, prefix: str = "load", batch: int = 2000,
         minutes_apart: int = 1) -> dict:
    """Add `targets` targets and `backups` backups spread over them (each with a job, an artifact and a replica;
    one finished every `minutes_apart` minutes, newest now), and `alerts` alerts. Returns counts of what exists
    afterwards."""
    now = timezone.now()
    with transaction.atomic():
        primary, _ = StorageLocation.objects.get_or_create(
            name=f"{prefix}-primary", defaults={"kind": "local", "path": "/nonexistent/load", "is_primary": False})
        replica, _ = StorageLocation.objects.get_or_create(
            name=f"{prefix}-replica", defaults={"kind": "local", "path": "/nonexistent/load-replica"})
        DatabaseTarget.objects.bulk_create([
            DatabaseTarget(name=f"{prefix}-{i:04d}", host="127.0.0.1", port=5432, dbname=f"db{i}", user="backup",
                           storage_location=primary, tags=["load"])
            for i in range(targets)
        ])
        made = list(DatabaseTarget.objects.filter(name__startswith=f"{prefix}-").order_by("pk")) if targets else []
        for target in made:
            target.replica_locations.add(replica)
        rows, jobs, artifacts, replicas = [], [], [], []
        for n in range(backups):
            target = made[n % len(made)]
            status = STATUSES[n % len(STATUSES)]
            finished = now - timedelta(minutes=n * minutes_apart)
            job = Job(type="backup.database", status=JobStatus.FAILED if status == BackupStatus.FAILED
                      else JobStatus.SUCCEEDED, started_at=finished - timedelta(seconds=30), finished_at=finished,
                      heartbeat_at=finished, worker="load:1:1:1", result={"size_bytes": 1000 + n})
            jobs.append(job)
            backup = Backup(database_target=target, status=status, storage_location=primary, job=job,
                            started_at=finished - timedelta(seconds=30), finished_at=finished, size_raw=4000 + n,
                            size_stored=1000 + n, sha256=f"{n:064x}", compression="zstd", encryption_key_id="k1",
                            manifest_key=f"{target.name}/{n}/manifest.json", row_counts={"public.item": n},
                            error="pg_dump failed" if status == BackupStatus.FAILED else "")
            rows.append(backup)
            if status != BackupStatus.FAILED:
                artifacts.append(BackupArtifact(backup=backup, name="dump", key=f"{target.name}/{n}/dump.zst",
                                                size_raw=4000 + n, size_stored=1000 + n, sha256_raw=f"{n:064x}",
                                                sha256_stored=f"{n:064x}", compression="zstd", cipher="aes-256-gcm",
                                                key_id="k1"))
                replicas.append(Replica(backup=backup, location=replica, status=ReplicaStatus.PRESENT))
        Job.objects.bulk_create(jobs, batch_size=batch)
        Backup.objects.bulk_create(rows, batch_size=batch)
        BackupArtifact.objects.bulk_create(artifacts, batch_size=batch)
        Replica.objects.bulk_create(replicas, batch_size=batch)
        Alert.objects.bulk_create([
            Alert(type="backup_failed", severity=Severity.values[i % len(Severity.values)],
                  status=AlertStatus.RESOLVED if i % 3 else AlertStatus.OPEN,
                  fingerprint=f"{prefix}:backup_failed:{i}", target=made[i % len(made)].name,
                  database_target=made[i % len(made)], message=f"Backup of {made[i % len(made)].name} failed",
                  first_seen=now - timedelta(hours=i), last_seen=now - timedelta(minutes=i))
            for i in range(alerts)
        ], batch_size=batch)
    return {"targets": DatabaseTarget.objects.count(), "backups": Backup.objects.count(),
            "jobs": Job.objects.count(), "alerts": Alert.objects.count()}
