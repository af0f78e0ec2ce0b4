"""Health and replication lag of a plan's primary and standbys, read from the servers themselves.

Primary: reachable, not in recovery, its current WAL position and pg_stat_replication. Standby: reachable, in
recovery, pg_last_wal_receive_lsn / pg_last_wal_replay_lsn / pg_last_xact_replay_timestamp. Lag in bytes is
the primary's position minus the standby's replay position (receive minus replay when the primary is down);
lag in seconds is 0 when nothing is left to replay, else the age of the last replayed commit.
Readings are plain dicts (they go into DRPlan.last_health, the status API and the failover record).
"""
import psycopg

from apps.databases import catalog
from apps.databases import lsn as lsns
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget

APP_NAME = "backupsite-dr"


def _connect(target: DatabaseTarget, timeout: int) -> psycopg.Connection:
    kw = PgConn.for_target(target).kwargs(APP_NAME)
    kw["connect_timeout"] = max(1, timeout)
    conn = psycopg.connect(**kw, autocommit=True)
    conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    return conn


def primary_reading(target: DatabaseTarget, *, timeout: int = 5) -> dict:
    """{"target", "reachable", "in_recovery", "lsn", "replicas": [...], "error"}; never raises for a dead server."""
    out = {"target": target.name, "host": target.host, "port": target.port, "reachable": False}
    try:
        with _connect(target, timeout) as c:
            in_recovery, lsn = c.execute(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_lsn() END::text").fetchone()
            replicas = c.execute(
                "SELECT application_name, state, sync_state, replay_lsn::text, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
                "extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication").fetchall() if not in_recovery else []
    except psycopg.Error as exc:
        out["error"] = catalog.first_line(exc)
        return out
    out.update(reachable=True, in_recovery=in_recovery, lsn=lsn, healthy=not in_recovery, replicas=[
        {"application_name": r[0], "state": r[1], "sync_state": r[2], "replay_lsn": r[3], "lag_bytes": r[4],
         "replay_lag_seconds": r[5]} for r in replicas])
    if in_recovery:
        out["error"] = "the primary is in recovery (is it a standby?)"
    return out


def standby_reading(target: DatabaseTarget, *, primary_lsn: str | None = None, timeout: int = 5) -> dict:
    """{"target", "reachable", "in_recovery", "receive_lsn", "replay_lsn", "last_replay_at", "lag_bytes",
    "lag_seconds", "streaming", "healthy", "error"}; never raises for a dead server."""
    out = {"target": target.name, "host": target.host, "port": target.port, "reachable": False, "healthy": False}
    try:
        with _connect(target, timeout) as c:
            row = c.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                "pg_last_xact_replay_timestamp(), "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, "
                "(SELECT status FROM pg_stat_wal_receiver LIMIT 1)").fetchone()
    except psycopg.Error as exc:
        out["error"] = catalog.first_line(exc)
        return out
    in_recovery, receive, replay, replay_at, age, receiver = row
    out.update(reachable=True, in_recovery=in_recovery, receive_lsn=receive, replay_lsn=replay,
               last_replay_at=replay_at.isoformat() if replay_at else None, streaming=receiver == "streaming")
    if not in_recovery:
        out["error"] = "not in recovery: it is a primary already"
        return out
    ahead = primary_lsn or receive
    lag = max(0, lsns.parse(ahead) - lsns.parse(replay)) if ahead and replay else None
    out["lag_bytes"] = lag
    out["lag_seconds"] = 0.0 if lag == 0 else (round(age, 3) if age is not None else None)
    out["healthy"] = True
    return out


def plan_reading(plan, *, timeout: int | None = None) -> dict:
    """The primary's reading and each standby's, lag measured against the primary's current position."""
    timeout = timeout or plan.health_timeout_seconds
    primary = primary_reading(plan.primary, timeout=timeout)
    primary_lsn = primary.get("lsn") if primary.get("healthy") else None
    standbys = [standby_reading(s, primary_lsn=primary_lsn, timeout=timeout) for s in plan.standbys.order_by("name")]
    return {"primary": primary, "standbys": standbys}
