#!/usr/bin/env python
"""Disaster-recovery benchmark: measured failover RTO / data-loss window and drill RTO / RPO on real clusters,
next to the bare PostgreSQL anchor and the seed's objectives (RPO 1-4 h, RTO 4-24 h).

Per repeat, on a pgbench database of --scale:
  standby      ours `standby_create` | anchor `pg_basebackup -X stream -c fast -R` + `pg_ctl start`
  failover A   primary reachable, pgbench writing (asynchronous replication): our failover job (health read,
               fence read-only, catch-up, promote, hook, verified write) | anchor `pg_ctl promote -w` + a write
               (no fence, no checks: the floor any failover pays)
  failover B   primary crashed (immediate stop) during pgbench, synchronous replication: our failover job
  drill        (once) `dr_test` on an archiving site: latest physical backup + WAL into a scratch cluster,
               checks, removed; its RTO and RPO as the drill reports them

Everything of ours runs in this process against a temporary SQLite metadata database, except the drill, which
runs in an archiving site as the postgres user (tests/wal_site.py), as in the tests.

    .venv/bin/python bench/dr.py [--scale 10] [--repeat 3] [--no-docs]
"""
import argparse
import base64
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-dr-"))
WORK.chmod(0o755)
os.environ.update(DEBUG="true", SECRET_KEY="bench-dr-secret-key-0123456789", LOG_LEVEL="WARNING", Q_SYNC="true",
                  DATABASE_URL=f"sqlite:///{WORK}/meta.sqlite3",
                  BACKUP_ENCRYPTION_KEYS="bench:" + base64.b64encode(os.urandom(32)).decode())
os.environ.pop("BACKUPSITE_ENV_FILE", None)

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apps.core.services import SYSTEM  # noqa: E402
from apps.databases import clusters  # noqa: E402
from apps.databases.clusters import (  # noqa: E402
    LocalCluster,
    as_server_user,
    free_port,
    server_bin_dir,
)
from apps.databases.models import DatabaseTarget  # noqa: E402
from apps.databases.pgtools import pg_bin  # noqa: E402
from apps.databases.services import save_target  # noqa: E402
from bench.common import log, machine_info, write_section  # noqa: E402

MARK_START, MARK_END = "<!-- bench/dr.py results: start -->", "<!-- bench/dr.py results: end -->"


def give(path: Path) -> None:
    clusters.give_to_server_user(path)
    path.chmod(0o755)


def pgbench(cluster: LocalCluster, *args: str, background: bool = False):
    cmd = ["pgbench", *args]
    env = cluster.conn().env("bench-dr")
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return None


def sql(port: int, query: str):
    with psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="postgres", autocommit=True) as c:
        cur = c.execute(query)
        return cur.fetchall() if cur.description else None


def primary_with_data(n: int, scale: int, sync: bool = False) -> tuple[LocalCluster, DatabaseTarget]:
    cluster = LocalCluster(base=WORK / f"primary{n}", port=free_port())
    cluster.initdb()
    cluster.start()
    pgbench(cluster, "-i", "-s", str(scale), "-q")
    sql(cluster.port, "CHECKPOINT")
    target = save_target(target=DatabaseTarget(name=f"prim{n}", host="127.0.0.1", port=cluster.port,
                                               dbname="postgres", user="postgres", sslmode="disable"),
                         actor=SYSTEM, password="bench-not-needed")
    return cluster, target


def ours_standby(n: int, target: DatabaseTarget, plan) -> tuple[float, DatabaseTarget]:
    home = WORK / f"standby{n}"
    home.mkdir()
    give(home)
    t0 = time.perf_counter()
    call_command("standby_create", target.name, "--name", f"stby{n}", "--pgdata", str(home / "data"),
                 "--port", str(free_port()), "--plan", plan.name, stdout=open(os.devnull, "w"))
    return time.perf_counter() - t0, DatabaseTarget.objects.get(name=f"stby{n}")


def anchor_standby(n: int, primary: LocalCluster) -> tuple[float, LocalCluster]:
    home = WORK / f"anchor{n}"
    home.mkdir()
    give(home)
    standby = LocalCluster(base=home, port=free_port(), data_dir=home / "data", log_file=home / "server.log")
    t0 = time.perf_counter()
    subprocess.run(as_server_user([pg_bin("pg_basebackup"), "-D", str(standby.data), "-X", "stream", "-c", "fast",
                                   "-R"]),
                   env=primary.conn().env("bench-dr"), check=True, capture_output=True)
    standby.append_conf({"port": str(standby.port), "unix_socket_directories": f"'{home}'"})
    standby.start()
    return time.perf_counter() - t0, standby


