"""Failover of a plan to a streaming standby: check, fence, promote, switch, verify, record.

Order, and why:
1. Read the primary and every standby (apps/recovery/health.py); pick the healthy standby that is least
   behind (or the one asked for), and refuse one further behind than `plan.max_lag_bytes` before touching
   anything.
2. Fence the old primary when it answers, so applications cannot write to two primaries: `read_only` sets
   `default_transaction_read_only` with ALTER SYSTEM, reloads, and ends every client session (new sessions
   start read-only; a client that explicitly asks for READ WRITE could still write, so `stop` is the hard
   fence for a primary whose data directory is on this machine). Then the standby is given up to
   `plan.catchup_seconds` to replay everything up to the primary's last position: with a reachable
   primary nothing committed is lost, even with asynchronous replication.
3. `pg_promote()`, then polls until it is out of recovery; the plan and the targets follow at once (the
   promoted server is the only writable one now): the standby becomes the plan's primary and an enabled
   target, so scheduled backups continue from it; the old primary is disabled and leaves the plan (it needs pg_rewind or a new base
   backup before it can follow again). Auto-failover is disarmed until an operator re-arms the plan.
4. The switch hook points applications at the new primary; then a write (a committed transaction with a
   transaction id) is verified on it. RTO is the wall time from the start of the failover to that write.
5. The data-loss window is the old primary's last known WAL position minus what the standby had replayed
   when promoted (0 when it had everything; the last good health check's position when the primary was down).

The row ends succeeded or failed; a failure after promotion says so (the promotion cannot be undone), and a
failure after fencing says how to lift the fence. `signals.failover_finished` is sent either way.
"""
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core.errors import ConflictError, UserError
from apps.core.services import Actor, audit
from apps.databases import catalog, clusters
from apps.databases import lsn as lsns
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext, note
from apps.recovery import health, signals
from apps.recovery.models import DRPlan, DRStrategy, Failover, FailoverStatus, FenceMode

log = logging.getLogger(__name__)
ACTIVE = [FailoverStatus.PENDING, FailoverStatus.RUNNING]


class FailoverError(UserError):
    pass


def request_failover(*, plan: DRPlan, actor: Actor, automatic: bool = False,
                     standby: DatabaseTarget | None = None) -> Failover:
    """Check that the plan can fail over and record the failover (pending); the caller attaches the job."""
    if plan.strategy != DRStrategy.PROMOTE_STANDBY:
        raise UserError(f"Plan {plan.name} recovers by restoring from backup, not by promoting a standby: use "
                        "point-in-time recovery (docs/OPERATIONS.md, complete database failure).")
    with transaction.atomic():
        plan = DRPlan.objects.select_for_update().get(pk=plan.pk)
        standbys = list(plan.standbys.all())
        if not standbys:
            raise UserError(f"Plan {plan.name} has no standby to promote.")
        if standby is not None and standby not in standbys:
            raise UserError(f"{standby.name} is not a standby of plan {plan.name}.")
        if plan.failovers.filter(status__in=ACTIVE).exists():
            raise ConflictError(f"A failover of plan {plan.name} is already under way.")
        failover = Failover.objects.create(plan=plan, automatic=automatic, requested_standby=standby,
                                           old_primary=plan.primary)
        audit(actor=actor, action="dr.failover.requested", obj=failover,
              details={"plan": plan.name, "automatic": automatic, "standby": standby.name if standby else ""})
    return failover


