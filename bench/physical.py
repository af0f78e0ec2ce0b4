#!/usr/bin/env python
"""Physical backup benchmark: ours vs pgBackRest (and `pg_basebackup | zstd` for the full), one cluster, one run.

For each dataset (pgbench, or mixed: pgbench plus a documents table of text, jsonb and random
bytea, built by bench/common.py as for the logical benchmark) a throwaway PostgreSQL cluster with
archive_mode on is filled to --size MB. Then, for each repeat and each tool in turn (order
rotated between repeats), with the cluster's archive_command pointed at that tool:

  full          pgBackRest `backup --type=full` | ours `db_backup NAME --kind full --method physical`
                | anchor `pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -3 -T2 > file`
  (untimed)     pgbench run updating --change-pct % of the accounts rows
  incremental   pgBackRest `backup --type=incr` | ours `db_backup NAME --kind incremental`
  (untimed)     the same pgbench run again (WAL for the recovery to replay), a marker row, the target
                time T, another marker row, pg_switch_wal and wait until the archiver is idle
  restore       the incremental (so its whole chain) into a new data directory, not started:
                pgBackRest `restore --set=INCR` | ours `db_restore INCR_ID --pgdata DIR`
  PITR          to T, until the cluster is promoted and accepts queries:
                pgBackRest `restore --type=time --target=T --target-action=promote` + `pg_ctl start`
                | ours `pitr NAME --target-time T --pgdata DIR --start`;
                then (untimed) the marker committed before T must be there and the one after T not.

Everything runs as the postgres OS user (pgBackRest requires it; PostgreSQL runs archive_command as
it anyway), ours from a site like the one an operator builds: an environment file
(BACKUPSITE_ENV_FILE), a key file, a SQLite metadata database and local storage, all postgres's,
archiving through the `archive_command` line `manage.py archive_config` prints.

Measured: wall time of each operation (medians of --repeat runs), client CPU (user+sys of the
command and the processes it waited for; not the PostgreSQL server), stored size of each backup,
the incremental's stored size as a share of the full, and the WAL each tool archived per repeat.
Ratios ours / pgBackRest are checked against the targets of issue 8: full <= 0.6, restore and
PITR <= 1.0, incremental <= 10 % of the full.

Results go to stdout as markdown and replace the physical section of docs/BENCHMARKS.md (unless
--no-docs). Run through bench/physical.sh, which installs pgBackRest if it is missing.

    bench/physical.sh [--size 800] [--datasets pgbench,mixed] [--repeat 3] [--skip-ours] [--cluster-dir DIR]
                      [--change-pct 1] [--keep] [--no-docs]
"""
import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DBNAME, ROOT, cluster_base, log, machine_info, make_database, mark_complete, mb, open_cluster, reap, tool_version,
    write_section,
)

from apps.databases.clusters import (  # noqa: E402
    LocalCluster, as_server_user, free_port, give_to_server_user, server_bin_dir, server_user_python,
)
from apps.pipeline.keys import generate_spec  # noqa: E402

MARK_START = "<!-- bench/physical.py results: start -->"
MARK_END = "<!-- bench/physical.py results: end -->"
INTRO = """## Physical backup, incremental, restore, PITR vs pgBackRest

Produced by `bench/physical.sh` (bench/physical.py; see bench/README.md): pgBackRest, our
physical backups and `pg_basebackup | zstd` on the same cluster in one run. The section between
the markers below is rewritten on every run; notes after it are written by hand.
"""
TARGET = "bench"  # our target's name, and pgBackRest's stanza
TOOLS = {"anchor": "pg_basebackup \\| zstd -3 -T2", "pgbackrest": "pgBackRest", "ours": "ours (manage.py)"}
OPS = ("full", "incremental", "restore", "pitr")
OP_LABELS = {"full": "full backup", "incremental": "incremental backup", "restore": "restore (full + incremental)",
             "pitr": "PITR to a ready, promoted cluster"}
# Issue 8's targets: ours / pgBackRest wall time, and the incremental's stored size / the full's.
WALL_TARGETS = {"full": 0.6, "restore": 1.0, "pitr": 1.0}
INCREMENTAL_SHARE_TARGET = 0.10
# The cluster: archive_mode needs a restart, so it is on from the start; archive_command is switched per tool.
CLUSTER_CONF = {"archive_mode": "on", "archive_command": "'/bin/true'"}


@dataclass
class Op:
    dataset: str
    repeat: int
    tool: str
    op: str
    wall: float
    cpu: float
    load_before: float
    stored: int | None = None  # bytes of the backup as stored (backups only)
    extra: dict = field(default_factory=dict)


