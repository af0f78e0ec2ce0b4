#!/usr/bin/env python
"""Logical backup benchmark: `pg_dump -Fc` vs `pg_dump -Fc -Z0 | zstd -3 -T2` vs `manage.py db_backup`.

For each size (MB) a throwaway PostgreSQL cluster is created, filled with
`pgbench -i -s N -q` (N ~ size/15) or, with --dataset mixed, pgbench at 30 % of the
size plus a `documents` table (text, jsonb, 15 % of rows with a random bytea
attachment) up to the size; checkpointed and warmed up with one untimed dump; then,
in the same run and against the same database:

  (a) pg_dump -Fc > file                        (default gzip compression)
  (b) pg_dump -Fc -Z0 | zstd -3 -T2 > file      (two processes joined by a pipe, no shell)
  (c) manage.py db_backup NAME                  (zstd-3 + AES-256-GCM + SHA-256, local storage,
                                                 fresh sqlite metadata db, generated key)

Measured per method: wall time, output size, client CPU time, and peak RSS. Peak
RSS is each process's own high-water mark (VmHWM in /proc/PID/status, sampled
every 50 ms with psutil over the whole process tree), so for (c) "python" is the
manage.py process alone, never pg_dump (listed separately).

Optional extra methods: (d) `db_backup --skip-checks` (--skip-checks-variant); (e) db_backup's
data path (pg_dump -Z0 -> apps.pipeline Encoder -> file + fsync) in this process without Django,
and (f) the same with the exact row counts beside it (--ablation). They split (c)'s time into
process start-up, row counts and the pipeline itself.

--baseline-tree DIR adds (g): the same db_backup command from another source tree
(an older commit, e.g. `git archive BASE | tar -x -C DIR`), for before/after in one run.
--cluster-dir DIR keeps the generated clusters there and reuses them next time.
manage.py runs with a private bytecode cache (as an installed application would) and
`manage.py help` start-up is timed with and without one.

Results go to stdout as markdown and replace the results section of
docs/BENCHMARKS.md (unless --no-docs). Everything is removed afterwards unless --keep.

    .venv/bin/python bench/logical_backup.py [--sizes 100,1000] [--repeat 1] [--keep] [--analyze]
                                             [--profile] [--skip-checks-variant] [--ablation] [--no-docs]
                                             [--dataset pgbench|mixed] [--methods b,c] [--baseline-tree DIR]
                                             [--cluster-dir DIR]
"""
import argparse
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DBNAME, DOCS, MB, ROOT, Reaped, cluster_base, TreeMonitor, log, machine_info, make_database, mark_complete, mb, open_cluster,
    reap, write_section,
)

from apps.databases.clusters import LocalCluster, server_bin_dir  # noqa: E402
from apps.pipeline.keys import generate_spec  # noqa: E402

MARK_START = "<!-- bench/logical_backup.py results: start -->"
MARK_END = "<!-- bench/logical_backup.py results: end -->"
TARGET = "bench"

WALL_RATIO_TARGET = 1.10
JOB_RATIO_TARGET = 1.05  # the backup inside the worker (Backup.started_at -> finished_at)
HELP_TARGET_S = 0.5  # `manage.py help` start-up
RSS_TARGET_BYTES = 150_000_000  # "< 150 MB", read strictly as decimal MB
RSS_STABILITY = 0.10

METHODS = {
    "a": "pg_dump -Fc (gzip)",
    "b": "pg_dump -Fc -Z0 \\| zstd -3 -T2",
    "c": "manage.py db_backup",
}
EXTRA_METHODS = {
    # Same code as (c); only Django's system checks (run before every management command) are skipped.
    "d": "manage.py db_backup --skip-checks",
}
# (g), with --baseline-tree DIR: the same command run from another source tree (e.g. `git archive BASE | tar -x`),
# to compare before and after side by side in one run.
BASELINE_TREE: Path | None = None

ABLATION_METHODS = {
    # db_backup's data path without Django: pg_dump -Fc -Z0 read in 1 MiB chunks -> apps.pipeline Encoder
    # (zstd-3, AES-256-GCM, both SHA-256) -> file + fsync, in this process.
    "e": "pipeline only, in-process (no Django)",
    "f": "(e) + exact row counts beside it",
}