def run_failover(*, failover: Failover, ctx: JobContext | None = None) -> Failover:
    if not Failover.objects.filter(pk=failover.pk, status=FailoverStatus.PENDING).update(
            status=FailoverStatus.RUNNING, started_at=timezone.now()):
        raise UserError(f"Failover {failover.pk} is not pending; not running it again.")
    failover.refresh_from_db()
    t0 = time.monotonic()
    record: dict = {}
    stage = "checking"
    try:
        plan = failover.plan
        old = plan.primary
        reading = health.plan_reading(plan)
        note(ctx, f"primary {old.name}: " + ("healthy" if reading["primary"].get("healthy")
                                              else f"down ({reading['primary'].get('error', '?')})"))
        standby, chosen = _choose_standby(plan, failover, reading)
        record.update(new_primary=standby, lag_bytes_at_start=chosen.get("lag_bytes"),
                      lag_seconds_at_start=chosen.get("lag_seconds"))
        note(ctx, f"promoting {standby.name}: {chosen.get('lag_bytes')} bytes / {chosen.get('lag_seconds')} s behind")

        stage = "fencing"
        fenced, old_lsn = _fence(plan, old, reading["primary"], ctx)
        old_lsn = old_lsn or plan.last_primary_lsn
        record.update(fenced=fenced, old_primary_lsn=old_lsn or "")
        note(ctx, f"old primary: {fenced}")
        if old_lsn:
            _catch_up(standby, old_lsn, seconds=plan.catchup_seconds, ctx=ctx)

        stage = "promoting"
        t_promote = time.monotonic()
        promoted_lsn = _promote(standby)
        record.update(promoted_lsn=promoted_lsn, promoted_at=timezone.now(),
                      promote_seconds=time.monotonic() - t_promote,
                      data_loss_bytes=(max(0, lsns.parse(old_lsn) - lsns.parse(promoted_lsn)) if old_lsn else None))
        note(ctx, f"promoted {standby.name} at {promoted_lsn}; data-loss window {record['data_loss_bytes']} bytes")
        _follow(plan=plan, old=old, new=standby, failover=failover)

        stage = "switching"
        record["hook_result"] = run_switch_hook(plan, standby)
        note(ctx, f"switch hook: {record['hook_result']}")
        stage = "verifying"
        verify_write(standby)
        record["rto_seconds"] = time.monotonic() - t0
        note(ctx, f"write verified on {standby.name}; RTO {record['rto_seconds']:.2f} s")
        Failover.objects.filter(pk=failover.pk).update(status=FailoverStatus.SUCCEEDED, finished_at=timezone.now(),
                                                       error="", **record)
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        if stage in ("switching", "verifying"):
            message = f"The standby was promoted and is the plan's primary now, but {stage} failed: {message}"
        elif stage in ("fencing", "promoting") and record.get("fenced", "").startswith("read-only"):
            message += (" The old primary is still fenced: lift it with ALTER SYSTEM RESET "
                        "default_transaction_read_only; SELECT pg_reload_conf();")
        Failover.objects.filter(pk=failover.pk).update(status=FailoverStatus.FAILED, finished_at=timezone.now(),
                                                       error=message, **record)
        failover.refresh_from_db()
        signals.failover_finished.send(sender=Failover, failover=failover)
        if isinstance(exc, Exception):
            raise FailoverError(message) from exc
        raise
    failover.refresh_from_db()
    signals.failover_finished.send(sender=Failover, failover=failover)
    return failover


def _choose_standby(plan: DRPlan, failover: Failover, reading: dict) -> tuple[DatabaseTarget, dict]:
    by_name = {r["target"]: r for r in reading["standbys"]}
    wanted = [failover.requested_standby] if failover.requested_standby else list(plan.standbys.all())
    healthy = [(t, by_name[t.name]) for t in wanted if by_name.get(t.name, {}).get("healthy")]
    if not healthy:
        why = "; ".join(f"{t.name}: {by_name.get(t.name, {}).get('error', 'not read')}" for t in wanted)
        raise UserError(f"No healthy standby to promote ({why}).")
    unknown = 1 << 62
    standby, chosen = min(healthy, key=lambda pair: pair[1].get("lag_bytes") if pair[1].get("lag_bytes")
                          is not None else unknown)
    lag = chosen.get("lag_bytes")
    if plan.max_lag_bytes is not None and lag is not None and lag > plan.max_lag_bytes:
        raise UserError(f"Standby {standby.name} is {lag} bytes behind the primary, more than the plan allows "
                        f"({plan.max_lag_bytes}); nothing was changed.")
    return standby, chosen


