"""Document sources, their versions, and the pack/chunk index of the content-addressed repository.

A version is committed by its manifest (written last to storage) and its row going to `succeeded` in the
same transaction that records the packs and chunks it added: a chunk is only ever reused from a committed
version, so an interrupted backup leaves unreferenced packs, never a reference to a missing one.
"""
from django.db import models

from apps.backups.models import StoredObject
from apps.core.models import LeaseHolder, TimeStampedModel, UlidModel


class DocumentSource(TimeStampedModel, LeaseHolder):
    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    root_path = models.CharField(max_length=1024, blank=True,
                                 help_text="Absolute path of the directory tree to back up (a directory source).")
    # An object-store source: the objects under `prefix` in this location's bucket (walk.walk_objects).
    object_location = models.ForeignKey(
        "storage.StorageLocation", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Back up the objects of this storage location (S3, Azure, GCS) instead of a directory.",
    )
    prefix = models.CharField(max_length=1024, blank=True,
                              help_text="Key prefix inside object_location (e.g. invoices/); empty: all of it.")
    include = models.JSONField(default=list, blank=True,
                               help_text='Glob patterns of relative paths to back up, e.g. ["*.pdf"]; empty: all.')
    exclude = models.JSONField(default=list, blank=True,
                               help_text='Glob patterns of relative paths (files or directories) to skip.')
    follow_symlinks = models.BooleanField(
        default=False, help_text="Back up what symbolic links point to (off: the links themselves are recorded).")
    storage_location = models.ForeignKey(
        "storage.StorageLocation", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Where versions are written; the primary location when empty.",
    )
    replica_locations = models.ManyToManyField(
        "storage.StorageLocation", blank=True, related_name="replica_of_document_sources",
        help_text="Further locations every committed version is copied to (replication.py).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def origin(self) -> str:
        """Where the documents are read from, for messages and the manifest."""
        if self.object_location_id:
            return f"{self.object_location.name}:{self.prefix}"
        return self.root_path


class VersionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DocumentVersion(UlidModel):
    """One document backup: the state of a source's tree at one time."""

    source = models.ForeignKey(DocumentSource, on_delete=models.PROTECT, related_name="versions")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="The version whose unchanged files this one reused without reading.")
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.PENDING,
                              db_index=True)
    storage_location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files = models.PositiveIntegerField(default=0)
    files_new = models.PositiveIntegerField(default=0)
    files_changed = models.PositiveIntegerField(default=0)
    files_removed = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0, help_text="Size of the files of this version.")
    bytes_added = models.BigIntegerField(default=0, help_text="Stored bytes this version added (packs, manifest).")
    bytes_stored = models.BigIntegerField(default=0, help_text="Stored bytes of the packs this version references.")
    problems = models.JSONField(default=list, blank=True,
                                help_text="Files that vanished or changed while being read: [{path, problem}].")
    # The manifest (encoded through the pipeline): what the stored bytes are authenticated against.
    manifest_key = models.CharField(max_length=1024, blank=True)
    manifest_sha256_stored = models.CharField(max_length=64, blank=True)
    manifest_sha256_raw = models.CharField(max_length=64, blank=True)
    manifest_compression = models.CharField(max_length=8, blank=True)
    manifest_cipher = models.CharField(max_length=16, blank=True)
    manifest_key_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source.name} {self.pk}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class DocumentPack(StoredObject):
    """A stored pack: many chunks, one after the other, encoded as one pipeline artifact (docs/FORMAT.md)."""

    location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey(DocumentVersion, on_delete=models.PROTECT, related_name="packs",
                                help_text="The version that wrote it.")
    chunks = models.PositiveIntegerField(default=0)
    damaged = models.BooleanField(default=False, help_text="Verify found it missing or corrupt: its chunks are "
                                                           "stored anew by the next backup that has them.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "key"], name="uniq_document_pack_key")]

    def __str__(self) -> str:
        return self.key


class DocumentChunk(models.Model):
    """Where a chunk's bytes are: its pack and its range in the pack's raw (decoded) stream."""

    location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    sha256 = models.CharField(max_length=64)
    pack = models.ForeignKey(DocumentPack, on_delete=models.PROTECT, related_name="chunk_rows")
    offset = models.BigIntegerField()
    length = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "sha256"], name="uniq_document_chunk")]

    def __str__(self) -> str:
        return self.sha256


class DocumentReplica(models.Model):
    """A copy of a committed version in one of its source's replica locations: the packs holding its chunks
    (with their index rows for that location), then its manifest, last."""

    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="replicas")
    location = models.ForeignKey("storage.StorageLocation", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, default="pending", db_index=True,
                              help_text="pending, copying, present or failed.")
    bytes = models.BigIntegerField(default=0, help_text="Stored bytes copied by this replication.")
    packs_copied = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    copied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "location"], name="uniq_document_replica")]

    def __str__(self) -> str:
        return f"{self.version_id} in {self.location_id}"
