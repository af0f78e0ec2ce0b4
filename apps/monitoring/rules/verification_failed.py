"""Verification Failed (high): the latest verification run of a kept backup failed. Only each backup's latest
run counts, so a later passing run clears it."""
from django.db.models import OuterRef, Subquery

from apps.backups.models import Backup, BackupStatus
from apps.monitoring.rules.base import Condition, Rule
from apps.verification.models import VerificationRun


class VerificationFailed(Rule):
    type = "verification_failed"
    label = "Verification failed"
    severity = "high"

    def evaluate(self, *, now):
        latest = VerificationRun.objects.filter(backup=OuterRef("pk")).order_by("-created_at", "-pk")
        backups = (Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False)
                   .annotate(run_result=Subquery(latest.values("result")[:1]),
                             run_id=Subquery(latest.values("pk")[:1]),
                             run_error=Subquery(latest.values("error")[:1]))
                   .filter(run_result="failed").select_related("database_target").order_by("created_at"))
        groups: dict = {}
        for backup in backups:
            groups.setdefault(backup.database_target, []).append(backup)
        for target, failed in groups.items():
            params = self.params(target=target)
            if params is None:
                continue
            newest = max(failed, key=lambda b: b.run_id)
            yield Condition(
                fingerprint=f"{self.type}:target:{target.pk}", target=target.name, database_target_id=target.pk,
                occurrence=str(newest.run_id), severity=params["severity"],
                message=f"Verification of {len(failed)} backup(s) of {target.name} failed: "
                        f"{(newest.run_error or 'no error recorded')[:300]}",
                details={"backups": [{"backup_id": b.pk, "run_id": b.run_id, "error": (b.run_error or "")[:500]}
                                     for b in failed[-20:]]},
            )
