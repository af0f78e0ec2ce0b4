"""Failover on real clusters: a throwaway primary and a streaming standby made by `standby_create`.

Each test gets its own pair (a failover consumes the standby). Shown: the standby streams and its lag is read;
`dr_failover` fences a reachable primary, promotes, runs the switch hook (a command without a shell and an
HTTP POST to a local receiver), verifies a write, and every row committed before is on the new primary
(synchronous replication: zero loss with the primary crashed; asynchronous: loss within the measured lag);
the plan and targets follow; auto-failover ignores one missed check and fires at the threshold, once.
"""
import json
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command

from apps.core.services import SYSTEM
from apps.databases import clusters
from apps.databases import lsn as lsns
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.recovery import failover, health, signals
from apps.recovery.models import DRPlan, Failover, FailoverStatus
from tests.helpers import V1, throwaway_cluster
from tests.wal_site import _give

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "standby-secret-never-logged-42"  # trust auth ignores it; it must still never leak


def _sql(conn, query, *params):
    with psycopg.connect(**conn.kwargs("dr-test"), autocommit=True) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else None


def _cmd(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture
def pair():
    """(primary cluster, plan, standby target): plan `shop` with the standby made by `standby_create`."""
    work = Path(tempfile.mkdtemp(prefix="dr-standby-"))
    _give(work, 0o755)
    with throwaway_cluster(prefix="dr-primary-") as primary:
        _sql(primary.conn(), "CREATE TABLE orders (id int PRIMARY KEY, note text, lsn pg_lsn)")
        target = save_target(target=DatabaseTarget(name="shop-db", host="127.0.0.1", port=primary.port,
                                                   dbname="postgres", user="postgres", sslmode="disable"),
                             actor=SYSTEM, password=PASSWORD)
        plan = DRPlan.objects.create(name="shop", primary=target, catchup_seconds=5)
        pgdata = work / "standby"
        result = _cmd("standby_create", "shop-db", "--name", "shop-standby", "--pgdata", str(pgdata),
                      "--port", str(clusters.free_port()), "--plan", "shop")
        assert result["status"] == "succeeded", result
        standby = DatabaseTarget.objects.get(name="shop-standby")
        cluster = clusters.LocalCluster(base=work, port=standby.port, data_dir=pgdata)
        try:
            yield primary, plan, standby
        finally:
            cluster.stop(mode="immediate")
            shutil.rmtree(work, ignore_errors=True)


def _insert(primary, first, count):
    """Commit rows one by one; each row records the WAL position right after its commit."""
    conn = primary.conn()
    with psycopg.connect(**conn.kwargs("dr-test"), autocommit=True) as c:
        for i in range(first, first + count):
            c.execute("INSERT INTO orders (id, note) VALUES (%s, 'order ' || %s)", (i, i))
            c.execute("UPDATE orders SET lsn = pg_current_wal_insert_lsn() WHERE id = %s", (i,))


def _ids(target):
    return {r[0] for r in _sql(PgConn.for_target(target), "SELECT id FROM orders")}


def _wait_streaming(standby, timeout=30):
    """Until the standby streams and has replayed everything the primary has written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = health.plan_reading(DRPlan.objects.get(name="shop"))["standbys"][0]
        if reading.get("streaming") and reading.get("lag_bytes") == 0:
            return reading
        time.sleep(0.1)
    raise AssertionError(f"standby not streaming: {reading}")


def test_the_standby_streams_is_registered_and_holds_no_password(pair, api_as):
    primary, plan, standby = pair
    assert standby.enabled is False and standby.data_directory and plan.standbys.get() == standby
    _insert(primary, 1, 5)
    reading = health.plan_reading(plan)
    assert reading["primary"]["healthy"] and reading["primary"]["replicas"][0]["application_name"] == "shop-standby"
    _wait_streaming(standby)
    assert _ids(standby) == {1, 2, 3, 4, 5}
    (status,) = api_as("viewer").get(f"{V1}/disaster-recovery/status").json()["plans"]
    (row,) = status["standbys"]
    # Caught up (an idle primary may still log a running-transactions record between the two readings).
    assert row["target"] == "shop-standby" and row["streaming"] and 0 <= row["lag_bytes"] < 65536
    assert row["last_replay_at"] and status["primary"]["healthy"]
    conf = (Path(standby.data_directory) / "postgresql.auto.conf").read_text()
    assert "primary_conninfo" in conf and "passfile=" in conf and PASSWORD not in conf
    passfile = Path(standby.data_directory).parent / ".standby.pgpass"
    assert passfile.stat().st_mode & 0o077 == 0
    from apps.jobs.models import Job

    job = Job.objects.get(type="recovery.standby_create")
    assert PASSWORD not in json.dumps(job.args) + json.dumps(job.result) + "\n".join(map(str, job.log or []))


class _Receiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        _Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/switch", _Receiver.bodies
    server.shutdown()


def test_failover_with_a_reachable_primary_fences_promotes_switches_and_loses_nothing(pair, receiver, tmp_path):
    primary, plan, standby = pair
    url, bodies = receiver
    seen = tmp_path / "hook.json"
    plan.switch_hook_command = [sys.executable, "-c", "import json, os, sys; open(sys.argv[1], 'w').write("
                                "json.dumps({k: v for k, v in os.environ.items()}))", str(seen)]
    plan.switch_hook_url = url
    plan.save()
    finished = []
    signals.failover_finished.connect(lambda failover, **kw: finished.append(failover.status), weak=False,
                                      dispatch_uid="test-finished")
    _insert(primary, 1, 300)  # asynchronous replication: the standby may trail; the fence and catch-up close it

    with pytest.raises(CommandError, match="confirm"):
        call_command("dr_failover", "shop", "--confirm", "shop-typo", stdout=StringIO())
    result = _cmd("dr_failover", "shop", "--confirm", "shop")

    assert result["status"] == "succeeded", result
    assert result["new_primary"] == "shop-standby" and result["fenced"].startswith("read-only")
    assert result["data_loss_bytes"] == 0 and result["rto_seconds"] > 0
    assert _ids(standby) == set(range(1, 301))  # every committed row
    _sql(PgConn.for_target(standby), "INSERT INTO orders (id) VALUES (1000)")  # writable
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the old primary is fenced
        _sql(primary.conn(), "INSERT INTO orders (id) VALUES (1001)")
    env = json.loads(seen.read_text())
    assert env["DR_NEW_PRIMARY_PORT"] == str(standby.port) and env["DR_PLAN"] == "shop"
    assert not any(PASSWORD in v for v in env.values()) and "PGPASSWORD" not in env
    assert bodies == [{"dr_plan": "shop", "dr_new_primary_target": "shop-standby", "dr_new_primary_host": "127.0.0.1",
                       "dr_new_primary_port": str(standby.port), "dr_new_primary_dbname": "postgres"}]
    plan.refresh_from_db()
    assert plan.primary == standby and not plan.standbys.exists() and plan.auto_failover_armed is False
    assert DatabaseTarget.objects.get(name="shop-standby").enabled is True  # scheduled backups follow
    assert DatabaseTarget.objects.get(name="shop-db").enabled is False
    assert finished == ["succeeded"]
    signals.failover_finished.disconnect(dispatch_uid="test-finished")


def test_synchronous_standby_loses_nothing_when_the_primary_crashes(pair, api_as):
    primary, plan, standby = pair
    _wait_streaming(standby)
    _sql(primary.conn(), "ALTER SYSTEM SET synchronous_standby_names = '\"shop-standby\"'")
    _sql(primary.conn(), "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 30
    while _sql(primary.conn(), "SELECT sync_state FROM pg_stat_replication")[0][0] != "sync":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _insert(primary, 1, 200)  # each commit returned only once the standby had flushed it
    primary.stop(mode="immediate")  # a crash: no shutdown checkpoint, nothing more sent

    r = api_as("admin").post(f"{V1}/disaster-recovery/failover", {"plan": plan.pk, "confirm": "shop"}, format="json")
    assert r.status_code == 202, r.content  # run inline (Q_SYNC) by the time it answers
    result = api_as("admin").get(f"{V1}/disaster-recovery/failovers").json()["results"][0]
    assert result["id"] == r.json()["failover_id"]
    assert result["status"] == "succeeded", result
    assert result["fenced"].startswith("unreachable")
    assert _ids(standby) == set(range(1, 201))  # zero loss
    failover.verify_write(standby)


def test_asynchronous_loss_is_bounded_by_the_measured_lag(pair):
    primary, plan, standby = pair
    _insert(primary, 1, 1)
    _wait_streaming(standby)  # it has replayed a commit: lag in seconds is the age of that commit
    _sql(PgConn.for_target(standby), "SELECT pg_wal_replay_pause()")  # the standby falls behind
    _insert(primary, 2, 199)
    check = failover.check_plan(plan=plan)  # the last good check: the primary's position and the lag
    assert check["primary_healthy"]
    plan.refresh_from_db()
    lag = plan.last_health["standbys"][0]["lag_bytes"]
    assert lag > 0 and plan.last_health["standbys"][0]["lag_seconds"] > 0

    plan.max_lag_bytes = lag // 2  # refused before anything is touched
    plan.save()
    with pytest.raises(CommandError, match="bytes behind"):
        call_command("dr_failover", "shop", "--confirm", "shop", stdout=StringIO())
    assert Failover.objects.get().status == FailoverStatus.FAILED
    _sql(primary.conn(), "INSERT INTO orders (id) VALUES (999)")  # not fenced: still writable
    _sql(primary.conn(), "DELETE FROM orders WHERE id = 999")

    plan.max_lag_bytes = None
    plan.catchup_seconds = 1
    plan.save()
    (last_lsn,), = _sql(primary.conn(), "SELECT pg_current_wal_lsn()::text")
    DRPlan.objects.filter(pk=plan.pk).update(last_primary_lsn=last_lsn)
    primary.stop(mode="immediate")
    result = _cmd("dr_failover", "shop", "--confirm", "shop")

    assert result["status"] == "succeeded", result
    present = _ids(standby)
    # Rows the standby lacks can only be those committed after the promoted position; the window says how much.
    assert result["data_loss_bytes"] == max(0, lsns.parse(last_lsn) - lsns.parse(result["promoted_lsn"]))
    assert result["data_loss_bytes"] <= lag + 1024 * 1024
    missing = set(range(1, 201)) - present
    assert not missing or result["data_loss_bytes"] > 0, missing


def test_auto_failover_ignores_one_missed_check_fires_at_the_threshold_and_only_once(pair):
    primary, plan, standby = pair
    plan.auto_failover, plan.failure_threshold, plan.health_timeout_seconds = True, 2, 2
    plan.save()
    fired = []
    signals.auto_failover_fired.connect(lambda plan, failover, **kw: fired.append(failover), weak=False,
                                        dispatch_uid="test-fired")
    _wait_streaming(standby)
    assert failover.check_plan(plan=plan)["consecutive_failures"] == 0

    primary.stop(mode="immediate")
    one = failover.check_plan(plan=plan)
    assert one == {"plan": "shop", "primary_healthy": False, "consecutive_failures": 1, "failover_job": None}
    primary.start()
    assert failover.check_plan(plan=plan)["consecutive_failures"] == 0  # back: the count starts again
    assert not Failover.objects.exists()

    primary.stop(mode="immediate")
    assert failover.check_plan(plan=plan)["failover_job"] is None
    fire = failover.check_plan(plan=plan)  # the second in a row: the threshold
    assert fire["failover_job"], fire
    done = Failover.objects.get()
    assert done.automatic and done.status == FailoverStatus.SUCCEEDED, done.error
    assert len(fired) == 1 and fired[0].pk == done.pk
    plan.refresh_from_db()
    assert plan.primary == standby and plan.auto_failover_armed is False

    # The new primary fails too: the plan is disarmed, so nothing fires (never flaps) until re-armed.
    _sql(PgConn.for_target(standby), "SELECT 1")
    DRPlan.objects.filter(pk=plan.pk).update(primary=DatabaseTarget.objects.get(name="shop-db"))
    for _ in range(3):
        assert failover.check_plan(plan=plan)["failover_job"] is None
    assert Failover.objects.count() == 1
    signals.auto_failover_fired.disconnect(dispatch_uid="test-fired")


def test_a_failing_switch_hook_fails_the_failover_but_the_plan_follows_the_promotion(pair):
    primary, plan, standby = pair
    plan.switch_hook_command, plan.fence = ["/bin/false"], "stop"
    plan.save()
    DatabaseTarget.objects.filter(name="shop-db").update(data_directory=str(primary.data))
    with pytest.raises(CommandError, match="was promoted and is the plan's primary now, but switching failed"):
        call_command("dr_failover", "shop", "--confirm", "shop", stdout=StringIO())
    row = Failover.objects.get()
    assert row.status == FailoverStatus.FAILED and row.promoted_lsn and row.rto_seconds is None
    assert row.fenced.startswith("stopped") and not primary.is_running()  # the hard fence: pg_ctl stop
    plan.refresh_from_db()
    assert plan.primary == standby  # the only writable server: backups must follow it whatever the hook did
    failover.verify_write(standby)
