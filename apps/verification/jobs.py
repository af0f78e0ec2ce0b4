from apps.backups.models import Backup
from apps.core.errors import JobFailed
from apps.jobs.registry import handler
from apps.verification import services


@handler("verify.backups")
def verify_backups(job, ctx, **_runtime) -> dict:
    ids = job.args["backup_ids"]
    backups = Backup.objects.filter(pk__in=ids).select_related("storage_location")
    runs = []
    for backup in backups:
        runs.extend(services.verify_backup(backup=backup, level=job.args["level"], ctx=ctx))
    failed = [r for r in runs if r.result == "failed"]
    result = {
        "level": job.args["level"],
        "backups": len(ids),
        "runs": len(runs),
        "failed": [{"backup_id": r.backup_id, "location": r.location.name, "error": r.error} for r in failed],
    }
    if failed:
        raise JobFailed(f"{len(failed)} of {len(runs)} verifications failed: " + "; ".join(r.error for r in failed[:3]),
                        result=result)
    return result
