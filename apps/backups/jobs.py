"""Job handlers for backups and restores: thin, they call services."""
from apps.backups import restores, services
from apps.backups.models import Backup
from apps.core.errors import UserError
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.jobs.registry import handler


@handler("backup.database")
def backup_database(job, ctx, **_runtime) -> dict:
    backup = services.run_database_backup(backup=Backup.objects.get(pk=job.args["backup_id"]), ctx=ctx)
    return {"backup_id": backup.pk, "status": backup.status, "size_bytes": backup.size_stored, "sha256": backup.sha256}


@handler("restore.database")
def restore_database(job, ctx, conn: PgConn | None = None, **_runtime) -> dict:
    args = job.args
    if conn is None:
        if not args.get("target_id"):
            raise UserError("This restore was requested with credentials that are not stored; run it again.")
        conn = PgConn.for_target(DatabaseTarget.objects.get(pk=args["target_id"])).with_db(args["dbname"])
    request = restores.RestoreRequest(
        table=args.get("table"), schema=args.get("schema"), create=args.get("create", False),
        no_owner=args.get("no_owner", False),
    )
    return restores.run_restore(backup=Backup.objects.get(pk=args["backup_id"]), conn=conn, request=request, ctx=ctx)