# --- running things as the postgres user ---------------------------------------------------------------


def give(path: Path, mode: int) -> None:
    give_to_server_user(path)
    path.chmod(mode)


def give_tree(root: Path) -> None:
    """The server user's: `root` and everything under it (what a root process left in a shared directory)."""
    for dirpath, dirs, files in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
            give_to_server_user(Path(name))


def postgres_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    give(path, 0o700)
    return path


@dataclass
class Timed:
    wall: float
    cpu: float
    stdout: str
    stderr: str


def timed(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, what: str = "") -> Timed:
    """Run one command; wall time, and CPU of it and every process it waited for (wait4)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        r = reap(p)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if r.returncode:
        raise RuntimeError(f"{what or cmd[0]} failed ({r.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return Timed(wall, r.cpu, stdout, stderr)


def tree_bytes(path: Path, *, only: str | None = None) -> int:
    """Bytes in the files under `path` (with `only`: whose path contains that component)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        if only and only not in Path(dirpath).parts:
            continue
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def tree_files(path: Path, *, only: str | None = None) -> int:
    return sum(len(files) for dirpath, _, files in os.walk(path) if not only or only in Path(dirpath).parts)


# --- the cluster ----------------------------------------------------------------------------------------


def query(cluster: LocalCluster, q, params=None, dbname: str = DBNAME):
    with psycopg.connect(**cluster.conn(dbname).kwargs("bench-physical"), autocommit=True) as c:
        cur = c.execute(q, params)
        return cur.fetchall() if cur.description else None


def set_archive_command(cluster: LocalCluster, command: str) -> None:
    """Point archiving at one tool: drain what the previous one has to archive, then switch and reload."""
    drain_archive(cluster)
    query(cluster, sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)), dbname="postgres")
    query(cluster, "SELECT pg_reload_conf()", dbname="postgres")
    deadline = time.monotonic() + 30
    while query(cluster, "SHOW archive_command", dbname="postgres")[0][0] != command:
        if time.monotonic() > deadline:
            raise RuntimeError("archive_command was not reloaded")
        time.sleep(0.05)


def drain_archive(cluster: LocalCluster, timeout: float = 600) -> float:
    """Complete the current WAL segment and wait until the archiver has nothing left; seconds waited."""
    t0 = time.perf_counter()
    query(cluster, "SELECT pg_switch_wal()", dbname="postgres")
    failed0 = query(cluster, "SELECT failed_count FROM pg_stat_archiver", dbname="postgres")[0][0]
    while True:
        (ready,), = query(cluster, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
                          dbname="postgres")
        if not ready:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            (failed, last), = query(cluster, "SELECT failed_count, last_failed_wal FROM pg_stat_archiver",
                                    dbname="postgres")
            raise RuntimeError(f"{ready} WAL segments still not archived after {timeout:.0f} s "
                               f"({failed - failed0} failures, last {last}); see {cluster.log}")
        time.sleep(0.05)


def checkpoint(cluster: LocalCluster) -> None:
    query(cluster, "CHECKPOINT", dbname="postgres")