@dataclass
class Run:
    method: str
    size_mb: int
    repeat: int
    wall: float
    out_bytes: int
    cpu: float
    rss: dict[str, int]  # label -> peak bytes
    load_before: float
    server_cpu: float = 0.0  # CPU seconds of the PostgreSQL server processes during the run
    fsync: float | None = None  # seconds to fsync the output afterwards (not in wall)
    job_wall: float | None = None  # (c) only: the backup's own started_at..finished_at
    extra: dict = field(default_factory=dict)


# --- the methods -------------------------------------------------------------------------------------


def _fsync_time(path: Path) -> float:
    t = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def run_pg_dump_gzip(cluster: LocalCluster, out: Path, size_mb: int, rep: int) -> Run:
    env = cluster.conn(DBNAME).env("bench-a")
    load = os.getloadavg()[0]
    with open(out, "wb") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(["pg_dump", "--no-password", "-Fc"], stdin=subprocess.DEVNULL, stdout=fh, env=env)
        mon = TreeMonitor({p.pid: "pg_dump"})
        mon.start()
        r = reap(p)
        wall = time.perf_counter() - t0
        mon.stop()
    if r.returncode:
        raise RuntimeError(f"pg_dump failed ({r.returncode})")
    return Run("a", size_mb, rep, wall, out.stat().st_size, r.cpu, {"pg_dump": mon.by_label().get("pg_dump", 0)},
               load, fsync=_fsync_time(out))


