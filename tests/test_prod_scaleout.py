"""Scale-out in the production shape: two django-q2 clusters (separate `manage.py qcluster` processes, two workers
each) on one Redis, metadata on PostgreSQL, two request processes racing, five real databases.

What must hold (issue 15): 50 backups of 5 targets are accepted and all complete (a request for a target that
already has one queued or running is refused at once with a clear message, "already queued/running", and the
requester tries again later: the controlled path; a refusal at run time would be a failed backup and fails this
test); no two backups of one target overlap in time (their started_at..finished_at, stamped while holding the
target's lease); every django-q Schedule due once fires exactly once although both clusters run the scheduler.
"""
import itertools
import json
import os
import signal
import subprocess
import time
from datetime import datetime

import psutil
import psycopg
import pytest

from tests.helpers import create_database, drop_database
from tests.test_job_liveness import Site

TARGETS = 5
PER_TARGET = 10
SCHEDULES = 12

SETUP = """
import datetime, json
from django.utils import timezone
from django_q.models import Schedule
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
for name in {names!r}:
    t = DatabaseTarget(name=name, host={host!r}, port={port}, dbname=name, user={user!r}, sslmode="disable")
    save_target(target=t, actor=SYSTEM, password="not-needed-trust-auth")
due = timezone.now() - datetime.timedelta(seconds=1)
for i in range({schedules}):
    Schedule.objects.create(name=f"once-{{i}}", func="apps.jobs.tasks.reap_dead_jobs",
                            schedule_type=Schedule.ONCE, repeats=1, next_run=due)
print(json.dumps({{"targets": DatabaseTarget.objects.count(), "schedules": Schedule.objects.count()}}))
"""

# A request process: keep asking for a backup of every target that has fewer than PER_TARGET, through the real
# request path (DatabaseBackupJob.enqueue: refuse_overlap under a row lock, then Redis).
SUBMIT = """
import json, time
from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup
from apps.core.errors import ConflictError
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
accepted, refused, deadline = [], 0, time.monotonic() + {timeout}
while time.monotonic() < deadline:
    wanted = [t for t in DatabaseTarget.objects.order_by("name")
              if Backup.objects.filter(database_target=t).count() < {per_target}]
    if not wanted:
        break
    for t in wanted:
        try:
            accepted.append(DatabaseBackupJob.enqueue(target=t, actor=SYSTEM).args["backup_id"])
        except ConflictError as exc:
            assert "already queued" in str(exc) or "already running" in str(exc) or "just started" in str(exc), exc
            refused += 1
    time.sleep(0.2)
print(json.dumps({{"accepted": accepted, "refused": refused}}))
"""


@pytest.fixture
def five_databases(pg_cluster):
    names = [f"scale_{i}" for i in range(TARGETS)]
    for i, name in enumerate(names):
        create_database(pg_cluster, name)
        with psycopg.connect(**pg_cluster.conn(name).kwargs(), autocommit=True) as c:
            c.execute("CREATE TABLE item AS SELECT g AS id, md5(g::text) AS title FROM generate_series(1, %s) g",
                      (200 * (i + 1),))
    yield names
    for name in names:
        drop_database(pg_cluster, name)


@pytest.fixture
def pg_site(pg_cluster, tmp_path, redis_server):
    create_database(pg_cluster, "scale_meta")
    c = pg_cluster.conn("scale_meta")
    site = Site(tmp_path, pg_cluster.conn(), f"postgres://{c.user}@{c.host}:{c.port}/{c.dbname}")
    # Two workers per cluster; leases and jobs judged stale only well past any stall of this shared machine.
    site.env.update({"REDIS_URL": redis_server, "Q_WORKERS": "2", "BACKUP_LOCK_STALE_SECONDS": "60",
                     "JOB_STALE_SECONDS": "60", "JOB_HEARTBEAT_SECONDS": "1"})
    site.manage("migrate", "-v0")
    yield site
    drop_database(pg_cluster, "scale_meta")


