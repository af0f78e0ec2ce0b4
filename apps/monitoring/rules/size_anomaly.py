"""Size Anomaly (warning): the newest successful backup of a target and kind is far from the recent ones.

Robust statistics, so one earlier outlier does not hide the next: the median and the median absolute deviation
(MAD) of the previous `window` backups; the newest is anomalous when its robust z-score
0.6745·|x − median| / MAD passes `z` and it differs from the median by `min_change` (a fraction) or more.
With a MAD of zero (identical sizes) only the relative change decides."""
from statistics import median

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from apps.backups.models import Backup, BackupStatus
from apps.databases.models import DatabaseTarget
from apps.monitoring.rules.base import Condition, Rule


def robust_score(value: float, history: list[float]) -> tuple[float, float, float | None]:
    """(median, MAD, robust z-score or None when the MAD is 0) of `value` against `history`."""
    med = median(history)
    mad = median(abs(h - med) for h in history)
    return med, mad, (0.6745 * (value - med) / mad if mad else None)


def size_of(backup: Backup) -> int | None:
    return backup.size_raw if backup.size_raw is not None else backup.size_stored


class SizeAnomaly(Rule):
    type = "size_anomaly"
    label = "Backup size anomaly"
    severity = "warning"
    defaults = {"window": 10, "min_samples": 5, "z": 3.5, "min_change": 0.5}

    def evaluate(self, *, now):
        params = {t.pk: (t, p) for t in DatabaseTarget.objects.order_by("pk")
                  if (p := self.params(target=t)) is not None}
        if not params:
            return
        # The newest window+1 successful backups of every target and kind, in one query (a window function).
        keep = 1 + max(p["window"] for _, p in params.values())
        ranked = (Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__in=list(params))
                  .annotate(rank=Window(RowNumber(), partition_by=[F("database_target"), F("kind"), F("format")],
                                        order_by=[F("finished_at").desc(), F("pk").desc()]))
                  .filter(rank__lte=keep).order_by("database_target", "kind", "format", "rank")
                  .only("pk", "database_target", "kind", "format", "size_raw", "size_stored", "finished_at"))
        series: dict[tuple, list[Backup]] = {}
        for b in ranked:
            series.setdefault((b.database_target_id, b.kind, b.format), []).append(b)
        for (target_id, kind, fmt), recent in series.items():
            target, p = params[target_id]
            if (condition := self._judge(target, kind, fmt, recent[: p["window"] + 1], p)) is not None:
                yield condition

    def _judge(self, target, kind: str, fmt: str, recent: list[Backup], params: dict) -> Condition | None:
        sizes = [size_of(b) for b in recent]
        if len(recent) < params["min_samples"] + 1 or any(s is None for s in sizes):
            return None
        newest, value, history = recent[0], sizes[0], sizes[1:]
        med, mad, z = robust_score(value, history)
        change = abs(value - med) / med if med else float("inf")
        if change < params["min_change"] or (z is not None and abs(z) < params["z"]):
            return None
        return Condition(
            fingerprint=f"{self.type}:target:{target.pk}:{kind}:{fmt}", target=target.name,
            database_target_id=target.pk, occurrence=newest.pk, severity=params["severity"],
            message=f"The {kind}/{fmt} backup of {target.name} is {value} bytes, "
                    f"{'above' if value > med else 'below'} the recent median of {med:.0f} ({change:.0%} off).",
            details={"backup_id": newest.pk, "size": value, "median": med, "mad": mad,
                     "z": round(z, 2) if z is not None else None, "change": round(change, 4),
                     "samples": len(history)},
        )
