"""What the benchmarks share: datasets, throwaway clusters, process measurement, machine facts, docs sections.

Used by bench/logical_backup.py and bench/physical.py.
"""
import datetime as dt
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps.databases.clusters import LocalCluster, free_port  # noqa: E402

DOCS = ROOT / "docs" / "BENCHMARKS.md"
DBNAME = "bench"
MB = 1 << 20
POLL = 0.05


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --- process measurement ---------------------------------------------------------------------------


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of one process so far (bytes), 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMonitor(threading.Thread):
    """Samples every process under the given roots every 50 ms: per-process VmHWM and the tree's RSS sum."""

    def __init__(self, roots: dict[int, str]):
        super().__init__(daemon=True)
        self.roots = roots  # pid -> label
        self.peak: dict[int, tuple[str, int]] = {}  # pid -> (label, peak bytes)
        self.tree_peak = 0
        self._stop_event = threading.Event()

    def _sample(self) -> None:
        procs = []
        for pid, label in self.roots.items():
            try:
                p = psutil.Process(pid)
                procs.append((p, label))
                procs += [(c, None) for c in p.children(recursive=True)]
            except psutil.Error:
                continue
        total = 0
        for p, label in procs:
            try:
                rss = p.memory_info().rss
                label = label or p.name()
            except psutil.Error:
                continue
            total += rss
            peak = max(rss, _vm_hwm(p.pid), self.peak.get(p.pid, ("", 0))[1])
            self.peak[p.pid] = (label, peak)
        self.tree_peak = max(self.tree_peak, total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(POLL)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def by_label(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label, peak in self.peak.values():
            out[label] = max(out.get(label, 0), peak)
        return out


@dataclass
class Reaped:
    returncode: int
    cpu: float  # user + system seconds of the child and its reaped descendants


def reap(proc: subprocess.Popen) -> Reaped:
    """Wait for one child with wait4, so its own CPU time (not the sum over all our children) is known.

    wait4's ru_maxrss is not used: Linux carries the pre-exec high-water mark (a copy of
    this Python process, ~50 MB) across exec, so it overstates small children.
    """
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Reaped(proc.returncode, ru.ru_utime + ru.ru_stime)


# --- clusters ---------------------------------------------------------------------------------------


def cluster_base(keep_dir: Path | None, work: Path, name: str) -> Path:
    """Where a benchmark's cluster lives: in keep_dir (--cluster-dir, kept and reused) or in the run's work dir."""
    if keep_dir is None:
        return work / name
    keep_dir.mkdir(parents=True, exist_ok=True)
    keep_dir.resolve().chmod(0o755)  # the postgres user must reach the cluster inside
    return keep_dir.resolve() / name


def open_cluster(base: Path, *, reuse: bool, label: str, conf: dict[str, str] | None = None) -> LocalCluster:
    """Start a throwaway cluster under `base`: a new one, or (reuse) the one a previous run left complete there.

    `conf` is appended to postgresql.auto.conf every time (later lines win), so a reused cluster gets it too.
    """
    cluster = LocalCluster(base=base, port=free_port())
    if reuse and cluster.data.exists() and not (base / "complete").exists():
        log(f"{label}: {base} was left incomplete; building it again")
        cluster.destroy()
    if reuse and cluster.data.exists():
        if cluster.is_running():
            cluster.stop()
        cluster.set_port(cluster.port)
        log(f"{label}: reusing {base}, start on port {cluster.port}")
    else:
        log(f"{label}: initdb + start on port {cluster.port}")
        cluster.initdb()
    if conf:
        cluster.append_conf(conf)
    cluster.start()
    return cluster


def mark_complete(cluster: LocalCluster) -> None:
    """A reusable cluster's database is fully built: the next run may reuse it (see open_cluster)."""
    (cluster.base / "complete").touch()


# --- database -------------------------------------------------------------------------------------------


PGBENCH_SHARE = 0.3  # mixed dataset: share of the target size given to pgbench; the rest is the documents table
ATTACHMENT_SHARE = 0.15  # mixed dataset: rows of the documents table that carry a random (incompressible) bytea


def make_database(cluster: LocalCluster, size_mb: int, dataset: str = "pgbench") -> dict:
    """pgbench only, or (dataset "mixed") pgbench plus a documents table of text, jsonb and random bytea.

    The database is created once: if it is already there (a kept cluster, --cluster-dir), it is reused.
    """
    with psycopg.connect(**cluster.conn().kwargs(), autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone()
        if not exists:
            c.execute(f"CREATE DATABASE {DBNAME}")
    share = PGBENCH_SHARE if dataset == "mixed" else 1.0
    scale = max(1, round(size_mb * share / 15))
    env = cluster.conn(DBNAME).env("bench-init")
    t0 = time.perf_counter()
    if not exists:
        subprocess.run(["pgbench", "-i", "-s", str(scale), "-q"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if dataset == "mixed":
            fill_documents(cluster, size_mb * MB)
    init_s = time.perf_counter() - t0
    with psycopg.connect(**cluster.conn(DBNAME).kwargs(), autocommit=True) as c:
        c.execute("CHECKPOINT")  # no dirty buffers left for the checkpointer to write during the runs
        db_bytes = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        server_version = c.execute("SHOW server_version").fetchone()[0]
        rows = c.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        scale = c.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0]
        docs = c.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()[0]
        doc_rows = doc_bytes = attachments = 0
        if docs:
            doc_rows, attachments = c.execute(
                "SELECT count(*), count(attachment) FROM documents").fetchone()
            doc_bytes = c.execute("SELECT pg_total_relation_size('documents')").fetchone()[0]
    ratio = db_bytes / (size_mb * MB)
    if not 0.75 <= ratio <= 1.33:
        log(f"warning: database is {db_bytes / MB:.0f} MB for a {size_mb} MB target (scale {scale})")
    return {"scale": scale, "db_bytes": db_bytes, "server_version": server_version, "accounts": rows, "init_s": init_s,
            "dataset": "mixed" if docs else "pgbench", "doc_rows": doc_rows, "doc_bytes": doc_bytes,
            "attachments": attachments}


def fill_documents(cluster: LocalCluster, total_bytes: int) -> None:
    """Add `documents` (text, jsonb, 15 % random bytea) until the database reaches total_bytes.

    Text is drawn from a Zipf-like vocabulary of made-up words (compresses about 3:1 like prose);
    jsonb holds typical metadata; attachments are os.urandom, i.e. incompressible. Seeded: every
    run builds the same data.
    """
    import json
    import random

    rnd = random.Random(20261125)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "gri", "sto", "pla", "en", "or",
                 "al", "is", "um", "ther", "con", "pro", "ment", "tion", "ver", "back", "up", "da", "ta"]
    vocab = sorted({"".join(rnd.choice(syllables) for _ in range(rnd.randint(1, 4))) for _ in range(8000)})
    weights = [1 / (i + 1) for i in range(len(vocab))]
    authors = [f"{rnd.choice(vocab).title()} {rnd.choice(vocab).title()}" for _ in range(500)]
    tags = vocab[:300]
    with psycopg.connect(**cluster.conn(DBNAME).kwargs(), autocommit=True) as c:
        c.execute("""CREATE TABLE documents (
            id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL, meta jsonb NOT NULL,
            created_at timestamptz NOT NULL, attachment bytea)""")
        target = total_bytes * 0.98
        next_id = 1
        while c.execute("SELECT pg_database_size(current_database())").fetchone()[0] < target:
            with c.cursor().copy("COPY documents (id, title, body, meta, created_at, attachment) FROM STDIN") as cp:
                for _ in range(20000):
                    words = rnd.choices(vocab, weights, k=rnd.randint(60, 360))
                    sentences = []
                    for i in range(0, len(words), 12):
                        s = " ".join(words[i:i + 12])
                        sentences.append(s[:1].upper() + s[1:] + ".")
                    meta = {"author": rnd.choice(authors), "tags": rnd.sample(tags, rnd.randint(0, 5)),
                            "version": rnd.randint(1, 40), "score": round(rnd.random() * 100, 2),
                            "lang": rnd.choice(["en", "de", "fr", "es"]), "pages": rnd.randint(1, 300),
                            "reviewed": rnd.random() < 0.5,
                            "props": {"source": rnd.choice(["upload", "mail", "scan", "api"]),
                                      "checksum": "%032x" % rnd.getrandbits(128)}}
                    attachment = os.urandom(rnd.randint(2048, 14336)) if rnd.random() < ATTACHMENT_SHARE else None
                    created = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.randint(0, 2 ** 27))
                    cp.write_row((next_id, " ".join(rnd.choices(vocab, weights, k=rnd.randint(3, 9))).title(),
                                  " ".join(sentences), json.dumps(meta), created, attachment))
                    next_id += 1
        c.execute("VACUUM ANALYZE documents")


# --- reporting -------------------------------------------------------------------------------------------


def machine_info() -> dict:
    mem = psutil.virtual_memory().total
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    zstd_v = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
    import zstandard

    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "apps", "backupsite"],
                           capture_output=True, text=True).stdout.splitlines()
    return {
        "code": f"commit {head or '?'}" + (f" + uncommitted changes in {len(dirty)} files under apps/, backupsite/"
                                           if dirty else ""),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": mem / (1 << 30),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pg_dump": subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout.strip(),
        "zstd_cli": zstd_v.replace("*** ", "").replace(" ***", ""),
        "python_zstandard": f"{zstandard.__version__} (libzstd {zstandard.ZSTD_VERSION[0]}.{zstandard.ZSTD_VERSION[1]}.{zstandard.ZSTD_VERSION[2]})",
    }


def mb(n: float) -> str:
    return f"{n / MB:.1f}"


def tool_version(*cmd: str) -> str:
    """The first line a tool prints for its version, or "?" if it cannot run."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "?"
    return out.splitlines()[0] if out else "?"


def write_section(section: str, mark_start: str, mark_end: str, intro: str) -> None:
    """Replace the text between two markers of docs/BENCHMARKS.md with `section` (a run's results).

    Text around the markers (hand-written analysis) is kept. Without the markers yet, `intro` (a heading
    and a paragraph) and the block are appended at the end of the file.
    """
    block = f"{mark_start}\n{section}{mark_end}\n"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if mark_start in text and mark_end in text:
        head, rest = text.split(mark_start, 1)
        _, tail = rest.split(mark_end, 1)
        text = head + block + ("\n" + tail.lstrip("\n") if tail.strip() else "")
    else:
        text = text.rstrip("\n") + "\n\n" + intro.strip("\n") + "\n\n" + block
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)