def run_pg_dump_zstd(cluster: LocalCluster, out: Path, size_mb: int, rep: int) -> Run:
    env = cluster.conn(DBNAME).env("bench-b")
    load = os.getloadavg()[0]
    with open(out, "wb") as fh:
        t0 = time.perf_counter()
        dump = subprocess.Popen(["pg_dump", "--no-password", "-Fc", "-Z0"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, env=env)
        zstd = subprocess.Popen(["zstd", "-3", "-T2", "-q", "-c"], stdin=dump.stdout, stdout=fh)
        dump.stdout.close()  # zstd holds the only read end: pg_dump sees EPIPE if zstd dies
        mon = TreeMonitor({dump.pid: "pg_dump", zstd.pid: "zstd"})
        mon.start()
        rd, rz = reap(dump), reap(zstd)
        wall = time.perf_counter() - t0
        mon.stop()
    if rd.returncode or rz.returncode:
        raise RuntimeError(f"pg_dump | zstd failed ({rd.returncode}, {rz.returncode})")
    seen = mon.by_label()
    return Run("b", size_mb, rep, wall, out.stat().st_size, rd.cpu + rz.cpu,
               {"pg_dump": seen.get("pg_dump", 0), "zstd": seen.get("zstd", 0)},
               load, fsync=_fsync_time(out))


def _count_rows(cluster: LocalCluster) -> None:
    """What LogicalDump does beside the dump: count(*) of every user table in one repeatable-read snapshot."""
    with psycopg.connect(**cluster.conn(DBNAME).kwargs("bench-counts")) as c:
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for schema, table in c.execute("SELECT schemaname, relname FROM pg_stat_user_tables").fetchall():
            c.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()


def run_in_process(cluster: LocalCluster, out: Path, size_mb: int, rep: int, method: str, key_spec: str) -> Run:
    from apps.pipeline.artifact import Encoder
    from apps.pipeline.keys import Keyring

    env = cluster.conn(DBNAME).env(f"bench-{method}")
    load = os.getloadavg()[0]
    cpu0 = time.thread_time()
    t0 = time.perf_counter()
    counter = threading.Thread(target=_count_rows, args=(cluster,), daemon=True) if method == "f" else None
    if counter:
        counter.start()
    p = subprocess.Popen(["pg_dump", "--no-password", "-Fc", "-Z0"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, env=env)
    mon = TreeMonitor({p.pid: "pg_dump"})
    mon.start()
    encoder = Encoder(compression_name="zstd", keyring=Keyring.parse(key_spec))

    def chunks():
        while chunk := p.stdout.read(MB):  # as LogicalDump._run_pg_dump
            yield chunk

    with open(out, "xb") as fh:  # as LocalBackend.put_stream
        for piece in encoder.encode(chunks()):
            fh.write(piece)
        fh.flush()
        os.fsync(fh.fileno())
    p.stdout.close()
    r = reap(p)
    if counter:
        counter.join()
    wall = time.perf_counter() - t0
    mon.stop()
    if r.returncode:
        raise RuntimeError(f"pg_dump failed ({r.returncode})")
    return Run(method, size_mb, rep, wall, out.stat().st_size, r.cpu + time.thread_time() - cpu0,
               {"pg_dump": mon.by_label().get("pg_dump", 0)}, load)


class App:
    """A fresh metadata db + backup root for manage.py, cloned from one migrated template."""

    def __init__(self, work: Path):
        self.work = work
        self.key_spec = generate_spec("k1")
        self.template = work / "meta-template.sqlite3"
        self.baseline_template = work / "meta-template-baseline.sqlite3"
        self.n = 0
        self.startup: Reaped | None = None
        self.startup_wall = 0.0
        self.startup_rss = 0
        self.help_walls: dict[str, list[float]] = {}

    def env(self, db: Path, root: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(DATABASE_URL=f"sqlite:///{db}", BACKUP_LOCAL_ROOT=str(root), BACKUP_ENCRYPTION_KEYS=self.key_spec,
                   DEBUG="1", PYTHONUNBUFFERED="1")
        # As an installed application runs: with compiled bytecode. (This machine sets PYTHONDONTWRITEBYTECODE,
        # which would make every manage.py compile the project's modules again; a private cache avoids that.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        return env

    def measure_help(self, runs: int = 7) -> None:
        """`manage.py help` wall time, with the bytecode cache (as installed) and without any (compiling)."""
        env = self.env(self.template, self.work / "backups-template")
        nocache = dict(env, PYTHONDONTWRITEBYTECODE="1")
        nocache.pop("PYTHONPYCACHEPREFIX")
        for label, e in (("bytecode cached", env), ("no bytecode cache", nocache)):
            walls = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, str(ROOT / "manage.py"), "help"], cwd=ROOT, env=e, check=True,
                               stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - t0)
            self.help_walls[label] = walls

    def manage(self, env: dict, *args: str, prefix: list[str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.perf_counter()
        p = subprocess.Popen([*(prefix or [sys.executable]), str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate()
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({p.returncode}):\n{out}\n{err}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err), wall

    def prepare_template(self, cluster: LocalCluster) -> None:
        root = self.work / "backups-template"
        env = self.env(self.template, root)
        self.manage(env, "migrate", "--noinput")
        if BASELINE_TREE is not None:
            # The baseline tree gets a metadata db migrated by its own code: its schema may be older.
            benv = dict(self.env(self.baseline_template, root), PYTHONPYCACHEPREFIX=str(self.work / "pycache-baseline"))
            dsn = f"postgresql://{cluster.user}:bench@127.0.0.1:{cluster.port}/{DBNAME}?sslmode=disable"
            for args in (["migrate", "--noinput"], ["target_add", TARGET, "--dsn", dsn]):
                subprocess.run([sys.executable, str(BASELINE_TREE / "manage.py"), *args], cwd=BASELINE_TREE, env=benv,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dsn = f"postgresql://{cluster.user}:bench@127.0.0.1:{cluster.port}/{DBNAME}?sslmode=disable"
        # target_add is a complete Django CLI start-up with no work: its peak RSS is the fixed cost.
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "target_add", TARGET, "--dsn", dsn],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mon = TreeMonitor({p.pid: "python"})
        mon.start()
        self.startup = reap(p)
        self.startup_wall = time.perf_counter() - t0
        mon.stop()
        self.startup_rss = mon.by_label().get("python", 0)
        if self.startup.returncode:
            raise RuntimeError("target_add failed")

    def fresh(self, baseline: bool = False) -> tuple[dict, Path, Path]:
        self.n += 1
        db = self.work / f"meta-{self.n}.sqlite3"
        root = self.work / f"backups-{self.n}"
        shutil.copyfile(self.baseline_template if baseline else self.template, db)
        return self.env(db, root), db, root


def _job_wall(db: Path) -> float | None:
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT started_at, finished_at FROM backups_backup ORDER BY created_at DESC LIMIT 1").fetchone()
    if not row or not row[0] or not row[1]:
        return None
    return (dt.datetime.fromisoformat(str(row[1])) - dt.datetime.fromisoformat(str(row[0]))).total_seconds()


def run_db_backup(app: App, size_mb: int, rep: int, keep: bool, method: str = "c") -> Run:
    import json

    env, db, root = app.fresh(baseline=method == "g")
    load = os.getloadavg()[0]
    extra_args = ["--skip-checks"] if method == "d" else []
    tree = BASELINE_TREE if method == "g" else ROOT
    if method == "g":
        env = dict(env, PYTHONPYCACHEPREFIX=env["PYTHONPYCACHEPREFIX"] + "-baseline")
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, str(tree / "manage.py"), "db_backup", TARGET, *extra_args], cwd=tree, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mon = TreeMonitor({p.pid: "python"})
    mon.start()
    # stdout/stderr are small (one JSON line); read them after exit without risking a full pipe.
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((p.stdout, out_chunks), (p.stderr, err_chunks))]
    for t in readers:
        t.start()
    r = reap(p)
    wall = time.perf_counter() - t0
    mon.stop()
    for t in readers:
        t.join()
    stdout = b"".join(out_chunks).decode()
    if r.returncode:
        raise RuntimeError(f"db_backup failed ({r.returncode}):\n{stdout}\n{b''.join(err_chunks).decode()}")
    result = json.loads(stdout.strip().splitlines()[-1])
    seen = mon.by_label()
    rss = {"python": seen.get("python", 0), "pg_dump": seen.get("pg_dump", 0)}
    run = Run(method, size_mb, rep, wall, int(result["size_bytes"]), r.cpu, rss, load, job_wall=_job_wall(db),
              extra={"size_raw": result.get("size_raw_bytes"),
                     "tree_peak": mon.tree_peak})
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
        db.unlink(missing_ok=True)
    return run


def _postmaster(cluster: LocalCluster) -> psutil.Process:
    return psutil.Process(int((cluster.data / "postmaster.pid").read_text().split()[0]))


def server_cpu(cluster: LocalCluster) -> float:
    """CPU seconds used so far by the server: postmaster, live children, and reaped backends."""
    pm = _postmaster(cluster)
    t = pm.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in pm.children():
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            pass  # exited between listing and reading: its time moves to children_*
    return total


def wait_backends_gone(cluster: LocalCluster, baseline: int, timeout: float = 5.0) -> None:
    """Wait until the run's backends have exited and been reaped (their CPU then counts in children_*)."""
    pm = _postmaster(cluster)
    deadline = time.monotonic() + timeout
    while len(pm.children()) > baseline and time.monotonic() < deadline:
        time.sleep(0.02)


# --- database -------------------------------------------------------------------------------------------


def warm_up(cluster: LocalCluster, raw_path: Path | None) -> float:
    """One untimed uncompressed dump, so every timed method starts with the same warm caches."""
    env = cluster.conn(DBNAME).env("bench-warmup")
    t0 = time.perf_counter()
    with open(raw_path or os.devnull, "wb") as fh:
        subprocess.run(["pg_dump", "--no-password", "-Fc", "-Z0"], env=env, stdout=fh, check=True)
    return time.perf_counter() - t0


# --- analysis: where does db_backup's time go? --------------------------------------------------------


def analyze(cluster: LocalCluster, raw: Path) -> dict:
    """Single-threaded throughput of each stage of our pipeline, on the raw (-Z0) dump held in memory."""
    import hashlib

    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from apps.pipeline.artifact import Encoder
    from apps.pipeline.keys import Keyring

    data = raw.read_bytes()
    chunks = [data[i:i + MB] for i in range(0, len(data), MB)]
    del data
    n = sum(len(c) for c in chunks)
    res: dict = {"raw_bytes": n}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        res[name] = time.perf_counter() - t

    def sha():
        h = hashlib.sha256()
        for c in chunks:
            h.update(c)

    compressed: list[bytes] = []

    def zstd_py():
        obj = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
        for c in chunks:
            compressed.append(obj.compress(c))
        compressed.append(obj.flush())

    def zstd_py_t2():
        obj = zstandard.ZstdCompressor(level=3, write_checksum=True, threads=2).compressobj()
        for c in chunks:
            obj.compress(c)
        obj.flush()

    def aes():
        blob = b"".join(compressed)
        aead = AESGCM(os.urandom(32))
        for i in range(0, len(blob), MB):
            aead.encrypt(os.urandom(12), blob[i:i + MB], b"aad")

    def encoder():
        enc = Encoder(compression_name="zstd", keyring=Keyring.parse(generate_spec("k1")))
        for _ in enc.encode(iter(chunks)):
            pass

    timed("sha256_raw", sha)
    timed("zstd3_python", zstd_py)
    res["zstd_bytes"] = sum(len(c) for c in compressed)
    timed("aes_gcm_1MiB_frames", aes)
    timed("zstd3_python_threads2", zstd_py_t2)
    timed("encoder_total", encoder)
    t = time.perf_counter()
    subprocess.run(["zstd", "-3", "-q", "-c", str(raw)], stdout=subprocess.DEVNULL, check=True)
    res["zstd3_cli_file"] = time.perf_counter() - t
    # The row counts db_backup takes beside the dump: an exact count(*) per table, in one snapshot.
    with psycopg.connect(**cluster.conn(DBNAME).kwargs()) as c:
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        tables = c.execute("SELECT schemaname, relname FROM pg_stat_user_tables").fetchall()
        t = time.perf_counter()
        for s, r in tables:
            c.execute(f'SELECT count(*) FROM "{s}"."{r}"').fetchone()
        res["row_counts"] = time.perf_counter() - t
    return res


def profile(app: App, work: Path, size_mb: int) -> str:
    """One extra (untimed) db_backup under cProfile; returns the top of the tottime listing."""
    import pstats
    from io import StringIO

    env, db, root = app.fresh()
    prof = work / f"db_backup-{size_mb}.prof"
    app.manage(env, "db_backup", TARGET, prefix=[sys.executable, "-m", "cProfile", "-o", str(prof)])
    buf = StringIO()
    pstats.Stats(str(prof), stream=buf).sort_stats("tottime").print_stats(18)
    return buf.getvalue()


# --- reporting -------------------------------------------------------------------------------------------


def med(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def render(info: dict, dbs: dict, runs: list[Run], app: App, started: str, load_start: tuple, load_end: tuple,
           args, extras: dict, methods: dict) -> tuple[str, list[str]]:
    sizes = sorted(dbs)
    lines = [
        f"### Results {started}",
        "",
        f"- Command: `.venv/bin/python bench/logical_backup.py --sizes {args.sizes} --repeat {args.repeat}"
        + (f" --dataset {args.dataset}" if args.dataset != "pgbench" else "")
        + (f" --methods {args.methods}" if args.methods else "")
        + (f" --baseline-tree {args.baseline_tree}" if args.baseline_tree else "")
        + (f" --cluster-dir {args.cluster_dir}" if args.cluster_dir else "")
        + (" --analyze" if args.analyze else "") + (" --profile" if args.profile else "")
        + (" --skip-checks-variant" if args.skip_checks_variant else "") + (" --ablation" if args.ablation else "")
        + "`",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB RAM, Linux {info['kernel']}; "
        f"load average at start {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} (1/5/15 min; other test suites share the machine)",
        f"- PostgreSQL server {', '.join(sorted({d['server_version'] for d in dbs.values()}))}; {info['pg_dump']}; "
        f"{info['zstd_cli']}; Python {info['python']}, python-zstandard {info['python_zstandard']}",
        f"- Code under test: {info['code']} (read when the run started)",
        "- Databases: " + "; ".join(
            f"{s} MB target = pgbench scale {dbs[s]['scale']}, pg_database_size {mb(dbs[s]['db_bytes'])} MiB, "
            f"{dbs[s]['accounts']:,} accounts rows"
            + (f" + documents table {mb(dbs[s]['doc_bytes'])} MiB, {dbs[s]['doc_rows']:,} rows of text and jsonb, "
               f"{dbs[s]['attachments']:,} ({dbs[s]['attachments'] / max(dbs[s]['doc_rows'], 1):.0%}) with a random "
               f"bytea attachment of 2-14 KiB" if dbs[s].get("doc_rows") else "") for s in sizes),
        f"- Each method run {args.repeat}× per size (order rotated between repeats); "
        + ("median shown" if args.repeat > 1 else "single run") + ". Peak RSS = each process's own VmHWM (max over "
        "runs). Client CPU = user+sys of every client process (pg_dump, zstd, python); server CPU = the cluster's "
        "processes (db_backup counts rows from the stream: no count queries unless the stream is unreadable).",
        "",
        "| DB | method | wall s | wall / (b) | output MiB | client CPU s | server CPU s | peak RSS MiB | load 1m |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    verdicts: list[str] = []
    for s in sizes:
        per = {m: [r for r in runs if r.size_mb == s and r.method == m] for m in methods}
        wb = med(per["b"], "wall")
        for m, label in methods.items():
            rs = per[m]
            peak = {}
            for r in rs:
                for k, v in r.rss.items():
                    peak[k] = max(peak.get(k, 0), v)
            rss_txt = ", ".join(f"{k} {mb(v)}" for k, v in peak.items())
            lines.append(
                f"| {mb(dbs[s]['db_bytes'])} MiB | ({m}) {label} | {med(rs, 'wall'):.2f} | {med(rs, 'wall') / wb:.2f} | "
                f"{mb(med(rs, 'out_bytes'))} | {med(rs, 'cpu'):.2f} | {med(rs, 'server_cpu'):.2f} | {rss_txt} | "
                f"{statistics.median(r.load_before for r in rs):.2f} |")
    lines.append("")
    lines.append("- Details per run (wall s / load 1m): " + "; ".join(
        f"{r.size_mb} MB ({r.method})#{r.repeat} {r.wall:.2f} / {r.load_before:.1f}" for r in runs) + ".")
    c_runs = [r for r in runs if r.method in ("c", "d", "g")]
    lines.append("- db_backup inside the job (Backup.started_at → finished_at, i.e. without Django start-up, system "
                 "checks and the final catalog writes): " + "; ".join(
                     f"{r.size_mb} MB ({r.method})#{r.repeat} {r.job_wall:.2f} s" for r in c_runs if r.job_wall is not None)
                 + ".")
    fs = [r for r in runs if r.fsync is not None]
    lines.append("- fsync of the (a)/(b) output after the timed run (not in their wall time; db_backup fsyncs "
                 "inside its own): " + "; ".join(f"{r.size_mb} MB {r.method} {r.fsync:.2f} s" for r in fs) + ".")
    if app.startup:
        lines.append(f"- Django CLI fixed cost (`manage.py target_add`): {app.startup_wall:.2f} s wall, "
                     f"peak RSS {mb(app.startup_rss)} MiB.")
    if app and app.help_walls:
        lines.append("- `manage.py help` start-up, median of " + "; ".join(
            f"{len(w)} runs {label}: **{statistics.median(w):.2f} s** (min {min(w):.2f})"
            for label, w in app.help_walls.items()) + ".")
    lines.append("")

    # Targets.
    ok_all = True
    lines.append("**Targets**")
    lines.append("")
    for s in sizes:
        wb = med([r for r in runs if r.size_mb == s and r.method == "b"], "wall")
        wc = med([r for r in runs if r.size_mb == s and r.method == "c"], "wall")
        ratio = wc / wb
        ok = ratio <= WALL_RATIO_TARGET
        ok_all &= ok
        v = f"{s} MB: wall(c)/wall(b) = {wc:.2f}/{wb:.2f} = **{ratio:.2f}** (target ≤ {WALL_RATIO_TARGET:.2f}) — {'met' if ok else 'MISSED'}"
        lines.append(f"- {v}")
        verdicts.append(v)
        jobs_ = [r.job_wall for r in runs if r.size_mb == s and r.method == "c" and r.job_wall is not None]
        if jobs_:
            jr = statistics.median(jobs_) / wb
            ok = jr <= JOB_RATIO_TARGET
            ok_all &= ok
            v = (f"{s} MB: inside the job (worker) {statistics.median(jobs_):.2f}/{wb:.2f} = **{jr:.2f}** "
                 f"(target ≤ {JOB_RATIO_TARGET:.2f}) — {'met' if ok else 'MISSED'}")
            lines.append(f"- {v}")
            verdicts.append(v)
    py = {s: max(r.rss["python"] for r in runs if r.size_mb == s and r.method == "c") for s in sizes}
    for s in sizes:
        ok = py[s] < RSS_TARGET_BYTES
        ok_all &= ok
        v = f"{s} MB: db_backup python peak RSS {mb(py[s])} MiB (target < {RSS_TARGET_BYTES / MB:.0f} MiB = 150 MB) — {'met' if ok else 'MISSED'}"
        lines.append(f"- {v}")
        verdicts.append(v)
    if len(sizes) > 1:
        lo, hi = py[sizes[0]], py[sizes[-1]]
        change = (hi - lo) / lo
        ok = abs(change) <= RSS_STABILITY
        ok_all &= ok
        v = (f"python peak RSS {sizes[0]} MB → {sizes[-1]} MB: {mb(lo)} → {mb(hi)} MiB ({change:+.1%}, "
             f"target within ±{RSS_STABILITY:.0%}) — {'met' if ok else 'MISSED'}")
        lines.append(f"- {v}")
        verdicts.append(v)
    if app and app.help_walls.get("bytecode cached"):
        hw = statistics.median(app.help_walls["bytecode cached"])
        ok = hw <= HELP_TARGET_S
        ok_all &= ok
        v = f"`manage.py help` start-up {hw:.2f} s (bytecode cached; target ≤ {HELP_TARGET_S:.2f} s) — {'met' if ok else 'MISSED'}"
        lines.append(f"- {v}")
        verdicts.append(v)
    lines.append(f"- Overall: {'all targets met' if ok_all else 'NOT all targets met'}")
    verdicts.append(f"Overall: {'all targets met' if ok_all else 'NOT all targets met'}")

    if extras.get("analyze"):
        lines += ["", "**Stage throughput** (`--analyze`: one thread, in memory, on the warm-up's raw -Z0 dump)", "",
                  "| DB | raw MiB | SHA-256 | zstd-3 (python) | zstd-3 (python, threads=2) | AES-GCM 1 MiB frames "
                  "| Encoder total | zstd -3 CLI (file) | row counts (SQL) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s, a in sorted(extras["analyze"].items()):
            raw_mb = a["raw_bytes"] / MB

            def cell(k):
                return f"{a[k]:.2f} s ({raw_mb / a[k]:.0f} MiB/s)" if a[k] else "-"
            lines.append(f"| {s} MB | {raw_mb:.0f} | {cell('sha256_raw')} | {cell('zstd3_python')} | "
                         f"{cell('zstd3_python_threads2')} | {a['aes_gcm_1MiB_frames']:.2f} s | {cell('encoder_total')} | "
                         f"{cell('zstd3_cli_file')} | {a['row_counts']:.2f} s |")
    if extras.get("profile"):
        for s, text in sorted(extras["profile"].items()):
            lines += ["", f"<details><summary>cProfile of db_backup, {s} MB (top 18 by own time)</summary>", "",
                      "```", text.strip(), "```", "", "</details>"]
    return "\n".join(lines) + "\n", verdicts


INTRO = """## Logical backup: `db_backup` vs `pg_dump`

Produced by `bench/logical_backup.py` (see bench/README.md). The section between the
markers below is rewritten on every run; the analysis after it is written by hand.
"""


def write_docs(section: str) -> None:
    write_section(section, MARK_START, MARK_END, INTRO)



# --- main --------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="database sizes in MB, comma separated (default 100,1000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each method per size (median reported)")
    ap.add_argument("--keep", action="store_true", help="keep clusters, dumps and metadata dbs (paths printed)")
    ap.add_argument("--analyze", action="store_true", help="also time each pipeline stage alone and the row counts")
    ap.add_argument("--profile", action="store_true", help="also run db_backup once under cProfile (untimed)")
    ap.add_argument("--skip-checks-variant", action="store_true",
                    help="also run (d): db_backup --skip-checks, to show the cost of Django's system checks")
    ap.add_argument("--ablation", action="store_true",
                    help="also run (e) db_backup's pipeline in-process without Django and (f) the same plus row counts")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/BENCHMARKS.md")
    ap.add_argument("--methods", default="",
                    help="comma-separated subset of methods to run, e.g. b,c (b and c are always run); "
                         "(a), gzip, takes minutes on incompressible data")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="also run (g): manage.py db_backup from this source tree (an older commit), side by side")
    ap.add_argument("--dataset", choices=("pgbench", "mixed"), default="pgbench",
                    help="pgbench only, or mixed: pgbench plus a documents table of text, jsonb and 15%% random "
                         "bytea (default pgbench)")
    ap.add_argument("--cluster-dir", type=Path, default=None,
                    help="keep the generated clusters here and reuse them on the next run (never removed)")
    args = ap.parse_args()
    methods = dict(METHODS, **(EXTRA_METHODS if args.skip_checks_variant else {}),
                   **(ABLATION_METHODS if args.ablation else {}))
    if args.baseline_tree:
        global BASELINE_TREE
        BASELINE_TREE = args.baseline_tree.resolve()
        commit = (BASELINE_TREE / ".commit").read_text().strip() if (BASELINE_TREE / ".commit").exists() else "?"
        methods["g"] = f"manage.py db_backup, baseline tree (commit {commit})"
    if args.methods:
        keep = set(args.methods.split(",")) | {"b", "c", "g"}
        methods = {k: v for k, v in methods.items() if k in keep}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for tool in ("pg_dump", "pgbench", "zstd"):
        if not shutil.which(tool):
            ap.error(f"{tool} is not on PATH")
    server_bin_dir()

    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="bench-logical-"))
    work.chmod(0o755)  # the postgres user must reach the cluster directories inside
    log(f"work directory {work}")
    runs: list[Run] = []
    dbs: dict[int, dict] = {}
    extras: dict = {"analyze": {}, "profile": {}}
    app = None
    clusters: list[LocalCluster] = []
    try:
        for size in sizes:
            base = cluster_base(args.cluster_dir, work, f"cluster-{args.dataset}-{size}")
            cluster = open_cluster(base, reuse=bool(args.cluster_dir), label=f"{size} MB")
            if not args.cluster_dir:
                clusters.append(cluster)
            dbs[size] = make_database(cluster, size, args.dataset)
            if args.cluster_dir:
                mark_complete(cluster)
            d = dbs[size]
            log(f"{size} MB: pgbench scale {d['scale']} in {d['init_s']:.1f} s -> {mb(d['db_bytes'])} MiB")
            raw = work / f"raw-{size}.pgc" if args.analyze else None
            log(f"{size} MB: warm-up dump {warm_up(cluster, raw):.2f} s")
            app = App(work / f"app-{size}")
            app.work.mkdir()
            app.prepare_template(cluster)
            app.measure_help()
            order = list(methods)
            pm_children = len(_postmaster(cluster).children())
            for rep in range(1, args.repeat + 1):
                for m in order:
                    out = work / f"out-{size}-{m}-{rep}"
                    cpu0 = server_cpu(cluster)
                    if m == "a":
                        r = run_pg_dump_gzip(cluster, out, size, rep)
                    elif m == "b":
                        r = run_pg_dump_zstd(cluster, out, size, rep)
                    elif m in ABLATION_METHODS:
                        r = run_in_process(cluster, out, size, rep, m, app.key_spec)
                    else:
                        r = run_db_backup(app, size, rep, args.keep, m)
                    wait_backends_gone(cluster, pm_children)
                    r.server_cpu = server_cpu(cluster) - cpu0
                    if not args.keep:
                        out.unlink(missing_ok=True)
                    runs.append(r)
                    log(f"{size} MB ({m}) #{rep}: {r.wall:.2f} s, {mb(r.out_bytes)} MiB, cpu {r.cpu:.2f}+{r.server_cpu:.2f} s, "
                        f"rss {', '.join(f'{k} {mb(v)}' for k, v in r.rss.items())} MiB, load {r.load_before:.2f}"
                        + (f", job {r.job_wall:.2f} s" if r.job_wall else ""))
                order = order[1:] + order[:1]
            if args.profile:
                log(f"{size} MB: cProfile run")
                extras["profile"][size] = profile(app, app.work, size)
            if args.analyze:
                log(f"{size} MB: stage analysis")
                extras["analyze"][size] = analyze(cluster, raw)
                if not args.keep:
                    raw.unlink(missing_ok=True)
            if args.cluster_dir:
                cluster.stop()
            elif not args.keep:
                cluster.destroy()
            if not args.keep:
                shutil.rmtree(app.work, ignore_errors=True)
    finally:
        if not args.keep:
            for cluster in clusters:
                try:
                    cluster.destroy()
                except Exception as exc:  # keep cleaning up the rest
                    log(f"could not destroy {cluster.base}: {exc}")
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work} (clusters still running: {', '.join(str(c.port) for c in clusters)})")
    section, verdicts = render(info, dbs, runs, app, started, load_start, os.getloadavg(), args, extras, methods)
    print(section)
    if not args.no_docs:
        write_docs(section)
        log(f"results written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