def wait_caught_up(primary_port: int, standby_port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (lsn,), = sql(primary_port, "SELECT pg_current_wal_lsn()::text")[0:1]
        (replayed,), = sql(standby_port, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        if replayed:
            return
        time.sleep(0.1)


def anchor_promote(standby: LocalCluster) -> float:
    t0 = time.perf_counter()
    subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(standby.data), "-w", "promote"]),
                   check=True, capture_output=True)
    sql(standby.port, "CREATE TABLE written_after_promotion (x int)")
    return time.perf_counter() - t0


def run_failover(plan) -> dict:
    from apps.recovery.jobs import FailoverJob, failover_report
    from apps.recovery.models import Failover

    job = FailoverJob.run_now(plan=plan, actor=SYSTEM)
    row = Failover.objects.get(pk=job.args["failover_id"])
    if row.status != "succeeded":
        raise RuntimeError(f"failover failed: {row.error}")
    return failover_report(row)


def one_repeat(n: int, scale: int) -> dict:
    from apps.recovery.models import DRPlan

    out = {}
    # A: reachable primary under load; ours vs pg_ctl promote on a second, identical standby.
    primary, target = primary_with_data(n * 10 + 1, scale)
    plan = DRPlan.objects.create(name=f"plan{n}a", primary=target, max_lag_bytes=None)
    out["standby_ours"], standby = ours_standby(n * 10 + 1, target, plan)
    out["standby_anchor"], anchor = anchor_standby(n * 10 + 1, primary)
    load = pgbench(primary, "-c", "4", "-T", "600", background=True)
    time.sleep(3)
    a = run_failover(plan)
    load.terminate()
    load.wait()
    out["rto_a"], out["promote_a"], out["loss_a"] = a["rto_seconds"], a["promote_seconds"], a["data_loss_bytes"]
    out["lag_a"] = a["lag_bytes_at_start"]
    sql(primary.port, "ALTER SYSTEM RESET default_transaction_read_only")  # lift our fence for the anchor
    sql(primary.port, "SELECT pg_reload_conf()")
    wait_caught_up(primary.port, anchor.port)
    out["rto_anchor"] = anchor_promote(anchor)
    for c in (anchor, primary, LocalCluster(base=WORK, port=standby.port, data_dir=Path(standby.data_directory))):
        c.stop(mode="immediate")

    # B: synchronous standby, primary crashed under load.
    primary, target = primary_with_data(n * 10 + 2, scale)
    plan = DRPlan.objects.create(name=f"plan{n}b", primary=target, max_lag_bytes=None)
    _, standby = ours_standby(n * 10 + 2, target, plan)
    sql(primary.port, f"ALTER SYSTEM SET synchronous_standby_names = '\"{standby.name}\"'")
    sql(primary.port, "SELECT pg_reload_conf()")
    load = pgbench(primary, "-c", "4", "-T", "600", background=True)
    time.sleep(3)
    from apps.recovery import failover

    failover.check_plan(plan=plan)  # the health schedule's last good check before the crash (its WAL position)
    primary.stop(mode="immediate")
    load.wait()
    b = run_failover(plan)
    out["rto_b"], out["promote_b"], out["loss_b"] = b["rto_seconds"], b["promote_seconds"], b["data_loss_bytes"]
    LocalCluster(base=WORK, port=standby.port, data_dir=Path(standby.data_directory)).stop(mode="immediate")
    return out


