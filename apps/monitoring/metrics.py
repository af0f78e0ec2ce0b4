"""Prometheus metrics read from the catalog at scrape time (a custom collector: nothing is kept in memory, and
every web process answers the same)."""
from django.db.models import Count, Max, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry


class CatalogCollector:
    def collect(self):
        from apps.backups.models import Backup, BackupStatus, WalSegment
        from apps.jobs.models import Job, JobStatus
        from apps.monitoring.selectors import open_alerts_by_severity
        from apps.storage.models import StorageLocation

        backups = GaugeMetricFamily("backupsite_backups", "Backups in the catalog, by status.", labels=["status"])
        counts = dict(Backup.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in BackupStatus.values:
            backups.add_metric([status], counts.get(status, 0))
        yield backups

        last = GaugeMetricFamily("backupsite_last_success_timestamp_seconds",
                                 "When the newest successful backup of a target finished (Unix time).",
                                 labels=["target"])
        for name, at in (Backup.objects.filter(status=BackupStatus.SUCCEEDED, database_target__isnull=False,
                                               finished_at__isnull=False)
                         .values_list("database_target__name").annotate(at=Max("finished_at")).order_by()):
            last.add_metric([name], at.timestamp())
        yield last

        stored = GaugeMetricFamily("backupsite_location_stored_bytes", "Bytes a storage location holds for us.",
                                   labels=["location", "kind"])
        capacity = GaugeMetricFamily("backupsite_location_capacity_bytes", "Capacity quota of a storage location.",
                                     labels=["location", "kind"])
        for loc in StorageLocation.objects.order_by("name"):
            stored.add_metric([loc.name, loc.kind], loc.used_bytes)
            if loc.capacity_bytes:
                capacity.add_metric([loc.name, loc.kind], loc.capacity_bytes)
        yield stored
        yield capacity

        wal = GaugeMetricFamily("backupsite_wal_archived_bytes", "Stored bytes of archived WAL per target.",
                                labels=["target"])
        for name, n in (WalSegment.objects.values_list("database_target__name").annotate(n=Sum("size_stored"))
                        .order_by()):
            wal.add_metric([name], n or 0)
        yield wal

        alerts = GaugeMetricFamily("backupsite_open_alerts", "Open or acknowledged alerts, by severity.",
                                   labels=["severity"])
        for severity, n in open_alerts_by_severity().items():
            alerts.add_metric([severity], n)
        yield alerts

        # Job durations as a summary (count and sum of seconds per type and outcome), from the finished job rows.
        count = CounterMetricFamily("backupsite_job_duration_seconds_count", "Finished jobs, by type and status.",
                                    labels=["type", "status"])
        total = CounterMetricFamily("backupsite_job_duration_seconds_sum",
                                    "Seconds spent by finished jobs, by type and status.", labels=["type", "status"])
        longest = GaugeMetricFamily("backupsite_job_last_duration_seconds",
                                    "Duration of the newest finished job of each type.", labels=["type"])
        sums: dict[tuple, list] = {}
        newest: dict[str, tuple] = {}
        for job_type, status, started, finished in (
                Job.objects.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED], started_at__isnull=False,
                                   finished_at__isnull=False)
                .values_list("type", "status", "started_at", "finished_at").iterator()):
            seconds = max(0.0, (finished - started).total_seconds())
            entry = sums.setdefault((job_type, status), [0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            if job_type not in newest or finished > newest[job_type][0]:
                newest[job_type] = (finished, seconds)
        for (job_type, status), (n, seconds) in sorted(sums.items()):
            count.add_metric([job_type, status], n)
            total.add_metric([job_type, status], seconds)
        for job_type, (_, seconds) in sorted(newest.items()):
            longest.add_metric([job_type], seconds)
        yield count
        yield total
        yield longest


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CatalogCollector())
    return reg
