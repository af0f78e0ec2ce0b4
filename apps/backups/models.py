from django.db import models

from apps.core.models import TimeStampedModel, UlidModel


class BackupKind(models.TextChoices):
    FULL = "full"
    INCREMENTAL = "incremental"
    DIFFERENTIAL = "differential"
    WAL = "wal"
    LOGICAL = "logical"
    DOCUMENTS = "documents"


class BackupFormat(models.TextChoices):
    CUSTOM = "custom", "pg_dump custom"
    PLAIN = "plain", "Plain SQL"
    SCHEMA = "schema", "Schema only (SQL)"
    DATA = "data", "Data only (SQL)"
    BASEBACKUP = "basebackup", "pg_basebackup"
    FILES = "files", "Files"


class BackupStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETED = "deleted"


class Backup(UlidModel):
    database_target = models.ForeignKey(
        "databases.DatabaseTarget", null=True, blank=True, on_delete=models.PROTECT, related_name="backups"
    )
    kind = models.CharField(max_length=16, choices=BackupKind.choices, default=BackupKind.FULL)
    format = models.CharField(max_length=16, choices=BackupFormat.choices, default=BackupFormat.CUSTOM)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    status = models.CharField(max_length=16, choices=BackupStatus.choices, default=BackupStatus.PENDING, db_index=True)
    storage_location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    size_raw = models.BigIntegerField(null=True, blank=True)
    size_stored = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the stored bytes of the main artifact.")
    compression = models.CharField(max_length=8, blank=True)
    encryption_key_id = models.CharField(max_length=64, blank=True)
    lsn_start = models.CharField(max_length=32, blank=True)
    lsn_stop = models.CharField(max_length=32, blank=True)
    timeline = models.PositiveIntegerField(null=True, blank=True)
    server_version = models.CharField(max_length=64, blank=True)
    system_identifier = models.CharField(max_length=32, blank=True, help_text="pg_control system identifier (physical).")
    row_counts = models.JSONField(default=dict, blank=True)
    manifest_key = models.CharField(max_length=1024, blank=True)
    legal_hold = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # md5 of the ordered rows of each small table, taken in the backup's snapshot (logical backups): what a
    # restore-level verification compares beyond row counts (apps/databases/engines/content_hash.py).
    content_hashes = models.JSONField(default=dict, blank=True)
    # The newest verification of the backup (any replica), kept here so every list can show it cheaply.
    last_verified_at = models.DateTimeField(null=True, blank=True)
    last_verified_level = models.CharField(max_length=16, blank=True)
    last_verification_result = models.CharField(max_length=8, blank=True, help_text="passed or failed")
    verification_error = models.TextField(blank=True, help_text="What the last failed verification found.")
    # Set by retention when the backup's artifacts were moved to the archive tier / archive location.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["database_target", "status", "-created_at"]),
            # The dashboard's figures per target and status (apps.backups.selectors.target_figures) read this index
            # alone on PostgreSQL (an index-only scan in its order: no heap tuple, no hash), about half the CPU of a
            # scan of the table's wide rows. `include` is PostgreSQL's; elsewhere a plain (target, status) index.
            models.Index(fields=["database_target", "status"],
                         include=["created_at", "finished_at", "size_stored", "size_raw"], name="backup_figures_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.database_target or '?'} {self.kind}/{self.format} {self.id}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class StoredObject(TimeStampedModel):
    """An encoded object in storage, as the catalog knows it: what Decoder.for_record holds the stored bytes to."""

    key = models.CharField(max_length=1024)
    size_raw = models.BigIntegerField()
    size_stored = models.BigIntegerField()
    sha256_raw = models.CharField(max_length=64)
    sha256_stored = models.CharField(max_length=64)
    compression = models.CharField(max_length=8)
    cipher = models.CharField(max_length=16)
    key_id = models.CharField(max_length=64, blank=True)

    class Meta:
        abstract = True


class BackupArtifact(StoredObject):
    """One stored file of a backup; its key is the same in every location that holds a replica."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=255)

    class Meta:
        ordering = ["backup", "name"]
        constraints = [models.UniqueConstraint(fields=["backup", "name"], name="uniq_artifact_name")]

    def __str__(self) -> str:
        return self.key


class ReplicaStatus(models.TextChoices):
    PENDING = "pending"
    COPYING = "copying"
    PRESENT = "present"
    FAILED = "failed"
    CORRUPT = "corrupt"
    DELETED = "deleted"


class Replica(TimeStampedModel):
    """A backup's artifacts (and manifest) as held by one storage location."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="replicas")
    location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="replicas")
    status = models.CharField(max_length=16, choices=ReplicaStatus.choices, default=ReplicaStatus.PENDING)
    storage_class = models.CharField(max_length=32, blank=True)
    bytes = models.BigIntegerField(default=0)
    checksum_verified_at = models.DateTimeField(null=True, blank=True)
    copied_at = models.DateTimeField(null=True, blank=True, help_text="When the copy completed and was verified.")
    tier_changed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backup", "location"], name="uniq_replica")]

    def __str__(self) -> str:
        return f"{self.backup_id}@{self.location}"


class WalSegment(StoredObject):
    """One archived WAL file (segment, timeline history or backup label) of a target, as stored once."""

    database_target = models.ForeignKey("databases.DatabaseTarget", on_delete=models.PROTECT, related_name="wal")
    name = models.CharField(max_length=64, help_text="PostgreSQL's file name, e.g. 000000010000000000000003.")
    timeline = models.PositiveIntegerField()
    start_lsn = models.CharField(max_length=32, blank=True, help_text="First LSN of a segment; empty for other files.")
    storage_location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    last_commit_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Timestamp of the last commit or restore point recorded in this file: the latest second it can "
                  "recover to.",
    )

    class Meta:
        ordering = ["database_target", "name"]
        constraints = [models.UniqueConstraint(fields=["database_target", "name"], name="uniq_wal_file")]

    def __str__(self) -> str:
        return f"{self.database_target_id}:{self.name}"


class RestorePoint(TimeStampedModel):
    """A named restore point (pg_create_restore_point) found in an archived segment: a PITR target by name."""

    database_target = models.ForeignKey("databases.DatabaseTarget", on_delete=models.CASCADE,
                                        related_name="restore_points")
    name = models.CharField(max_length=64)
    lsn = models.CharField(max_length=32)
    timeline = models.PositiveIntegerField()
    segment = models.CharField(max_length=64, help_text="The archived segment that holds it.")

    class Meta:
        ordering = ["database_target", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["database_target", "segment", "lsn"], name="uniq_restore_point")]

    def __str__(self) -> str:
        return f"{self.name} @ {self.lsn}"
