"""The platform at one moment: a target's database recovered to time T (PITR) and a document source's version
that was current at T, side by side under one new directory, with what each actually reached.

A document version is "current at T" when it is the newest committed version whose scan ended at or before
T (`DocumentVersion.finished_at` is taken when the last file has been read, before the manifest is written).
Files are read one after another between the version's `started_at` and `finished_at` (there is no
file-system snapshot), so the report gives both. The database reaches the last commit at or before T.

Either both parts are there at the end or neither: a failure removes the whole directory.
"""
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases import catalog, clusters
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import note
from apps.recovery.models import RecoveryRun
from apps.recovery.targets import RecoveryTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlatformRequest:
    recovery: RecoveryRun
    version_id: str
    destination: Path


def _version_at(source, at: datetime):
    from apps.documents.models import DocumentVersion, VersionStatus

    version = (DocumentVersion.objects.filter(source=source, status=VersionStatus.SUCCEEDED, finished_at__lte=at)
               .order_by("-finished_at").first())
    if version is None:
        first = (DocumentVersion.objects.filter(source=source, status=VersionStatus.SUCCEEDED)
                 .order_by("finished_at").first())
        when = f"the first ended at {first.finished_at.isoformat()}" if first else "it has none"
        raise UserError(f"Document source {source.name} has no version whose scan ended at or before "
                        f"{at.isoformat()} ({when}).")
    return version


def request_platform_recovery(*, target: DatabaseTarget, source, at: datetime, destination: str, actor: Actor,
                              port: int | None = None) -> PlatformRequest:
    """Check both halves (the database's window holds `at`, the source has a version by then) and record the PITR."""
    from apps.recovery import pitr

    dest = Path(destination)
    if not dest.is_absolute():
        raise UserError("The destination must be an absolute path.")
    if dest.exists():
        raise UserError(f"{dest} exists; the platform is recovered into a new directory.")
    if not dest.parent.is_dir():
        raise UserError(f"{dest.parent} does not exist; create it first.")
    version = _version_at(source, at)
    with transaction.atomic():
        run = pitr.request_pitr(target=target, goal=RecoveryTarget(time=at), pgdata=str(dest / "database"),
                                port=port, start=True, actor=actor, parent_must_exist=False)
        audit(actor=actor, action="recovery.platform.requested", obj=run,
              details={"at": at.isoformat(), "target": target.name, "source": source.name,
                       "document_version": version.pk, "destination": str(dest)})
    return PlatformRequest(recovery=run, version_id=version.pk, destination=dest)


def run_platform_recovery(*, recovery: RecoveryRun, version_id: str, destination: Path, ctx=None) -> dict:
    from apps.documents.models import DocumentVersion
    from apps.documents.restore import restore_version
    from apps.recovery import pitr

    version = DocumentVersion.objects.select_related("source").get(pk=version_id)
    at = recovery.target_time
    try:
        destination.mkdir(mode=0o755)
    except FileExistsError:
        raise UserError(f"{destination} appeared since the request; nothing was written.") from None
    try:
        clusters.give_to_server_user(destination)  # the recovered cluster's server user creates database/ in it
        note(ctx, f"documents: restoring version {version.pk} of {version.source.name} (scan "
                  f"{version.started_at.isoformat()} to {version.finished_at.isoformat()})", logger=log)
        docs = restore_version(version=version, to=str(destination / "documents"), ctx=ctx)
        if docs.failed or docs.refused:
            problems = (docs.failed + docs.refused)[:5]
            raise UserError(f"Document version {version.pk} did not restore whole: {problems}")
        note(ctx, f"database: recovering {recovery.database_target.name} to {at.isoformat()}", logger=log)
        run = pitr.run_pitr(run=recovery, ctx=ctx)
        last_commit = _last_replayed_commit(run)
    except BaseException:
        if recovery.port and (destination / "database" / "postmaster.pid").exists():
            clusters.LocalCluster(base=destination, port=recovery.port,
                                  data_dir=destination / "database").stop(mode="immediate")
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return {
        "at": at.isoformat(),
        "destination": str(destination),
        "database": {"target": run.database_target.name, "recovery_id": run.pk, "pgdata": run.pgdata,
                     "port": run.port, "base_backup_id": run.base_backup_id, "reached": run.reached,
                     "last_commit_at": last_commit.isoformat() if last_commit else None},
        "documents": {"source": version.source.name, "version_id": version.pk, "path": str(destination / "documents"),
                      "scan_started_at": version.started_at.isoformat(),
                      "scan_finished_at": version.finished_at.isoformat(),
                      "files": docs.files, "bytes": docs.bytes},
    }


def _last_replayed_commit(run: RecoveryRun):
    """The time of the last commit the recovered cluster replayed (None when it replayed none)."""
    from apps.recovery.pitr import recovered_conn

    with catalog.connect(recovered_conn(run.database_target, run.port), app_name="backupsite-platform") as c:
        return c.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