def _fence(plan: DRPlan, old: DatabaseTarget, reading: dict, ctx) -> tuple[str, str | None]:
    """Fence the old primary if it answers; (what was done, its last WAL position if read)."""
    if not reading.get("reachable"):
        return f"unreachable, not fenced ({reading.get('error', '')})", None
    if plan.fence == FenceMode.NONE:
        return "not fenced (plan says none)", reading.get("lsn")
    if plan.fence == FenceMode.STOP:
        data = Path(old.data_directory) if old.data_directory else None
        if data is not None and (data / "PG_VERSION").exists():
            lsn = _current_lsn(old) or reading.get("lsn")
            clusters.LocalCluster(base=data.parent, port=old.port, data_dir=data).stop(mode="fast")
            return f"stopped (pg_ctl stop -m fast on {data})", lsn
        note(ctx, "the old primary's data directory is not on this machine: fencing it read-only instead")
    with catalog.connect(PgConn.for_target(old), app_name=health.APP_NAME) as c:
        c.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        c.execute("SELECT pg_reload_conf()")
        ended = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]
        lsn = c.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    return f"read-only (default_transaction_read_only = on, {ended} sessions ended)", lsn


def _current_lsn(target: DatabaseTarget) -> str | None:
    try:
        with catalog.connect(PgConn.for_target(target), app_name=health.APP_NAME) as c:
            return c.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    except (UserError, psycopg.Error):
        return None


def _catch_up(standby: DatabaseTarget, old_lsn: str, *, seconds: int, ctx) -> None:
    """Wait until the standby has replayed up to `old_lsn`, or `seconds` pass (then promote what it has)."""
    goal = lsns.parse(old_lsn)
    deadline = time.monotonic() + seconds
    while True:
        r = health.standby_reading(standby)
        replayed = lsns.parse(r["replay_lsn"]) if r.get("replay_lsn") else 0
        if replayed >= goal:
            return
        if time.monotonic() > deadline:
            note(ctx, f"the standby replayed up to {r.get('replay_lsn')} only, not {old_lsn}, within {seconds} s")
            return
        time.sleep(0.1)


def _promote(standby: DatabaseTarget, *, timeout: float = 120) -> str:
    """Promote the standby and wait until it is out of recovery; the WAL position it had replayed.

    Not pg_promote(wait => true): that call is one long query holding a snapshot while the rest of the received
    WAL is replayed, and a cleanup record in it conflicts with that snapshot, so the server cancels our own call
    after max_standby_streaming_delay (found on a real standby). pg_promote(wait => false) and short polls
    hold nothing.
    """
    with catalog.connect(PgConn.for_target(standby), app_name=health.APP_NAME) as c:
        if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise UserError(f"{standby.name} is not in recovery: it is not a standby (promoted already?).")
        if not c.execute("SELECT pg_promote(wait => false)").fetchone()[0]:
            raise UserError(f"{standby.name} refused to be promoted; see its server log.")
        deadline = time.monotonic() + timeout
        while c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise UserError(f"{standby.name} did not finish promotion within {timeout:.0f} s; see its server log.")
            time.sleep(0.05)
        # Once promoted, the replay position stays where recovery ended.
        return c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]


def _follow(*, plan: DRPlan, old: DatabaseTarget, new: DatabaseTarget, failover: Failover) -> None:
    """The plan and the targets follow the promotion: backups continue from the new primary."""
    with transaction.atomic():
        DatabaseTarget.objects.filter(pk=new.pk).update(enabled=True)
        DatabaseTarget.objects.filter(pk=old.pk).update(enabled=False)
        plan.standbys.remove(new)
        DRPlan.objects.filter(pk=plan.pk).update(primary=new, auto_failover_armed=False, consecutive_failures=0,
                                                 last_primary_lsn="")
        audit(actor=Actor(extra={"name": "failover"}), action="dr.failover.promoted", obj=failover,
              details={"plan": plan.name, "old_primary": old.name, "new_primary": new.name,
                       "old_primary_enabled": False, "new_primary_enabled": True})


def hook_environment(plan: DRPlan, new: DatabaseTarget) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "DR_PLAN": plan.name,
            "DR_NEW_PRIMARY_TARGET": new.name, "DR_NEW_PRIMARY_HOST": new.host,
            "DR_NEW_PRIMARY_PORT": str(new.port), "DR_NEW_PRIMARY_DBNAME": new.dbname}


