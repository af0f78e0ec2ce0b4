"""The shared backup steps and job runners: fencing, failure settling, backend checks, reaping, registration."""
import re
import socket
import subprocess
from pathlib import Path

import pytest
from django.utils import timezone

from apps.backups import producers
from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.jobs import liveness
from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import JobRunner
from apps.storage.models import StorageLocation
from apps.verification.jobs import VerifyBackupsJob
from tests.helpers import V1

USURPER = "01USURPER00000000000000000"


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_displaced_backup_records_nothing_and_leaves_nothing(target, backup_root, monkeypatch):
    """Another backup takes the lease mid-stream: the first must not commit rows or leave objects (fencing)."""

    class TakenOverMidStream(producers.LogicalProducer):
        def artifacts(self):
            for name, chunks in super().artifacts():
                yield name, self._steal(chunks)

        def _steal(self, chunks):
            for i, chunk in enumerate(chunks):
                if i == 0:
                    DatabaseTarget.objects.filter(pk=target.pk).update(backup_lock=USURPER, backup_lock_owner="")
                yield chunk

    monkeypatch.setitem(producers.PRODUCERS, "logical", TakenOverMidStream)
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    assert backup.status == BackupStatus.FAILED and "Displaced" in backup.error
    assert job.status == JobStatus.FAILED
    assert not backup.artifacts.exists() and not backup.replicas.exists() and not backup.manifest_key
    assert _stored_files(backup_root) == []
    # The usurper's lease is left alone: the displaced backup releases only what it holds.
    assert DatabaseTarget.objects.get(pk=target.pk).backup_lock == USURPER


def test_a_failure_before_the_dump_settles_the_backup(target, settings):
    """A password that cannot be unsealed (SECRET_KEY changed) fails the backup; nothing stays pending."""
    settings.SECRET_KEY = "another-secret-key-than-the-one-that-sealed-it"
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    assert backup.status == BackupStatus.FAILED and "SECRET_KEY" in backup.error
    assert DatabaseTarget.objects.get(pk=target.pk).backup_lock == ""


