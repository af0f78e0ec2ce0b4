"""Load benchmark of the production profile: list and dashboard latency with a large catalog, served by gunicorn.

A throwaway PostgreSQL cluster holds the metadata database (as in production); it is migrated and filled with
--targets targets and --backups backups (each with a job, an artifact and a replica: tests/catalog_fill.py) and
--alerts alerts. gunicorn (backupsite/gunicorn.conf.py, DEBUG off, whitenoise) serves the app; a client signed in
as a viewer requests each endpoint in turn (round robin, so a slow moment of this shared machine hits all of them
alike), first from one client, then from --clients concurrent ones, and reports p50 / p95 / max per endpoint.
/healthz (no database) is the floor: what gunicorn and Django cost without any query. Target: p95 < 100 ms.

    .venv/bin/python bench/load_catalog.py [--targets 100] [--backups 10000] [--requests 200] [--no-write]

Results go to docs/BENCHMARKS.md between the markers of this benchmark, with the machine's load.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, log, open_cluster, write_section

from apps.databases.clusters import create_database, free_port

MARK_START = "<!-- bench/load_catalog.py results: start -->"
MARK_END = "<!-- bench/load_catalog.py results: end -->"
INTRO = """## Production profile: list and dashboard latency with 10,000 backups (gunicorn, PostgreSQL metadata)

Produced by `bench/load_catalog.py`; the section between the markers is rewritten on every run. Target (issue 15):
p95 < 100 ms for every list and the dashboard. `/healthz` answers without the database: the server's own floor."""
V1 = "/v1/backup-recovery"
ENDPOINTS = {
    "API backups list": f"{V1}/database/backups",
    "API targets list": f"{V1}/database/targets/",
    "API jobs list": "/v1/jobs",
    "API alerts list": f"{V1}/monitoring/alerts",
    "console dashboard": "/",
    "console dashboard charts": "/dashboard/charts.json",
    "/healthz (floor)": "/healthz",
}
PASSWORD = "load-bench-password-1234"