def run_switch_hook(plan: DRPlan, new: DatabaseTarget) -> str:
    """Point applications at the new primary: the plan's command (no shell) or an HTTP POST; what it answered.

    The command gets only PATH, LANG and the DR_* variables (no secrets of this process); the POST body holds
    the same names, never a password.
    """
    env = hook_environment(plan, new)
    outcomes = []
    if plan.switch_hook_command:
        try:
            done = subprocess.run([str(a) for a in plan.switch_hook_command], env=env, capture_output=True,
                                  text=True, timeout=plan.switch_hook_timeout_seconds, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"The switch hook command did not run: {exc}") from None
        if done.returncode != 0:
            raise UserError(f"The switch hook command exited {done.returncode}: {done.stderr.strip()[-500:]}")
        outcomes.append(f"command exited 0: {done.stdout.strip()[-300:]}")
    if plan.switch_hook_url:
        body = json.dumps({k.lower(): v for k, v in env.items() if k.startswith("DR_")}).encode()
        request = urllib.request.Request(plan.switch_hook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=plan.switch_hook_timeout_seconds) as response:
                outcomes.append(f"POST answered {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"The switch hook POST to {plan.switch_hook_url} failed: {exc}") from None
    return "; ".join(outcomes) or "no switch hook configured"


def verify_write(target: DatabaseTarget, *, attempts: int = 50) -> None:
    """Commit a transaction that takes a transaction id (a write the server must log) on `target`."""
    last = None
    for _ in range(attempts):
        try:
            with psycopg.connect(**PgConn.for_target(target).kwargs(health.APP_NAME)) as c:
                c.execute("SET TRANSACTION READ WRITE")
                c.execute("SELECT pg_current_xact_id()")
                c.commit()
                return
        except psycopg.Error as exc:
            last = catalog.first_line(exc)
            time.sleep(0.1)
    raise UserError(f"A write on {target.name} failed: {last}")


# --- automatic failover ----------------------------------------------------------------------------------------

def check_plan(*, plan: DRPlan) -> dict:
    """One health check of a plan: record the readings; count consecutive failures of the primary; with
    auto-failover on and armed, start a failover when the count reaches the threshold (and disarm the plan)."""
    reading = health.plan_reading(plan)
    primary = reading["primary"]
    now = timezone.now()
    if primary.get("healthy"):
        DRPlan.objects.filter(pk=plan.pk).update(consecutive_failures=0, last_health=reading, last_health_at=now,
                                                 last_primary_lsn=primary["lsn"])
        return {"plan": plan.name, "primary_healthy": True, "consecutive_failures": 0, "failover_job": None}
    DRPlan.objects.filter(pk=plan.pk).update(consecutive_failures=F("consecutive_failures") + 1,
                                             last_health=reading, last_health_at=now)
    plan.refresh_from_db()
    out = {"plan": plan.name, "primary_healthy": False, "consecutive_failures": plan.consecutive_failures,
           "failover_job": None}
    if plan.auto_failover and plan.auto_failover_armed and plan.consecutive_failures >= plan.failure_threshold:
        out["failover_job"] = _fire(plan)
    return out


def _fire(plan: DRPlan) -> str | None:
    from apps.recovery.jobs import FailoverJob

    # Disarm first, in its own statement: whatever happens next, this plan does not fire again by itself.
    if not DRPlan.objects.filter(pk=plan.pk, auto_failover_armed=True).update(auto_failover_armed=False):
        return None
    actor = Actor(extra={"name": "auto-failover"})
    audit(actor=actor, action="dr.auto_failover.fired", obj=plan,
          details={"consecutive_failures": plan.consecutive_failures, "threshold": plan.failure_threshold})
    try:
        job = FailoverJob.enqueue(plan=plan, automatic=True, actor=actor)
    except UserError as exc:
        log.error("Auto-failover of plan %s could not start: %s", plan.name, exc)
        signals.auto_failover_fired.send(sender=DRPlan, plan=plan, failover=None)
        return None
    failover = Failover.objects.filter(job=job).first()
    signals.auto_failover_fired.send(sender=DRPlan, plan=plan, failover=failover)
    return job.pk


def rearm(*, plan: DRPlan, actor: Actor) -> DRPlan:
    """An operator re-arms auto-failover after a failover (checked the new standbys, fixed the cause)."""
    DRPlan.objects.filter(pk=plan.pk).update(auto_failover_armed=True, consecutive_failures=0)
    audit(actor=actor, action="dr.auto_failover.rearmed", obj=plan)
    plan.refresh_from_db()
    return plan