def drill(scale: int) -> dict:
    import json

    from tests.wal_site import TARGET, _give, archiving_site

    with archiving_site(prefix="bench-dr-site-") as site:
        root = site.base / "recoveries"
        root.mkdir()
        _give(root, 0o755)
        with open(site.env_file, "a") as fh:
            fh.write(f"RECOVERY_ROOT={root}\n")
        pgbench(site.cluster, "-i", "-s", str(scale), "-q")
        site.manage("db_backup", TARGET, "--method", "physical", timeout=1800)
        pgbench(site.cluster, "-c", "2", "-T", "20")  # WAL after the backup, for the drill to replay
        site.wait_archived(site.new_segment(), timeout=600)
        site.orm("from apps.recovery.models import DRPlan; from apps.databases.models import DatabaseTarget as T; "
                 f"DRPlan.objects.create(name='benchplan', primary=T.objects.get(name='{TARGET}'), "
                 "drill_tables=['public.pgbench_accounts'], "
                 "drill_probe_sql='SELECT count(*) > 0 FROM pgbench_history')")
        t0 = time.perf_counter()
        done = site.manage("dr_test", "benchplan", ok=False, timeout=3600)
        wall = time.perf_counter() - t0
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if report["status"] != "passed":
            raise RuntimeError(f"drill failed: {report}")
        (size,), = site.sql("SELECT pg_database_size('postgres')")
        return {"wall": wall, "rto": report["rto_seconds"], "rpo": report["rpo_seconds"], "db_bytes": size}


def med(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def render(args, info: dict, rows: list[dict], d: dict, started: str) -> str:
    f = (lambda v: "—" if v is None else f"{v:.2f}")
    b = (lambda v: "—" if v is None else f"{v:,.0f}")
    lines = [
        f"### Results {started}", "",
        f"- Command: `.venv/bin/python bench/dr.py --scale {args.scale} --repeat {args.repeat}`",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB RAM, Linux {info['kernel']}; "
        "other engineers' test suites share it",
        f"- Code under test: {info['code']}",
        f"- Database: pgbench scale {args.scale}; drill database {d['db_bytes'] / (1 << 20):.0f} MiB"
        if d else f"- Database: pgbench scale {args.scale}",
        f"- {args.repeat} repeat(s), medians. Load during failovers: pgbench -c 4 (asynchronous in A, synchronous "
        "in B).", "",
        "| measure | ours | anchor (bare PostgreSQL) | seed objective |",
        "|---|---:|---:|---:|",
        f"| standby creation, s | {f(med(rows, 'standby_ours'))} | {f(med(rows, 'standby_anchor'))} "
        "(pg_basebackup -R + start) | — |",
        f"| failover RTO, primary reachable, async, s | {f(med(rows, 'rto_a'))} | {f(med(rows, 'rto_anchor'))} "
        "(pg_ctl promote -w + a write; no fence, no checks) | 4-24 h |",
        f"| of which promotion, s | {f(med(rows, 'promote_a'))} | — | — |",
        f"| standby lag at start (A), bytes | {b(med(rows, 'lag_a'))} | — | — |",
        f"| data-loss window (A), bytes | {b(med(rows, 'loss_a'))} | — | RPO 1-4 h |",
        f"| failover RTO, primary crashed, sync, s | {f(med(rows, 'rto_b'))} | — | 4-24 h |",
        f"| data-loss window (B, vs the last check), bytes | {b(med(rows, 'loss_b'))} | — | RPO 1-4 h |",
    ]
    if d:
        lines += [f"| drill RTO (restore + replay to accepting queries), s | {f(d['rto'])} | — | 4-24 h |",
                  f"| drill RPO (restore time − last replayed commit), s | {f(d['rpo'])} | — | 1-4 h |",
                  f"| drill wall time incl. checks and teardown, s | {f(d['wall'])} | — | — |"]
    return "\n".join(lines) + "\n\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-drill", action="store_true")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    call_command("migrate", verbosity=0)
    rows = []
    try:
        for n in range(args.repeat):
            log(f"repeat {n + 1}/{args.repeat}")
            rows.append(one_repeat(n, args.scale))
            log(str(rows[-1]))
        d = None if args.no_drill else drill(args.scale)
        log(f"drill: {d}")
    finally:
        for data in WORK.glob("*/data"):
            LocalCluster(base=data.parent, port=0, data_dir=data).stop(mode="immediate")
        for base in WORK.glob("primary*"):
            LocalCluster(base=base, port=0).stop(mode="immediate")
        shutil.rmtree(WORK, ignore_errors=True)
    section = render(args, info, rows, d, started)
    print(section)
    if not args.no_docs:
        write_section(section, MARK_START, MARK_END,
                      "## Disaster recovery: failover and drills\n\nProduced by `bench/dr.py`. The section between "
                      "the markers is rewritten on every run; notes after it are written by hand.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
