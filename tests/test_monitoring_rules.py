"""Alert rules on synthetic catalog histories: Backup Age, Size Anomaly, Backup Timeout, Storage Full,
Verification Failed (latest run only), Replication Failed, WAL lag; per-target thresholds from AlertRule rows;
the health check's probes."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.backups.models import Backup, BackupStatus, Replica, WalSegment
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.jobs.models import Job
from apps.monitoring import engine, health, services
from apps.monitoring.models import Alert, AlertRule
from apps.monitoring.rules.size_anomaly import robust_score
from apps.storage.models import StorageLocation
from apps.storage.services import ensure_default_location
from apps.verification.models import VerificationRun
from tests.receivers import free_port


@pytest.fixture
def target(db):
    t = save_target(target=DatabaseTarget(name="orders", host="127.0.0.1", port=free_port(), dbname="orders",
                                          user="app"), actor=SYSTEM)
    # Added long ago: the grace of a never-backed-up target is over.
    DatabaseTarget.objects.filter(pk=t.pk).update(created_at=timezone.now() - timedelta(days=60))
    t.refresh_from_db()
    return t


def backup(target, *, hours_ago: float, size: int = 100_000_000, status=BackupStatus.SUCCEEDED, kind="full",
           fmt="custom") -> Backup:
    at = timezone.now() - timedelta(hours=hours_ago)
    b = Backup.objects.create(database_target=target, status=status, kind=kind, format=fmt, size_raw=size,
                              size_stored=size // 3, storage_location=ensure_default_location(), started_at=at,
                              finished_at=at)
    Backup.objects.filter(pk=b.pk).update(created_at=at)
    b.refresh_from_db()
    return b


def active(type_: str):
    return list(Alert.objects.filter(type=type_, status__in=["open", "acknowledged"]))


def test_backup_age_fires_from_history_and_follows_the_targets_rpo(target):
    backup(target, hours_ago=72)
    backup(target, hours_ago=30)
    engine.evaluate()
    [alert] = active("backup_age")
    assert alert.severity == "high" and alert.target == "orders"
    assert alert.details["rpo_hours"] == 26 and 29.9 < alert.details["age_hours"] < 30.1

    # This target's RPO is 48 h: the same history is within it, and the alert resolves itself.
    services.save_rule(rule=AlertRule(type="backup_age", database_target=target, params={"rpo_hours": 48}),
                       actor=SYSTEM)
    engine.evaluate()
    assert active("backup_age") == []
    alert.refresh_from_db()
    assert alert.auto_resolved

    # A fresh backup within a tighter RPO: still quiet.
    AlertRule.objects.filter(database_target=target).update(params={"rpo_hours": 2})
    backup(target, hours_ago=1)
    engine.evaluate()
    assert active("backup_age") == []


def test_backup_age_gives_a_new_target_one_rpo_of_grace(db):
    save_target(target=DatabaseTarget(name="fresh", host="127.0.0.1", port=5432, dbname="x", user="u"),
                actor=SYSTEM)
    engine.evaluate()
    assert active("backup_age") == []


def test_size_anomaly_from_a_synthetic_history(target):
    sizes = [100_000_000, 101_000_000, 99_500_000, 100_400_000, 98_900_000, 100_800_000, 99_700_000, 100_100_000]
    for i, size in enumerate(sizes):
        backup(target, hours_ago=24 * (len(sizes) - i) + 1, size=size)
    engine.evaluate()
    assert active("size_anomaly") == []

    small = backup(target, hours_ago=0.5, size=20_000_000)  # a table went missing?
    engine.evaluate()
    [alert] = active("size_anomaly")
    assert alert.severity == "warning" and alert.details["backup_id"] == small.pk
    assert alert.details["z"] < -3.5 and alert.details["change"] > 0.5
    assert "below the recent median" in alert.message

    # The next backup is normal again, with the outlier now in its history: robust statistics are not fooled.
    backup(target, hours_ago=0.1, size=100_300_000)
    engine.evaluate()
    assert active("size_anomaly") == []
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_size_anomaly_needs_enough_history_and_keeps_kinds_apart(target):
    for i in range(3):
        backup(target, hours_ago=10 - i, size=100_000_000)
    backup(target, hours_ago=1, size=5_000_000)
    engine.evaluate()
    assert active("size_anomaly") == []  # 3 earlier backups: fewer than min_samples
    for i in range(6):  # small incrementals beside the fulls: another series, not an anomaly of the fulls
        backup(target, hours_ago=9 - i, size=1_000_000, kind="incremental", fmt="basebackup")
    engine.evaluate()
    assert active("size_anomaly") == []


def test_robust_score():
    med, mad, z = robust_score(10.0, [1.0, 2.0, 3.0, 4.0, 100.0])
    assert med == 3.0 and mad == 1.0 and z == pytest.approx(0.6745 * 7)
    assert robust_score(5.0, [5.0, 5.0, 5.0])[2] is None


def test_backup_timeout_fires_when_a_job_runs_past_its_targets_limit(target):
    started = timezone.now() - timedelta(minutes=90)
    job = Job.objects.create(type="backup.database", status="running", started_at=started, heartbeat_at=started)
    b = backup(target, hours_ago=1.5, status=BackupStatus.RUNNING)
    Backup.objects.filter(pk=b.pk).update(job=job, finished_at=None)
    engine.evaluate()
    assert active("backup_timeout") == []  # the default limit is 240 min
    services.save_rule(rule=AlertRule(type="backup_timeout", database_target=target,
                                      params={"max_runtime_minutes": 60}), actor=SYSTEM)
    engine.evaluate()
    [alert] = active("backup_timeout")
    assert alert.severity == "critical" and alert.details["job_id"] == job.pk
    Job.objects.filter(pk=job.pk).update(status="succeeded", finished_at=timezone.now())
    Backup.objects.filter(pk=b.pk).update(status=BackupStatus.SUCCEEDED)
    engine.evaluate()
    assert active("backup_timeout") == []


def test_storage_full(db):
    loc = StorageLocation.objects.create(name="small", kind="local", path="/tmp/x", capacity_bytes=1000)
    StorageLocation.objects.filter(pk=loc.pk).update(used_bytes=950)
    engine.evaluate()
    [alert] = active("storage_full")
    assert alert.severity == "critical" and alert.target == "small" and alert.details["used_percent"] == 95.0
    services.save_rule(rule=AlertRule(type="storage_full", location=loc, params={"used_percent": 97}), actor=SYSTEM)
    engine.evaluate()
    assert active("storage_full") == []


def test_verification_failed_reads_only_the_latest_run_of_each_backup(target):
    b = backup(target, hours_ago=2)
    VerificationRun.objects.create(backup=b, level="checksum", result="failed", error="sha256 mismatch")
    engine.evaluate()
    [alert] = active("verification_failed")
    assert alert.severity == "high" and "sha256 mismatch" in alert.message
    VerificationRun.objects.create(backup=b, level="checksum", result="passed")
    engine.evaluate()
    assert active("verification_failed") == []


def test_replication_failed(target):
    b = backup(target, hours_ago=2)
    remote = StorageLocation.objects.create(name="offsite", kind="local", path="/tmp/offsite")
    replica = Replica.objects.create(backup=b, location=remote, status="failed", attempts=5,
                                     last_error="connection reset")
    engine.evaluate()
    [alert] = active("replication_failed")
    assert alert.severity == "high" and "offsite" in alert.message and "connection reset" in alert.message
    Replica.objects.filter(pk=replica.pk).update(status="present")
    engine.evaluate()
    assert active("replication_failed") == []


def test_wal_archiving_lag(target):
    DatabaseTarget.objects.filter(pk=target.pk).update(wal_archiving=True)
    seg = WalSegment.objects.create(database_target=target, name="000000010000000000000001", timeline=1,
                                    start_lsn="0/1000000", storage_location=ensure_default_location(), key="k",
                                    size_raw=16 << 20, size_stored=1000, sha256_raw="a", sha256_stored="b",
                                    compression="zstd", cipher="none")
    WalSegment.objects.filter(pk=seg.pk).update(created_at=timezone.now() - timedelta(hours=3))
    engine.evaluate()
    [alert] = active("wal_archiving_lag")
    assert "nothing archived" in alert.message
    services.save_rule(rule=AlertRule(type="wal_archiving_lag", database_target=target,
                                      params={"max_lag_seconds": 6 * 3600}), actor=SYSTEM)
    engine.evaluate()
    assert active("wal_archiving_lag") == []


def test_disabled_rule_raises_nothing_for_its_target(target):
    backup(target, hours_ago=100)
    services.save_rule(rule=AlertRule(type="backup_age", database_target=target, enabled=False), actor=SYSTEM)
    engine.evaluate()
    assert active("backup_age") == []


def test_health_check_probes_targets_and_locations(target, source_db):
    reachable = save_target(target=DatabaseTarget(name="sample", host=source_db.host, port=source_db.port,
                                                  dbname=source_db.dbname, user=source_db.user, sslmode="disable"),
                            actor=SYSTEM)
    ensure_default_location()
    report = health.run_health_checks()
    assert report["targets"]["sample"]["ok"] and "PostgreSQL 15" in report["targets"]["sample"]["detail"]
    assert not report["targets"]["orders"]["ok"]
    assert all(loc["ok"] for loc in report["locations"].values())
    [alert] = active("target_unreachable")
    assert alert.target == "orders" and alert.severity == "high"
    assert active("storage_unreachable") == []
    assert reachable.enabled


def test_rule_parameters_are_checked(target):
    from apps.core.errors import UserError

    with pytest.raises(UserError, match="Unknown parameters"):
        services.save_rule(rule=AlertRule(type="backup_age", params={"rpo_days": 1}), actor=SYSTEM)
    with pytest.raises(UserError, match="number"):
        services.save_rule(rule=AlertRule(type="backup_age", params={"rpo_hours": "soon"}), actor=SYSTEM)


def test_dr_drill_failed_follows_the_latest_finished_drill(target):
    from apps.recovery.models import DRDrill, DRPlan

    from apps.monitoring.models import Delivery, NotificationChannel

    pager = NotificationChannel.objects.create(name="pager", kind="webhook", min_severity="critical",
                                               config={"url": "http://127.0.0.1:9/hook"})
    other = NotificationChannel.objects.create(name="other", kind="webhook", min_severity="critical",
                                               config={"url": "http://127.0.0.1:9/hook"})
    plan = DRPlan.objects.create(name="orders-dr", primary=target, notification_channels=["pager"])
    DRDrill.objects.create(plan=plan, status="passed", finished_at=timezone.now() - timedelta(days=7))
    engine.evaluate()
    assert active("dr_drill_failed") == []
    failed = DRDrill.objects.create(plan=plan, status="failed", finished_at=timezone.now(), objectives_met=False,
                                    reasons=["RTO 1200 s above the objective of 900 s"])
    engine.evaluate()
    [alert] = active("dr_drill_failed")
    assert alert.severity == "high" and "RTO 1200 s" in alert.message and alert.target == "orders"
    # High is below both channels' minimum: the plan's own channel gets it, the other does not.
    assert [d.channel_id for d in Delivery.objects.filter(alert=alert)] == [pager.pk]
    assert not Delivery.objects.filter(channel=other).exists()
    DRDrill.objects.create(plan=plan, status="running")  # not finished: changes nothing
    engine.evaluate()
    assert [a.pk for a in active("dr_drill_failed")] == [alert.pk]
    DRDrill.objects.create(plan=plan, status="passed", finished_at=failed.finished_at + timedelta(minutes=5))
    engine.evaluate()
    assert active("dr_drill_failed") == []


def test_failover_alerts_a_failure_and_an_automatic_failover_until_re_armed(target):
    from apps.recovery.models import DRPlan, Failover

    plan = DRPlan.objects.create(name="orders-dr", primary=target, auto_failover=True)
    Failover.objects.create(plan=plan, status="succeeded", automatic=False)  # manual, done: nothing to say
    engine.evaluate()
    assert active("failover") == []
    Failover.objects.create(plan=plan, status="failed", error="standby lag 90 MB above the limit")
    engine.evaluate()
    [alert] = active("failover")
    assert alert.severity == "critical" and "standby lag 90 MB" in alert.message
    Failover.objects.create(plan=plan, status="succeeded", automatic=True)
    DRPlan.objects.filter(pk=plan.pk).update(auto_failover_armed=False)
    engine.evaluate()
    [again] = active("failover")
    assert again.pk == alert.pk and "disarmed" in again.message and again.count == 2
    DRPlan.objects.filter(pk=plan.pk).update(auto_failover_armed=True)  # an operator re-armed it
    engine.evaluate()
    assert active("failover") == []


def test_a_job_end_evaluates_the_rules_its_type_names(target):
    """JobRunner.alert_types: a restore's end evaluates only what a restore can change (a copy found corrupt on
    the way); a backup's end, and that of a type this process does not know, evaluate every rule."""
    from apps.jobs.runner import JobRunner
    from apps.jobs.signals import job_finished
    from apps.monitoring.rules.registry import all_rules

    known = set(all_rules())
    for runner in JobRunner._types.values():  # a typo would silently evaluate nothing
        assert runner.alert_types is None or set(runner.alert_types) <= known, runner.name

    failed = backup(target, hours_ago=1, status=BackupStatus.FAILED)
    remote = StorageLocation.objects.create(name="offsite", kind="local", path="/tmp/offsite")
    Replica.objects.create(backup=backup(target, hours_ago=2), location=remote, status="corrupt",
                           last_error="fails its SHA-256 check")
    for job_type in ("restore.datadir", "restore.database", "recovery.pitr"):
        job_finished.send(sender=Job, job=Job.objects.create(type=job_type, status="succeeded"))
        assert [a.type for a in Alert.objects.filter(status="open")] == ["replication_failed"], job_type
    job_finished.send(sender=Job, job=Job.objects.create(type="backup.database", status="failed"))
    [alert] = active("backup_failed")
    assert failed.pk in alert.message or failed.pk in str(alert.details)
    Alert.objects.all().delete()
    job_finished.send(sender=Job, job=Job.objects.create(type="no.such.type", status="failed"))
    assert {"backup_failed", "replication_failed"} <= {a.type for a in Alert.objects.filter(status="open")}
