"""Executors of the gated backup actions that are not jobs (apps/approvals/registry.py): run when a second
admin approves, with the approver as actor."""
from apps.approvals import registry


@registry.register("backup.delete")
def delete_backup(params: dict, actor) -> dict:
    from apps.backups.deletion import delete_backup as delete
    from apps.backups.models import Backup

    backup = delete(backup=Backup.objects.get(pk=params["backup_id"]), actor=actor)
    return {"backup_id": backup.pk, "status": backup.status}


@registry.register("backup.legal_hold.release")
def release_legal_hold(params: dict, actor) -> dict:
    from apps.backups.models import Backup
    from apps.backups.services import set_legal_hold

    backup = set_legal_hold(backup=Backup.objects.get(pk=params["backup_id"]), hold=False, actor=actor)
    return {"backup_id": backup.pk, "legal_hold": backup.legal_hold}