def stop(proc: subprocess.Popen) -> None:
    """One SIGTERM to a cluster's main process (django-q2 stops its workers), then the whole group if it hangs."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_clusters_on_redis_run_50_backups_without_overlap_and_schedules_once(pg_site, pg_cluster,
                                                                                 five_databases):
    c = pg_cluster.conn()
    made = last_json(pg_site.manage("shell", "-c", SETUP.format(
        names=five_databases, host=c.host, port=c.port, user=c.user, schedules=SCHEDULES)).stdout)
    assert made == {"targets": TARGETS, "schedules": SCHEDULES}

    clusters = [pg_site.spawn("qcluster", start_new_session=True) for _ in range(2)]
    submitters = []
    try:
        submitters = [pg_site.spawn("shell", "-c", SUBMIT.format(timeout=400, per_target=PER_TARGET))
                      for _ in range(2)]
        results = []
        for proc in submitters:
            out, err = proc.communicate(timeout=450)
            assert proc.returncode == 0, err[-3000:]
            results.append(last_json(out))
        accepted = [b for r in results for b in r["accepted"]]
        # Wait for the last ones to finish (and for the scheduler: its first pass is ~30 s after a cluster starts).
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            open_backups = pg_site.rows("SELECT count(*) FROM backups_backup WHERE status IN ('pending', 'running')")
            fired = pg_site.rows("SELECT count(*) FROM django_q_schedule WHERE repeats = 0")
            if open_backups == [(0,)] and fired == [(SCHEDULES,)]:
                break
            time.sleep(0.5)
        for proc in clusters:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
        family = [{str(p.pid) for p in psutil.Process(proc.pid).children(recursive=True)} for proc in clusters]
    finally:
        for proc in submitters:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for proc in clusters:
            stop(proc)

    rows = pg_site.rows(
        "SELECT b.id, t.name, b.status, b.error, b.started_at, b.finished_at, j.worker FROM backups_backup b "
        "JOIN databases_databasetarget t ON t.id = b.database_target_id JOIN jobs_job j ON j.id = b.job_id "
        "ORDER BY t.name, b.started_at")
    # Every accepted backup is a row, and every row was accepted (nothing ran that nobody asked for).
    assert sorted(r[0] for r in rows) == sorted(accepted)
    failed = [(r[1], r[2], r[3]) for r in rows if r[2] != "succeeded"]
    assert not failed, failed
    per_target = {name: sum(1 for r in rows if r[1] == name) for name in five_databases}
    # Two racing requesters may both pass the "fewer than 10" count just as the tenth finishes: at most one more.
    assert all(PER_TARGET <= n <= PER_TARGET + 1 for n in per_target.values()), per_target
    assert len(rows) >= TARGETS * PER_TARGET

    # No overlap per target: each backup started after the previous one of its target finished.
    for name in five_databases:
        spans = [(r[4], r[5]) for r in rows if r[1] == name]
        for (_s1, end1), (start2, _e2) in itertools.pairwise(spans):
            assert isinstance(end1, datetime) and end1 <= start2, (name, spans)
    # The work was shared: workers of both clusters ran backups (a job's worker is host:pid:start:pidns).
    pids = {r[6].split(":")[1] for r in rows}
    assert pids & family[0] and pids & family[1], (pids, family)

    # Each once-schedule fired exactly once across both clusters: one task per schedule (group = its name),
    # every one of them done, none left due.
    tasks = pg_site.rows("SELECT \"group\", count(*), bool_and(success) FROM django_q_task "
                         "WHERE \"group\" LIKE 'once-%%' GROUP BY \"group\" ORDER BY 1")
    assert len(tasks) == SCHEDULES and all(n == 1 and ok for _g, n, ok in tasks), tasks
    assert pg_site.rows("SELECT count(*) FROM django_q_schedule WHERE repeats = 0") == [(SCHEDULES,)]