def test_a_location_without_backend_is_refused_when_the_backup_is_requested(api_as, target):
    cloud = StorageLocation.objects.create(name="nowhere", kind="ftp", bucket="b")  # as a pre-registry row would be
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=cloud)
    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backup/full", {"target": target.name}, format="json")
    assert r.status_code == 400 and "No storage backend for kind 'ftp'" in r.json()["detail"]
    assert not Backup.objects.exists() and not Job.objects.exists()
    # Moved back to a location that works, the target backs up at once: nothing was left blocking it.
    DatabaseTarget.objects.filter(pk=target.pk).update(storage_location=None)
    r = operator.post(f"{V1}/database/backup/full", {"target": target.name}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "succeeded"


def _dead_identity() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:1:{liveness._pid_namespace()}"


def test_jobs_whose_process_died_or_went_silent_are_failed(target):
    """A restore or verification killed mid-way must not stay `running` for ever."""
    now = timezone.now()
    dead = Job.objects.create(type="restore.database", status=JobStatus.RUNNING, worker=_dead_identity(),
                              heartbeat_at=now)
    silent = Job.objects.create(type="verify.backups", status=JobStatus.RUNNING, worker="elsewhere:42:7",
                                heartbeat_at=now - timezone.timedelta(minutes=10))
    busy = Job.objects.create(type="verify.backups", status=JobStatus.RUNNING, worker="elsewhere:43:7",
                              heartbeat_at=now)
    mine = Job.objects.create(type="verify.backups", status=JobStatus.RUNNING, worker=liveness.this_process(),
                              heartbeat_at=now)
    backup = Backup.objects.get(pk=DatabaseBackupJob.run_now(target=target, actor=SYSTEM).args["backup_id"])
    VerifyBackupsJob.enqueue(backup_ids=[backup.pk], level="exists", actor=SYSTEM)  # any new job settles the dead
    for job in (dead, silent, busy, mine):
        job.refresh_from_db()
    assert dead.status == JobStatus.FAILED and "died" in dead.error
    assert silent.status == JobStatus.FAILED and "no heartbeat" in silent.error
    assert busy.status == JobStatus.RUNNING and mine.status == JobStatus.RUNNING


def test_liveness_tells_a_reused_pid_from_the_original():
    me = liveness.this_process()
    host, pid, start, pidns = me.split(":")
    assert not liveness.is_dead(me)
    assert liveness.is_dead(f"{host}:{pid}:{int(start) + 1}:{pidns}")  # same pid, another process
    # Cannot tell from here (another host, or another container's PID namespace): the heartbeat decides.
    assert not liveness.is_dead(f"another-host:{pid}:1:{pidns}")
    assert not liveness.is_dead(f"{host}:{pid}:{int(start) + 1}:4026500000")


def test_every_job_type_is_a_runner_class():
    assert {"backup.database", "restore.database", "verify.backups"} <= set(JobRunner._types)
    assert JobRunner.for_type("backup.database") is DatabaseBackupJob
    apps_dir = Path(__file__).resolve().parent.parent / "apps"
    string_dispatch = [str(p) for p in apps_dir.rglob("*.py") if re.search(r'job_type="', p.read_text())]
    assert string_dispatch == []
    with pytest.raises(Exception, match="No job runner"):
        JobRunner.for_type("nope")


def test_the_scheduled_sweep_settles_a_dead_backup_and_frees_its_target(target):
    """Without waiting for the next request: the minute sweep fails the backup of a dead job and frees the lease."""
    from apps.backups import locks
    from apps.jobs import tasks

    job = DatabaseBackupJob.prepare(target=target, actor=SYSTEM)
    backup_id = job.args["backup_id"]
    Backup.objects.filter(pk=backup_id).update(status=BackupStatus.RUNNING, started_at=timezone.now())
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, worker=_dead_identity(), heartbeat_at=timezone.now())
    locks.acquire(target=target, backup_id=backup_id)
    DatabaseTarget.objects.filter(pk=target.pk).update(backup_lock_owner=liveness.this_process())  # looks alive
    assert tasks.reap_dead_jobs() == 1
    backup = Backup.objects.get(pk=backup_id)
    assert backup.status == BackupStatus.FAILED and "died" in backup.error
    assert DatabaseTarget.objects.get(pk=target.pk).backup_lock == ""


def test_setup_schedules_can_run_twice(db):
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("setup_schedules")
    call_command("setup_schedules")
    sweep = Schedule.objects.get(name="Settle dead jobs")
    assert sweep.func == "apps.jobs.tasks.reap_dead_jobs" and sweep.minutes == 1
    assert Schedule.objects.filter(name="Settle dead jobs").count() == 1
    incremental = Schedule.objects.get(name="Incremental database backups")
    assert incremental.schedule_type == Schedule.CRON and incremental.cron == "0 0,6,12,18 * * *"
    assert incremental.next_run is not None and incremental.next_run.hour in (0, 6, 12, 18)
    assert Schedule.objects.get(name="Full database backups").cron == "0 2 * * *"


def test_scheduled_backups_queue_one_job_per_fitting_target(target, settings):
    """Fulls for every enabled target; incrementals only where they can be taken (physical, data directory)."""
    from apps.backups import tasks
    from apps.databases.models import BackupMethod, DatabaseTarget

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    DatabaseTarget.objects.create(name="off", host="h", dbname="d", user="u", enabled=False)
    DatabaseTarget.objects.create(name="managed", host="h", dbname="d", user="u",
                                  default_method=BackupMethod.PHYSICAL)  # network-only: no data directory
    assert tasks.incremental_backups() == []
    queued = tasks.full_backups()  # sample (logical, succeeds) and managed (fails: no such host), not `off`
    jobs = {Job.objects.get(pk=pk).args["backup_id"]: Job.objects.get(pk=pk) for pk in queued}
    backups = Backup.objects.filter(pk__in=jobs).select_related("database_target")
    assert sorted(b.database_target.name for b in backups) == ["managed", "sample"]
    assert {b.database_target.name: b.status for b in backups}["sample"] == BackupStatus.SUCCEEDED
    assert {j.via for j in jobs.values()} == {"schedule"}