def change_data(cluster: LocalCluster, pct: float) -> dict:
    """A pgbench run (built-in TPC-B-like script) of as many transactions as pct % of the accounts rows."""
    (accounts,), = query(cluster, "SELECT count(*) FROM pgbench_accounts")
    per_client = max(1, round(accounts * pct / 100 / 2))
    env = cluster.conn(DBNAME).env("bench-change")
    t0 = time.perf_counter()
    subprocess.run(["pgbench", "-n", "-c", "2", "-j", "2", "-t", str(per_client)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"transactions": per_client * 2, "accounts": accounts, "seconds": time.perf_counter() - t0}


def recovery_target(cluster: LocalCluster, label: str) -> str:
    """Commit a marker before and after a target time; the time, as '... UTC+00'."""
    query(cluster, "CREATE TABLE IF NOT EXISTS bench_marks (note text PRIMARY KEY, "
                   "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    query(cluster, "INSERT INTO bench_marks (note) VALUES (%s)", (f"{label} before",))
    time.sleep(0.2)
    (target,), = query(cluster, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                "'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(0.2)
    query(cluster, "INSERT INTO bench_marks (note) VALUES (%s)", (f"{label} after",))
    return target


def check_markers(cluster: LocalCluster, port: int, label: str) -> str:
    """'ok' if the cluster recovered from `cluster` has the marker before the target and not the one after."""
    conn = replace(cluster.conn(DBNAME), port=port)
    with psycopg.connect(**conn.kwargs("bench-physical"), autocommit=True) as c:
        found = {r[0] for r in c.execute("SELECT note FROM bench_marks WHERE note LIKE %s", (f"{label} %",))}
    want = {f"{label} before"}
    return "ok" if found == want else f"WRONG: found {sorted(found)}, expected {sorted(want)}"


def wait_promoted(cluster: LocalCluster, port: int, timeout: float = 600) -> None:
    """Until the cluster recovered from `cluster` on `port` accepts a query and is out of recovery."""
    conn = replace(cluster.conn("postgres"), port=port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(**conn.kwargs("bench-physical"), autocommit=True) as c:
                if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the recovered cluster on port {port} was not promoted within {timeout:.0f} s")
        time.sleep(0.05)


def stop_and_remove(pgdata: Path) -> None:
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(pgdata), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
    shutil.rmtree(pgdata, ignore_errors=True)


# --- the tools ----------------------------------------------------------------------------------------------


class Anchor:
    """`pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -3 -T2 > file`: a full backup only."""

    name = "anchor"

    def __init__(self, work: Path, cluster: LocalCluster):
        self.work, self.cluster = work, cluster

    def phase(self, dataset: str, rep: int, pct: float) -> list[Op]:
        out = self.work / f"anchor-{dataset}-{rep}.tar.zst"
        env = self.cluster.conn().env("bench-anchor")
        checkpoint(self.cluster)
        load = os.getloadavg()[0]
        with open(out, "wb") as fh:
            t0 = time.perf_counter()
            base = subprocess.Popen(["pg_basebackup", "--no-password", "-Ft", "-D", "-", "-X", "fetch",
                                     "--checkpoint=fast"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
            zstd = subprocess.Popen(["zstd", "-3", "-T2", "-q", "-c"], stdin=base.stdout, stdout=fh)
            base.stdout.close()  # zstd holds the only read end: pg_basebackup sees EPIPE if zstd dies
            rb, rz = reap(base), reap(zstd)
            wall = time.perf_counter() - t0
        if rb.returncode or rz.returncode:
            raise RuntimeError(f"pg_basebackup | zstd failed ({rb.returncode}, {rz.returncode})")
        size = out.stat().st_size
        out.unlink()
        log(f"{dataset} #{rep} anchor full: {wall:.2f} s, cpu {rb.cpu + rz.cpu:.2f} s, stored {mb(size)} MiB")
        return [Op(dataset, rep, self.name, "full", wall, rb.cpu + rz.cpu, load, stored=size)]


class Tool:
    """What pgBackRest and ours share: the phase (full, change, incremental, target, restore, PITR)."""

    name = ""
    archive_command = ""

    def __init__(self, work: Path, cluster: LocalCluster):
        self.work, self.cluster = work, cluster
        self.restores = postgres_dir(work / f"restores-{self.name}")

    # Each returns (Timed, stored bytes, an id for restore).
    def full(self) -> tuple[Timed, int, str]:
        raise NotImplementedError

    def incremental(self) -> tuple[Timed, int, str]:
        raise NotImplementedError

    def restore(self, backup: str, pgdata: Path) -> Timed:
        raise NotImplementedError

    def pitr(self, backup: str, target: str, pgdata: Path, port: int) -> Timed:
        raise NotImplementedError

    def wal_stored(self) -> tuple[int, int]:
        """(bytes, files) of WAL in this tool's archive."""
        raise NotImplementedError

    def pitr_split(self, t: Timed) -> str | None:
        """Where the PITR's time went, if the tool says."""
        return None

    def phase(self, dataset: str, rep: int, pct: float) -> list[Op]:
        label = f"{self.name}-{dataset}-{rep}-{self.work.parent.name}"  # unique in a reused cluster too
        set_archive_command(self.cluster, self.archive_command)
        wal0 = self.wal_stored()
        ops = []

        def record(op: str, t: Timed, load: float, stored: int | None = None, **extra) -> None:
            ops.append(Op(dataset, rep, self.name, op, t.wall, t.cpu, load, stored=stored, extra=extra))
            log(f"{dataset} #{rep} {self.name} {op}: {t.wall:.2f} s, cpu {t.cpu:.2f} s"
                + (f", stored {mb(stored)} MiB" if stored is not None else "")
                + "".join(f", {k} {v}" for k, v in extra.items()))

        checkpoint(self.cluster)
        load = os.getloadavg()[0]
        t, size, _ = self.full()
        record("full", t, load, size)
        change = change_data(self.cluster, pct)
        # The archiver catches up first (timed apart): the backup alone is measured, not the archiving beside it.
        drained_change = drain_archive(self.cluster)
        checkpoint(self.cluster)
        load = os.getloadavg()[0]
        t, size, incr = self.incremental()
        record("incremental", t, load, size, change=f"{change['transactions']} tx in {change['seconds']:.1f} s",
               drain=round(drained_change, 2))
        change_data(self.cluster, pct)
        target = recovery_target(self.cluster, label)
        drained = drain_archive(self.cluster)
        wal1 = self.wal_stored()
        pgdata = self.restores / f"restore-{rep}"
        load = os.getloadavg()[0]
        t = self.restore(incr, pgdata)
        restored = tree_bytes(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)
        record("restore", t, load, restored=f"{mb(restored)} MiB")
        pgdata = self.restores / f"pitr-{rep}"
        port = free_port()
        load = os.getloadavg()[0]
        try:
            t = self.pitr(incr, target, pgdata, port)
            markers = check_markers(self.cluster, port, label)
        finally:
            stop_and_remove(pgdata)
        split = self.pitr_split(t)
        record("pitr", t, load, markers=markers, **({"split": split} if split else {}))
        ops[-1].extra["wal"] = (wal1[0] - wal0[0], wal1[1] - wal0[1])
        ops[-1].extra["drain"] = drained
        return ops


class PgBackRest(Tool):
    name = "pgbackrest"

    def __init__(self, work: Path, cluster: LocalCluster):
        super().__init__(work, cluster)
        home = postgres_dir(work / "pgbackrest")
        self.repo = postgres_dir(home / "repo")
        self.conf = home / "pgbackrest.conf"
        self.conf.write_text(
            "[global]\n"
            f"repo1-path={self.repo}\n"
            "repo1-retention-full=100\n"  # nothing expires during the run
            "compress-type=zst\n"
            "compress-level=3\n"
            "process-max=2\n"
            "start-fast=y\n"
            f"log-path={postgres_dir(home / 'log')}\n"
            f"lock-path={postgres_dir(home / 'lock')}\n"
            f"spool-path={postgres_dir(home / 'spool')}\n"
            "log-level-console=warn\n"
            "log-level-file=info\n"
            "archive-timeout=300\n"
            f"\n[{TARGET}]\n"
            f"pg1-path={cluster.data}\n"
            f"pg1-port={cluster.port}\n"
            f"pg1-socket-path={cluster.base}\n"
        )
        give(self.conf, 0o600)
        self.archive_command = f"pgbackrest --config={self.conf} --stanza={TARGET} archive-push %p"
        self.run("stanza-create")

    def run(self, *args: str) -> Timed:
        return timed(as_server_user(["pgbackrest", f"--config={self.conf}", f"--stanza={TARGET}", *args]),
                     what=f"pgbackrest {args[-1]}")

    def _last(self) -> tuple[str, int]:
        info = json.loads(self.run("--output=json", "info").stdout)
        label = info[0]["backup"][-1]["label"]
        return label, tree_bytes(self.repo / "backup" / TARGET / label)

    def full(self):
        t = self.run("--type=full", "backup")
        label, size = self._last()
        return t, size, label

    def incremental(self):
        t = self.run("--type=incr", "backup")
        label, size = self._last()
        return t, size, label

    def restore(self, backup, pgdata):
        return self.run(f"--pg1-path={pgdata}", f"--set={backup}", "--archive-mode=off", "restore")

    def pitr(self, backup, target, pgdata, port):
        t0 = time.perf_counter()
        r = self.run(f"--pg1-path={pgdata}", f"--set={backup}", "--archive-mode=off", "--type=time",
                     f"--target={target}", "--target-action=promote", "restore")
        with open(pgdata / "postgresql.auto.conf", "a") as fh:  # the source's port is taken
            fh.write(f"port = {port}\n")
        s = timed(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(pgdata), "-l", str(pgdata.parent /
                  f"{pgdata.name}.log"), "-w", "-t", "600", "start"]), what="pg_ctl start")
        wait_promoted(self.cluster, port)
        return Timed(time.perf_counter() - t0, r.cpu + s.cpu, r.stdout, r.stderr)

    def wal_stored(self):
        return tree_bytes(self.repo / "archive"), tree_files(self.repo / "archive")


class Ours(Tool):
    """manage.py commands as the postgres user, against a site an operator would build (see module doc)."""

    name = "ours"

    def __init__(self, work: Path, cluster: LocalCluster, page_deltas: str = "default"):
        super().__init__(work, cluster)
        home = work / "site"
        home.mkdir()
        home.chmod(0o755)
        meta, self.root, conf = postgres_dir(home / "meta"), postgres_dir(home / "backups"), postgres_dir(home / "conf")
        keys = conf / "master.keys"
        keys.write_text(generate_spec("k1") + "\n")
        self.env_file = conf / "backupsite.env"
        self.env_file.write_text(
            f"DEBUG=false\nSECRET_KEY={os.urandom(24).hex()}\nDATABASE_URL=sqlite:///{meta / 'meta.sqlite3'}\n"
            f"BACKUP_LOCAL_ROOT={self.root}\nBACKUP_ENCRYPTION_KEYS_FILE={keys}\nLOG_LEVEL=WARNING\n"
            + ("" if page_deltas == "default" else f"BACKUP_PAGE_DELTAS={page_deltas == 'on'}\n"))
        for path in (keys, self.env_file):
            give(path, 0o600)
        self.python = server_user_python(home)
        # server_user_python may make a venv by running the system Python as root, with PYTHONPYCACHEPREFIX set
        # (see main): the standard library's bytecode directories it made there are root's, and every command of
        # ours (and every wal_push / wal_fetch the server runs) then recompiled ~130 modules, ~0.4 s of CPU each.
        give_tree(Path(os.environ["PYTHONPYCACHEPREFIX"]))
        # PostgreSQL runs archive_command and restore_command with the environment it was started with
        # (PYTHONPYCACHEPREFIX, see main); the commands run here get the same, plus the environment file.
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "BACKUPSITE_ENV_FILE": str(self.env_file)}
        if os.environ.get("PYTHONPYCACHEPREFIX"):
            self.env["PYTHONPYCACHEPREFIX"] = os.environ["PYTHONPYCACHEPREFIX"]
        self.manage("migrate", "-v0")
        c = cluster.conn(DBNAME)
        self.manage("target_add", TARGET, "--dsn", f"postgresql://{c.user}@{c.host}:{c.port}/{c.dbname}?sslmode=disable",
                    "--data-directory", str(cluster.data), "--default-method", "physical")
        spool = postgres_dir(home / "archive-spool")  # archive_config's recommended set-up: a backlog per process
        printed = self.manage("archive_config", TARGET, "--python", self.python, "--spool", str(spool)).stdout
        self.archive_command = parse_conf_string(printed, "archive_command")

    def manage(self, *args: str) -> Timed:
        return timed(as_server_user([self.python, str(ROOT / "manage.py"), *args]), env=self.env, cwd=ROOT,
                     what=f"manage.py {args[0]}")

    def _backup(self, *args: str) -> tuple[Timed, int, str]:
        t = self.manage("db_backup", TARGET, *args)
        result = json.loads(t.stdout.strip().splitlines()[-1])
        return t, int(result["size_bytes"]), str(result["id"])

    def full(self):
        return self._backup("--kind", "full", "--method", "physical")

    def incremental(self):
        return self._backup("--kind", "incremental")

    def restore(self, backup, pgdata):
        return self.manage("db_restore", backup, "--pgdata", str(pgdata))

    def pitr(self, backup, target, pgdata, port):
        t0 = time.perf_counter()
        r = self.manage("pitr", TARGET, "--target-time", target, "--pgdata", str(pgdata), "--port", str(port),
                        "--start")
        wait_promoted(self.cluster, port)
        return Timed(time.perf_counter() - t0, r.cpu, r.stdout, r.stderr)

    def pitr_split(self, t: Timed) -> str | None:
        """The recovery's own split, as the pitr command reports it: restore of the base, then start + replay."""
        try:
            result = json.loads(t.stdout.strip().splitlines()[-1])
            return f"restore {result['restore_seconds']:.2f} s + start/replay {result['replay_seconds']:.2f} s"
        except (ValueError, IndexError, KeyError, TypeError):
            return "?"

    def wal_stored(self):
        return tree_bytes(self.root, only="wal"), tree_files(self.root, only="wal")


def parse_conf_string(printed: str, name: str) -> str:
    """The value of `name = '...'` in postgresql.conf lines (quotes doubled inside)."""
    for line in printed.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if value.startswith("'") and value.endswith("'"):
                return value[1:-1].replace("''", "'")
    raise RuntimeError(f"no {name} line in:\n{printed}")


# --- reporting ------------------------------------------------------------------------------------------------


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def median_of(ops: list[Op], attr: str = "wall") -> float | None:
    vals = [getattr(o, attr) for o in ops if getattr(o, attr) is not None]
    return statistics.median(vals) if vals else None


def pick_all(ops: list[Op], op: str) -> list[Op]:
    """One operation of every tool, in run order."""
    return [o for o in ops if o.op == op]


def render(info: dict, dbs: dict, ops: list[Op], tools: list[str], started: str, load_start: tuple,
           load_end: tuple, args, changes: dict) -> tuple[str, list[str]]:
    ours = "ours" in tools
    lines = [
        f"### Results {started}",
        "",
        f"- Command: `bench/physical.sh --size {args.size} --datasets {args.datasets} --repeat {args.repeat}"
        + (f" --change-pct {args.change_pct:g}" if args.change_pct != 1.0 else "")
        + (" --skip-ours" if args.skip_ours else "")
        + (f" --page-deltas {args.page_deltas}" if args.page_deltas != "default" else "")
        + (f" --cluster-dir {args.cluster_dir}" if args.cluster_dir else "") + "`",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB RAM, Linux {info['kernel']}; "
        f"load average at start {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} (1/5/15 min; other test suites share "
        "the machine)",
        f"- PostgreSQL server {', '.join(sorted({d['server_version'] for d in dbs.values()}))}; {info['pgbackrest']}; "
        f"{info['pg_basebackup']}; {info['zstd_cli']}; Python {info['python']}, python-zstandard "
        f"{info['python_zstandard']}",
        f"- Code under test: {info['code']} (read when the run started)"
        + ("" if ours else "; **ours not measured** (--skip-ours)"),
        "- pgBackRest: posix repository in a temporary directory, `compress-type=zst` (level 3), `process-max=2`, "
        "`start-fast=y`, archive-push as `archive_command`, run as postgres. Ours: `manage.py` as postgres against a "
        "SQLite metadata database and local storage, zstd + AES-256-GCM, `wal_push` as `archive_command` (the line "
        "`archive_config --spool` prints); the target has its `--data-directory`, so the full reads it (two writer "
        "processes, `BACKUP_PROCESSES` default) where a tree before that takes pg_basebackup. Anchor: `pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -3 -T2 > file`.",
        "- Databases: " + "; ".join(
            f"{name}: pgbench scale {d['scale']}, pg_database_size {mb(d['db_bytes'])} MiB"
            + (f" (documents table {mb(d['doc_bytes'])} MiB, {d['doc_rows']:,} rows, {d['attachments']:,} with a "
               "random bytea attachment)" if d.get("doc_rows") else "") for name, d in dbs.items()),
        "- Each repeat, per tool: CHECKPOINT, full; pgbench run; CHECKPOINT, incremental; the same pgbench run again, "
        "a marker, the target time, a marker, WAL switched and archived; restore of the incremental (its chain) into "
        "a new directory (not started); PITR of the incremental + WAL to the target time until promoted and "
        "answering, marker checked. pgbench runs: " + "; ".join(
            f"{name} {c['transactions']:,} TPC-B transactions (≈ {c['transactions'] / c['accounts']:.1%} of "
            f"{c['accounts']:,} accounts rows)" for name, c in changes.items()) + ".",
        f"- {args.repeat} repeat(s), tool order rotated between repeats; "
        + ("medians shown." if args.repeat > 1 else "single runs.") + " Client CPU = user+sys of the command and "
        "the processes it waited for (not the server's recovery).",
        "",
    ]
    verdicts: list[str] = []
    for name in dbs:
        sel = [o for o in ops if o.dataset == name]

        def pick(tool, op, sel=sel):
            return [o for o in sel if o.tool == tool and o.op == op]

        lines += [f"**{name}** ({mb(dbs[name]['db_bytes'])} MiB)", "",
                  "| operation | pgBackRest s | ours s | ours / pgBackRest | target | anchor s | CPU s pgBackRest / "
                  "ours |", "|---|---:|---:|---:|---|---:|---|"]
        for op in OPS:
            pb, us = median_of(pick("pgbackrest", op)), median_of(pick("ours", op))
            an = median_of(pick("anchor", op))
            ratio = us / pb if us is not None and pb else None
            target = f"≤ {WALL_TARGETS[op]:.2f}" if op in WALL_TARGETS else "—"
            lines.append(f"| {OP_LABELS[op]} | {fmt_s(pb)} | {fmt_s(us)} | "
                         f"{'—' if ratio is None else f'**{ratio:.2f}**'} | {target} | {fmt_s(an)} | "
                         f"{fmt_s(median_of(pick('pgbackrest', op), 'cpu'))} / "
                         f"{fmt_s(median_of(pick('ours', op), 'cpu'))} |")
            if op in WALL_TARGETS:
                if ratio is None:
                    v = f"{name}: {OP_LABELS[op]} ours/pgBackRest ≤ {WALL_TARGETS[op]:.2f} — not measured"
                else:
                    ok = ratio <= WALL_TARGETS[op]
                    v = (f"{name}: {OP_LABELS[op]} ours/pgBackRest = {fmt_s(us)}/{fmt_s(pb)} = **{ratio:.2f}** "
                         f"(target ≤ {WALL_TARGETS[op]:.2f}) — {'met' if ok else 'MISSED'}")
                verdicts.append(v)
        lines += ["", "| stored | pgBackRest MiB | ours MiB | anchor MiB |", "|---|---:|---:|---:|"]
        share = {}
        for op in ("full", "incremental"):
            cells = []
            for tool in ("pgbackrest", "ours", "anchor"):
                v = median_of(pick(tool, op), "stored")
                cells.append("—" if v is None else mb(v))
            lines.append(f"| {op} | {' | '.join(cells)} |")
        for tool in ("pgbackrest", "ours"):
            shares = [i.stored / f.stored for f, i in zip(pick(tool, "full"), pick(tool, "incremental"))
                      if f.stored and i.stored is not None]
            share[tool] = statistics.median(shares) if shares else None
        lines.append("| incremental / full | " + " | ".join(
            "—" if share[t] is None else f"**{share[t]:.1%}**" for t in ("pgbackrest", "ours")) + " | |")
        wal_cells = []
        for tool in ("pgbackrest", "ours"):
            w = [o.extra["wal"] for o in pick(tool, "pitr") if "wal" in o.extra]
            wal_cells.append("—" if not w else f"{mb(statistics.median(b for b, _ in w))} "
                             f"({statistics.median(n for _, n in w):.0f} files)")
        lines.append(f"| WAL archived per repeat | {' | '.join(wal_cells)} | |")
        lines.append("")
        if share["ours"] is None:
            verdicts.append(f"{name}: incremental ≤ {INCREMENTAL_SHARE_TARGET:.0%} of the full — not measured")
        else:
            ok = share["ours"] <= INCREMENTAL_SHARE_TARGET
            verdicts.append(f"{name}: incremental stored = **{share['ours']:.1%}** of the full (pgBackRest "
                            f"{share['pgbackrest']:.1%}; target ≤ {INCREMENTAL_SHARE_TARGET:.0%}) — "
                            f"{'met' if ok else 'MISSED'}")
        an, pb = median_of(pick("anchor", "full")), median_of(pick("pgbackrest", "full"))
        if an and pb:
            lines.append(f"- Anchor / pgBackRest, full: {an:.2f}/{pb:.2f} = {an / pb:.2f}.")
        lines.append("- Per run (wall s / load 1m): " + "; ".join(
            f"#{o.repeat} {o.tool} {o.op} {o.wall:.2f} / {o.load_before:.1f}" for o in sel) + ".")
        splits = [f"#{o.repeat} {o.extra['split']}" for o in sel if o.op == "pitr" and "split" in o.extra]
        if splits:
            lines.append("- Ours, PITR as the pitr command splits it (inside the job): " + "; ".join(splits) + ".")
        checks = [f"#{o.repeat} {o.tool} {o.extra.get('markers')}" for o in sel if o.op == "pitr"]
        lines.append("- PITR marker check (the row before the target present, the one after absent): "
                     + "; ".join(checks) + ".")
        lines.append("- Archiving lag, untimed (pg_switch_wal, then until no `.ready` file is left; after the pgbench "
                     "run before the incremental / after the one before the target): " + "; ".join(
                         f"#{o.repeat} {o.tool} {i.extra.get('drain', 0):.2f} / {o.extra.get('drain', 0):.2f} s"
                         for o, i in zip(pick_all(sel, "pitr"), pick_all(sel, "incremental"))) + ".")
        lines.append("")
    wrong = [o for o in ops if o.op == "pitr" and o.extra.get("markers") != "ok"]
    if wrong:
        verdicts.append("PITR landed wrong: " + "; ".join(f"{o.dataset} #{o.repeat} {o.tool}: "
                                                           f"{o.extra.get('markers')}" for o in wrong))
    measured = [v for v in verdicts if "not measured" not in v]
    missed = [v for v in measured if "MISSED" in v or "wrong" in v]
    if not ours:
        overall = "Overall: targets not checked: ours was not measured in this run"
    elif missed:
        overall = f"Overall: {len(missed)} of {len(measured)} targets MISSED"
    else:
        overall = "Overall: all targets met"
    verdicts.append(overall)
    lines += ["**Targets** (ours / pgBackRest wall time; incremental as stored)", ""]
    lines += [f"- {v}" for v in verdicts]
    return "\n".join(lines) + "\n", verdicts


# --- main ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=800, help="database size in MB (default 800; ~100 to try it out)")
    ap.add_argument("--datasets", default="pgbench,mixed", help="comma separated: pgbench, mixed (default both)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each tool (medians reported; default 3)")
    ap.add_argument("--change-pct", type=float, default=1.0,
                    help="pgbench transactions before the incremental (and again before the PITR target), as %% of "
                         "the accounts rows (default 1)")
    ap.add_argument("--skip-ours", action="store_true", help="measure pgBackRest and the anchor only")
    ap.add_argument("--cluster-dir", type=Path, default=None,
                    help="keep the generated clusters here and reuse them on the next run (never removed)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (repositories, site)")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/BENCHMARKS.md")
    ap.add_argument("--page-deltas", choices=("default", "on", "off"), default="default",
                    help="BACKUP_PAGE_DELTAS in our site's environment file (default: the product's default)")
    args = ap.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    if not datasets or set(datasets) - {"pgbench", "mixed"}:
        ap.error("--datasets takes pgbench and/or mixed")
    for tool in ("pgbench", "pg_basebackup", "zstd", "pgbackrest", "runuser"):
        if not shutil.which(tool):
            ap.error(f"{tool} is not on PATH" + (" (apt-get install pgbackrest)" if tool == "pgbackrest" else ""))
    if not args.skip_ours:
        missing = [c for c in ("wal_push", "archive_config", "pitr", "db_restore", "db_backup")
                   if not list(ROOT.glob(f"apps/*/management/commands/{c}.py"))]
        if missing:
            ap.error(f"this tree has no {', '.join(missing)} command(s): run with --skip-ours")
    server_bin_dir()

    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    info = machine_info()
    info["pgbackrest"] = tool_version("pgbackrest", "version")
    info["pg_basebackup"] = tool_version("pg_basebackup", "--version")
    work = Path(tempfile.mkdtemp(prefix="bench-physical-"))
    work.chmod(0o755)  # postgres must reach the cluster, repositories and site inside
    # Our commands, and the archive/restore commands the servers run, use compiled bytecode as an installed
    # application does (this machine sets PYTHONDONTWRITEBYTECODE). Children only: set after our own start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(postgres_dir(work / "pycache"))
    log(f"work directory {work}")
    ops: list[Op] = []
    dbs: dict[str, dict] = {}
    changes: dict[str, dict] = {}
    tools = ["anchor", "pgbackrest"] + ([] if args.skip_ours else ["ours"])
    try:
        for dataset in datasets:
            base = cluster_base(args.cluster_dir, work, f"physical-{dataset}-{args.size}")
            cluster = open_cluster(base, reuse=bool(args.cluster_dir), label=dataset, conf=CLUSTER_CONF)
            try:
                dbs[dataset] = make_database(cluster, args.size, dataset)
                if args.cluster_dir:
                    mark_complete(cluster)
                d = dbs[dataset]
                log(f"{dataset}: pgbench scale {d['scale']} in {d['init_s']:.1f} s -> {mb(d['db_bytes'])} MiB")
                dwork = work / dataset
                dwork.mkdir()
                dwork.chmod(0o755)
                runners = {"anchor": Anchor(dwork, cluster), "pgbackrest": PgBackRest(dwork, cluster)}
                if "ours" in tools:
                    runners["ours"] = Ours(dwork, cluster, args.page_deltas)
                (accounts,), = query(cluster, "SELECT count(*) FROM pgbench_accounts")
                changes[dataset] = {"transactions": 2 * max(1, round(accounts * args.change_pct / 100 / 2)),
                                    "accounts": accounts}
                order = list(tools)
                for rep in range(1, args.repeat + 1):
                    for tool in order:
                        ops += runners[tool].phase(dataset, rep, args.change_pct)
                    order = order[1:] + order[:1]
            finally:
                if args.cluster_dir:
                    cluster.stop()
                else:
                    cluster.destroy()
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    section, _ = render(info, dbs, ops, tools, started, load_start, os.getloadavg(), args, changes)
    print(section)
    if not args.no_docs:
        write_section(section, MARK_START, MARK_END, INTRO)
        log("results written to docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