SETUP = """
import json
from django.contrib.auth.models import Group, User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from tests.catalog_fill import fill
counts = fill(targets={targets}, backups={backups}, alerts={alerts})
user = User.objects.create_user("load-viewer", password={password!r})
user.groups.add(Group.objects.get_or_create(name="viewer")[0])
s = SessionStore()
s[SESSION_KEY] = str(user.pk)
s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
s[HASH_SESSION_KEY] = user.get_session_auth_hash()
s.create()
print(json.dumps({{**counts, "session": s.session_key}}))
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}); see its log")
        try:
            requests.get(url + "/healthz", timeout=2)
            return
        except requests.RequestException:  # refused, or accepted by a worker still booting
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer in time")


def run_round_robin(base: str, auth: dict, cookies: dict, per_endpoint: int, clients: int) -> dict[str, list[float]]:
    """`clients` threads, each with its own connection, each asking every endpoint in turn; latencies in ms."""
    times: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    lock = threading.Lock()
    errors: list[str] = []

    def client(offset: int) -> None:
        session = requests.Session()
        names = list(ENDPOINTS)
        for i in range(per_endpoint // clients):
            for k in range(len(names)):
                name = names[(i + k + offset) % len(names)]
                url = ENDPOINTS[name]
                started = time.perf_counter()
                r = session.get(base + url, headers=auth if url.startswith("/v1") else {},
                                cookies=cookies if not url.startswith(("/v1", "/healthz")) else {}, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                if r.status_code != 200 or (url == "/" and "load-0099" not in r.text and "load-00" not in r.text):
                    errors.append(f"{url}: {r.status_code} {r.text[:200]}")
                with lock:
                    times[name].append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} bad answers, first: {errors[0]}")
    return times


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes under these roots (gunicorn, postgres)."""
    total = 0.0
    for root in roots:
        try:
            procs = [psutil.Process(root)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def cpu_per_request(base: str, auth: dict, cookies: dict, roots: list[int], n: int) -> dict[str, float]:
    """Per endpoint: CPU ms that the server and the database spend on one request, from n in a row. Unlike the
    latency, it hardly depends on what else runs on the machine: on an idle one it bounds the latency."""
    session = requests.Session()
    out = {}
    for name, url in ENDPOINTS.items():
        before = tree_cpu(roots)
        for _ in range(n):
            r = session.get(base + url, headers=auth if url.startswith("/v1") else {},
                            cookies=cookies if not url.startswith(("/v1", "/healthz")) else {}, timeout=30)
            assert r.status_code == 200, (url, r.status_code)
        out[name] = (tree_cpu(roots) - before) * 1000 / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--backups", type=int, default=10000)
    ap.add_argument("--alerts", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint and pass")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients of the second pass")
    ap.add_argument("--workers", type=int, default=0, help="gunicorn workers (default: its config, 2 x CPUs + 1)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="load-catalog-"))
    work.chmod(0o755)
    cluster = gunicorn = None
    try:
        cluster = open_cluster(work / "pg", reuse=False, label="metadata",
                               conf={"shared_buffers": "128MB", "fsync": "off"})
        create_database(cluster.conn(), "loadmeta")
        c = cluster.conn("loadmeta")
        env = {**os.environ, "DATABASE_URL": f"postgres://{c.user}@{c.host}:{c.port}/{c.dbname}",
               "DEBUG": "false", "SECRET_KEY": "load-bench-secret-key-" + "x" * 40,
               "BACKUP_ENCRYPTION_KEYS": "k1:6VOxLVZbc7Wj9EPOVaD1pjYRA8JUiMFQO4v7szXPoio=",
               "ALLOWED_HOSTS": "127.0.0.1", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
               "STATIC_ROOT": str(work / "static"), "LOG_LEVEL": "WARNING", "Q_SYNC": "false",
               # Connections kept for the whole run: a PostgreSQL backend that closes (at CONN_MAX_AGE, 60 s by
               # default) takes its CPU time with it, and pass 3 would count too little.
               "DATABASE_CONN_MAX_AGE": "3600"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        manage = [sys.executable, "manage.py"]
        log("migrate, collectstatic")
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        log(f"fill: {args.targets} targets, {args.backups} backups, {args.alerts} alerts")
        started = time.monotonic()
        out = subprocess.run([*manage, "shell", "-c", SETUP.format(
            targets=args.targets, backups=args.backups, alerts=args.alerts, password=PASSWORD)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
        made = json.loads(out.strip().splitlines()[-1])
        log(f"filled in {time.monotonic() - started:.1f} s: {made}")
        with __import__("psycopg").connect(**c.kwargs(), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

        port = free_port()
        genv = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
        if args.workers:
            genv["WEB_CONCURRENCY"] = str(args.workers)
        gunicorn = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "backupsite/gunicorn.conf.py"],
                                    cwd=ROOT, env=genv, stdout=subprocess.DEVNULL,
                                    stderr=open(work / "gunicorn.log", "w"))
        base = f"http://127.0.0.1:{port}"
        wait_http(base, gunicorn)
        token = requests.post(base + "/v1/auth/token/", json={"username": "load-viewer", "password": PASSWORD},
                              timeout=30).json()["access"]
        auth = {"Authorization": f"Bearer {token}"}
        cookies = {"sessionid": made["session"]}
        static = requests.get(base + "/static/admin/css/base.css", timeout=10)
        static_ok = static.status_code == 200 and len(static.content) > 1000
        log(f"whitenoise static file: {static.status_code}, {len(static.content)} bytes")
        run_round_robin(base, auth, cookies, per_endpoint=12, clients=1)  # warm every worker's caches
        load_before = os.getloadavg()
        log(f"pass 1: one client, {args.requests} requests per endpoint")
        one = run_round_robin(base, auth, cookies, args.requests, 1)
        log(f"pass 2: {args.clients} clients")
        many = run_round_robin(base, auth, cookies, args.requests, args.clients)
        log("pass 3: CPU time per request")
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        cpu = cpu_per_request(base, auth, cookies, [gunicorn.pid, postmaster], max(20, args.requests // 4))
        load_after = os.getloadavg()
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.terminate()
            try:
                gunicorn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
                gunicorn.wait()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)

    workers = args.workers or (2 * (os.cpu_count() or 1) + 1)
    lines = [
        f"### Results {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"- Command: `.venv/bin/python bench/load_catalog.py --targets {args.targets} --backups {args.backups} "
        f"--alerts {args.alerts} --requests {args.requests} --clients {args.clients}`",
        f"- Catalog: {made['targets']} targets, {made['backups']} backups (each with a job, an artifact, a replica), "
        f"{made['alerts']} alerts, {made['jobs']} jobs; PostgreSQL 15 metadata on this machine, "
        f"database size {db_bytes / (1 << 20):.0f} MiB",
        f"- Server: gunicorn, {workers} sync workers, DEBUG off; static files by whitenoise "
        f"({'served' if static_ok else 'NOT served'})",
        f"- Machine: {os.cpu_count()} CPUs shared with other work; load average "
        f"{' / '.join(f'{x:.2f}' for x in load_before)} before, {' / '.join(f'{x:.2f}' for x in load_after)} after",
        "",
        f"| endpoint | 1 client p50 ms | p95 ms | max ms | {args.clients} clients p50 ms | p95 ms | max ms "
        "| CPU ms / request (gunicorn + PostgreSQL) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ENDPOINTS:
        a, b = one[name], many[name]
        lines.append(f"| {name} | {statistics.median(a):.1f} | {percentile(a, 95):.1f} | {max(a):.1f} | "
                     f"{statistics.median(b):.1f} | {percentile(b, 95):.1f} | {max(b):.1f} | {cpu[name]:.1f} |")
    worst = max(percentile(one[n], 95) for n in ENDPOINTS)
    lines += ["", f"Worst single-client p95: {worst:.1f} ms ({'meets' if worst < 100 else 'MISSES'} the 100 ms target).",
              ""]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section(section, MARK_START, MARK_END, INTRO)
        log("docs/BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
