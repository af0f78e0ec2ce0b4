"""Job runners for document backups, restores, exports and verification: thin, they call the services.

"documents.backup" is the type the Backup Failed alert looks for among failed jobs.
"""
from django.db import transaction

from apps.core.errors import JobFailed, UserError
from apps.core.services import Actor, audit
from apps.documents.models import DocumentSource, DocumentVersion
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner


class DocumentBackupJob(JobRunner):
    """A new version of a document source. The job's version is `DocumentVersion.objects.get(pk=args["version_id"])`."""

    name = "documents.backup"

    @classmethod
    def prepare(cls, *, actor: Actor, source: DocumentSource) -> Job:
        from apps.documents import services

        with transaction.atomic():
            version = services.request_backup(source=source, actor=actor)
            version.job = cls.create_job(args={"version_id": version.pk, "source": source.name}, actor=actor)
            version.save(update_fields=["job"])
        return version.job

    def run(self, **_runtime) -> dict:
        from apps.documents.backup import run_backup

        v = run_backup(version=DocumentVersion.objects.select_related("source", "storage_location").get(
            pk=self.job.args["version_id"]), ctx=self.ctx)
        out = version_summary(v)
        if v.source.replica_locations.exists():  # committed: now the copies, one job per replica location
            from apps.documents.replication import enqueue_replicas

            jobs = enqueue_replicas(version=v, actor=Actor(user=self.job.requested_by, via=self.job.via))
            out["replication_jobs"] = [j.pk for j in jobs]
        return out


class DocumentReplicateJob(JobRunner):
    """Copy a committed version to one replica location, verified, with retries (replication.py)."""

    name = "documents.replicate"

    @classmethod
    def prepare(cls, *, actor: Actor, version: DocumentVersion, location) -> Job:
        from apps.documents import replication

        with transaction.atomic():
            args = replication.request_replication(version=version, location=location)
            audit(actor=actor, action="documents.replication.requested", obj=version,
                  details={"location": location.name})
            return cls.create_job(args=args, actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.documents import replication
        from apps.storage.models import StorageLocation

        version = _readable(self.job.args["version_id"])
        location = StorageLocation.objects.get(pk=self.job.args["location_id"])
        replica = replication.replicate(version=version, location=location, ctx=self.ctx)
        return {"version_id": version.pk, "location": location.name, "status": replica.status,
                "bytes": replica.bytes, "packs_copied": replica.packs_copied, "attempts": replica.attempts}


def version_summary(v: DocumentVersion) -> dict:
    return {"id": v.pk, "version_id": v.pk, "source": v.source.name, "status": v.status, "files": v.files,
            "files_new": v.files_new, "files_changed": v.files_changed, "files_removed": v.files_removed,
            "bytes_total": v.bytes_total, "bytes_added": v.bytes_added, "bytes_stored": v.bytes_stored,
            "problems": len(v.problems), "parent": v.parent_id, "duration_seconds": v.duration_seconds,
            "error": v.error or None}


def _readable(version_id: str) -> DocumentVersion:
    from apps.documents.services import committed

    return committed(DocumentVersion.objects.select_related("source", "storage_location").get(pk=version_id))


class DocumentRestoreJob(JobRunner):
    """Restore a version, or a file or subtree of it, into a directory on the worker's machine."""

    name = "documents.restore"

    @classmethod
    def prepare(cls, *, actor: Actor, version: DocumentVersion, to: str, path: str | None = None,
                overwrite: bool = False) -> Job:
        from apps.documents import manifest, services

        services.committed(version)
        path = manifest.normalize_request_path(path)
        with transaction.atomic():
            audit(actor=actor, action="documents.restore.requested", obj=version,
                  details={"to": to, "path": path, "overwrite": overwrite})
            return cls.create_job(args={"version_id": version.pk, "to": to, "path": path, "overwrite": overwrite},
                                  actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.documents.restore import restore_version

        a = self.job.args
        result = restore_version(version=_readable(a["version_id"]), to=a["to"], path=a.get("path"),
                                 overwrite=a.get("overwrite", False), ctx=self.ctx)
        out = {"version_id": a["version_id"], "to": a["to"], "path": a.get("path"), **result.as_dict()}
        if not result.ok:
            raise JobFailed(f"{len(result.failed)} files could not be restored intact and {len(result.refused)} "
                            "entries were refused", result=out)
        return out


class DocumentExportJob(JobRunner):
    """Write a version as a plain tar.gz."""

    name = "documents.export"

    @classmethod
    def prepare(cls, *, actor: Actor, version: DocumentVersion, to: str) -> Job:
        from apps.documents import services

        services.committed(version)
        if not to.endswith((".tar.gz", ".tgz")):
            raise UserError("The export file name must end in .tar.gz or .tgz.")
        return cls.create_job(args={"version_id": version.pk, "to": to}, actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.documents.export import export_version

        return export_version(version=_readable(self.job.args["version_id"]), to=self.job.args["to"], ctx=self.ctx)


class DocumentVerifyJob(JobRunner):
    """Read back every chunk of a version; the job fails naming the missing and corrupt files."""

    name = "documents.verify"

    @classmethod
    def prepare(cls, *, actor: Actor, version: DocumentVersion) -> Job:
        from apps.documents import services

        services.committed(version)
        return cls.create_job(args={"version_id": version.pk}, actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.documents.verify import verify_version

        result = verify_version(version=_readable(self.job.args["version_id"]), ctx=self.ctx)
        if not result["ok"]:
            raise JobFailed(f"Version {result['version']}: {len(result['missing'])} files missing, "
                            f"{len(result['corrupt'])} corrupt", result=result)
        return result
