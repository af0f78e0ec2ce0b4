"""Job runners for database backups and restores: thin, they call services.

The services (pg_dump engine, psycopg, zstd, cryptography) are imported inside the methods: every
process imports this module at start-up (the jobs app registers the runners), and a management
command that never backs up should not pay for them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from apps.backups.models import Backup, BackupKind
from apps.core.errors import UserError
from apps.core.services import Actor
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.jobs.runner import JobRunner
from apps.storage.models import StorageLocation

# What a restore's end can change for the alert rules (JobRunner.alert_types): a copy that fails its check on the
# way is marked corrupt (sources.mark_corrupt), which replication_failed reports; nothing else a rule reads.
RESTORE_ALERT_TYPES = ("replication_failed",)

if TYPE_CHECKING:
    from apps.backups.restores import RestoreRequest
    from apps.databases.connection import PgConn


class DatabaseBackupJob(JobRunner):
    """A backup of a target: full (logical or physical) or incremental (physical).
    The job's backup is `Backup.objects.get(pk=job.args["backup_id"])`."""

    name = "backup.database"

    @classmethod
    def prepare(cls, *, actor: Actor, target: DatabaseTarget, fmt: str | None = None, method: str | None = None,
                kind: str = BackupKind.FULL) -> Job:
        from apps.backups import services

        with transaction.atomic():
            backup = services.request_database_backup(target=target, fmt=fmt, method=method, kind=kind, actor=actor)
            backup.job = cls.create_job(args={"backup_id": backup.pk}, actor=actor)
            backup.save(update_fields=["job"])
        return backup.job

    def run(self, **_runtime) -> dict:
        from apps.backups import lifecycle, replication, services

        backup = services.run_database_backup(backup=Backup.objects.get(pk=self.job.args["backup_id"]), ctx=self.ctx)
        lifecycle.refresh_used_bytes(backup.storage_location)
        # Committed: now the copies, one job per replica location (they do not hold this job up).
        jobs = replication.enqueue_replicas(backup=backup,
                                            actor=Actor(user=self.job.requested_by, via=self.job.via))
        return {"backup_id": backup.pk, "status": backup.status, "size_bytes": backup.size_stored,
                "sha256": backup.sha256, "replication_jobs": [j.pk for j in jobs]}


class ReplicateBackupJob(JobRunner):
    """Copy a committed backup to one replica location, verified, with retries (apps/backups/replication.py)."""

    name = "backup.replicate"

    @classmethod
    def prepare(cls, *, actor: Actor, backup: Backup, location: StorageLocation) -> Job:
        from apps.backups import replication

        with transaction.atomic():
            return cls.create_job(args=replication.request_replication(backup=backup, location=location,
                                                                       actor=actor), actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.backups import replication

        backup = Backup.objects.select_related("database_target", "storage_location").get(
            pk=self.job.args["backup_id"])
        location = StorageLocation.objects.get(pk=self.job.args["location_id"])
        replica = replication.replicate(backup=backup, location=location, ctx=self.ctx)
        return {"backup_id": backup.pk, "location": location.name, "status": replica.status,
                "bytes": replica.bytes, "storage_class": replica.storage_class, "attempts": replica.attempts}


class RestoreDatabaseJob(JobRunner):
    """Restore a backup into a database: on a target's server (credentials looked up when it runs) or, from the
    command line, into a connection given at run time (`runtime={"conn": PgConn}`, never stored)."""

    name = "restore.database"
    alert_types = RESTORE_ALERT_TYPES
    approval_action = "restore.database.existing"

    @classmethod
    def approval(cls, *, backup: Backup, destination: str, request: RestoreRequest,
                 target: DatabaseTarget | None = None, dbname: str | None = None) -> tuple[str, dict] | None:
        """Over an existing database (the whole of it, or a table or schema replaced) waits for approval; into a
        new database (refused if it exists) does not."""
        if request.create:
            return None
        if target is None:
            raise UserError("A restore over an existing database needs approval, and one whose credentials are "
                            "given at run time cannot wait for it: restore onto a registered target.")
        dbname = dbname or target.dbname
        part = f" (table {request.table})" if request.table else f" (schema {request.schema})" if request.schema else ""
        return (f"restore backup {backup.pk} over the existing database {dbname} on {target.name}{part}",
                {"backup_id": backup.pk, "destination": destination, "target_id": target.pk, "dbname": dbname,
                 "table": request.table, "schema": request.schema, "create": False, "no_owner": request.no_owner})

    @classmethod
    def from_approval(cls, params: dict) -> dict:
        from apps.backups.restores import RestoreRequest

        return {"backup": Backup.objects.get(pk=params["backup_id"]), "destination": params["destination"],
                "request": RestoreRequest(table=params["table"], schema=params["schema"], create=params["create"],
                                          no_owner=params["no_owner"]),
                "target": DatabaseTarget.objects.get(pk=params["target_id"]), "dbname": params["dbname"]}

    @classmethod
    def prepare(cls, *, actor: Actor, backup: Backup, destination: str, request: RestoreRequest,
                target: DatabaseTarget | None = None, dbname: str | None = None) -> Job:
        from apps.backups import restores

        with transaction.atomic():
            args = restores.request_restore(backup=backup, destination=destination, request=request, actor=actor,
                                            target=target, dbname=dbname)
            return cls.create_job(args=args, actor=actor)

    def run(self, conn: PgConn | None = None, **_runtime) -> dict:
        from apps.backups import restores
        from apps.databases.connection import PgConn

        args = self.job.args
        if conn is None:
            if not args.get("target_id"):
                raise UserError("This restore was requested with credentials that are not stored; run it again.")
            conn = PgConn.for_target(DatabaseTarget.objects.get(pk=args["target_id"])).with_db(args["dbname"])
        request = restores.RestoreRequest(
            table=args.get("table"), schema=args.get("schema"), create=args.get("create", False),
            no_owner=args.get("no_owner", False),
        )
        return restores.run_restore(backup=Backup.objects.get(pk=args["backup_id"]), conn=conn, request=request,
                                    ctx=self.ctx)


class RestoreDataDirectoryJob(JobRunner):
    """Rebuild a physical backup's data directory (full, or its whole incremental chain) in a new directory;
    the cluster is not started."""

    name = "restore.datadir"
    alert_types = RESTORE_ALERT_TYPES

    @classmethod
    def prepare(cls, *, actor: Actor, backup: Backup, pgdata: str) -> Job:
        from apps.backups import physical_restore

        with transaction.atomic():
            return cls.create_job(args=physical_restore.request_restore(backup=backup, pgdata=pgdata, actor=actor),
                                  actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.backups import physical_restore

        backup = Backup.objects.get(pk=self.job.args["backup_id"])
        return physical_restore.restore_data_directory(backup, self.job.args["pgdata"], self.ctx)


class EnforceTiersJob(JobRunner):
    """Move replicas to colder tiers by age, per location's tier rules (apps/backups/lifecycle.py)."""

    name = "storage.enforce_tiers"

    @classmethod
    def prepare(cls, *, actor: Actor, location: StorageLocation | None = None, dry_run: bool = False) -> Job:
        return cls.create_job(args={"location_id": location.pk if location else None, "dry_run": dry_run},
                              actor=actor)

    def run(self, **_runtime) -> dict:
        from apps.backups import lifecycle

        location_id = self.job.args.get("location_id")
        location = StorageLocation.objects.get(pk=location_id) if location_id else None
        return lifecycle.enforce_tiers(location=location, dry_run=self.job.args.get("dry_run", False), ctx=self.ctx)
