"""Document backups side by side: ours (manage.py docs_backup / docs_restore), restic, tar -czf, tar -I zstd.

One generated tree (mixed: prose-like text that compresses, random bytes that do not; many small files and a
few large ones), then for each tool, in one run on the same warm page cache:
  1. first backup of the tree;
  2. second backup after rewriting 1 % of the files and adding 100 new ones (tar: a full archive again);
  3. restore of the second backup into an empty directory (checked byte for byte, untimed).
Wall times are medians of --repeat runs (each on fresh repositories); stored bytes are the repository's
growth (du of the repository or the archive). Prints a Markdown table.

Nothing is deleted until every run is done (each run copies the tree anew under its own name and keeps its
repositories and restored trees; about 2 GB per run): ext4 passes over inodes freed in the last minutes when it
allocates new ones (`recently_deleted`), which made whichever tool restored right after a removal pay seconds of
system time. The work directory of an earlier invocation is removed at the start, so leave a few minutes between
two invocations on a quiet machine, or give each its own --work.
"""
import argparse
import base64
import hashlib
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
WORDS = ("invoice contract tenant lease payment property owner agreement schedule clause report annex "
         "amount deposit notice term renewal signature witness address valuation survey").split()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def text_bytes(rnd: random.Random, size: int) -> bytes:
    out, n = [], 0
    while n < size:
        line = " ".join(rnd.choice(WORDS) for _ in range(12)) + f" {rnd.randint(0, 10**9)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def make_tree(root: Path, files: int, total_mb: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    big = 10  # a few large files (a quarter of the bytes), the rest small
    big_size = total_mb * MB // 4 // big
    small_avg = (total_mb * MB - big * big_size) // (files - big)
    for i in range(files):
        d = root / f"d{i % 50:02d}" / f"s{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        size = big_size if i < big else max(1, int(rnd.expovariate(1 / small_avg))) if i % 2 else small_avg
        data = text_bytes(rnd, size) if i % 2 else rnd.randbytes(size)
        (d / f"f{i:05d}.{'txt' if i % 2 else 'bin'}").write_bytes(data)


def modify(root: Path, files: int, seed: int = 8) -> None:
    """Rewrite part of 1 % of the files, add 100 new ones."""
    rnd = random.Random(seed)
    all_files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in rnd.sample(all_files, max(1, files // 100)):
        data = bytearray(p.read_bytes())
        pos = rnd.randrange(0, max(1, len(data)))
        patch = rnd.randbytes(min(4096, max(1, len(data) // 10)))
        data[pos:pos + len(patch)] = patch
        p.write_bytes(bytes(data))
    new = root / "new"
    new.mkdir(exist_ok=True)
    for i in range(100):
        (new / f"n{i:03d}.txt").write_bytes(text_bytes(rnd, rnd.randint(1000, 40000)))


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


CPU: list[float] = []  # CPU seconds (user + system) of each command run, in order
SPLIT: list[str] = []  # the same as "U user + S sys", for the log


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    SPLIT.append(f"{after.ru_utime - before.ru_utime:.2f} user + {after.ru_stime - before.ru_stime:.2f} sys")
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


class Ours:
    name = "ours (docs_backup)"

    def __init__(self, work: Path):
        self.work = work
        self.repo = work / "repo"
        self.env = {"DEBUG": "1", "SECRET_KEY": "bench", "DATABASE_URL": f"sqlite:///{work / 'meta.sqlite3'}",
                    "BACKUP_LOCAL_ROOT": str(self.repo),
                    "BACKUP_ENCRYPTION_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode()}
        self.manage = [str(ROOT / ".venv/bin/python"), str(ROOT / "manage.py")]
        self.versions: list[str] = []
        self.job_seconds: list[float] = []  # the backup itself, without the process's start-up

    def init(self, tree: Path) -> None:
        # The project's bytecode compiled once, as an installed application has it (pip and Debian packages
        # compile at install): with PYTHONDONTWRITEBYTECODE set and no __pycache__, every timed command compiled
        # each project module it imports from source again (about 0.3 CPU s of a 3,000-file first backup).
        run([self.manage[0], "-m", "compileall", "-q", str(ROOT / "apps"), str(ROOT / "backupsite")], self.env)
        run(self.manage + ["migrate", "-v0"], self.env)
        run(self.manage + ["docs_source_add", "bench", "--path", str(tree)], self.env)

    def backup(self, tree: Path) -> float:
        elapsed, out = run(self.manage + ["docs_backup", "bench"], self.env)
        import json

        summary = json.loads(out.strip().splitlines()[-1])
        self.versions.append(summary["id"])
        self.job_seconds.append(summary["duration_seconds"])
        return elapsed

    def restore(self, to: Path) -> float:
        return run(self.manage + ["docs_restore", self.versions[-1], "--to", str(to)], self.env)[0]

    def stored(self) -> int:
        return du(self.repo)


class Restic:
    name = "restic"

    def __init__(self, work: Path):
        self.repo = work / "repo"
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(self.repo), "RESTIC_CACHE_DIR":
                    str(work / "cache")}

    def init(self, tree: Path) -> None:
        run(["restic", "init", "-q"], self.env)

    def backup(self, tree: Path) -> float:
        return run(["restic", "backup", "-q", "."], self.env, cwd=tree)[0]

    def restore(self, to: Path) -> float:
        return run(["restic", "restore", "-q", "latest", "--target", str(to)], self.env)[0]

    def stored(self) -> int:
        return du(self.repo)


class Tar:
    def __init__(self, work: Path, name: str, flags: list[str], ext: str):
        self.work, self.name, self.flags, self.ext = work, name, flags, ext
        self.archives: list[Path] = []

    def init(self, tree: Path) -> None:
        pass

    def backup(self, tree: Path) -> float:
        archive = self.work / f"a{len(self.archives)}.{self.ext}"
        self.archives.append(archive)
        return run(["tar", *self.flags, "-cf", str(archive), "-C", str(tree), "."])[0]

    def restore(self, to: Path) -> float:
        to.mkdir(parents=True, exist_ok=True)
        return run(["tar", *self.flags, "-xf", str(self.archives[-1]), "-C", str(to)])[0]

    def stored(self) -> int:
        return sum(du(a) for a in self.archives)


def tools(work: Path):
    return [Ours(work / "ours"), Restic(work / "restic"), Tar(work / "tgz", "tar -czf", ["-z"], "tar.gz"),
            Tar(work / "tzst", "tar -I zstd", ["-I", "zstd"], "tar.zst")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/bench-docs")
    ap.add_argument("--tar-repeat", type=int, default=1, help="runs that include the tar tools (slow, no dedup)")
    ap.add_argument("--only", default="", help="comma list of tool names to run (ours,restic,tgz,tzst)")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    results: dict[str, dict[str, list]] = {}
    tree_mb = 0.0
    for r in range(args.repeat):
        tree, pristine = work / f"tree-{r}", work / "pristine"
        if not pristine.exists():
            log(f"generating {args.files} files, {args.mb} MB")
            make_tree(pristine, args.files, args.mb)
        log(f"run {r + 1}: a fresh copy of the tree; load {load()}")
        shutil.copytree(pristine, tree)
        tree_mb = du(tree) / MB
        state1 = None
        ts = tools(work / f"r{r}")
        if r >= args.tar_repeat:
            ts = [t for t in ts if not isinstance(t, Tar)]
        if args.only:
            keep = {"ours": "ours (docs_backup)", "restic": "restic", "tgz": "tar -czf", "tzst": "tar -I zstd"}
            ts = [t for t in ts if any(keep[k] == t.name for k in args.only.split(","))]
        for t in ts:
            for d in (getattr(t, "work", None), getattr(t, "repo", None)):
                if d is not None:
                    Path(d).mkdir(parents=True, exist_ok=True)
            t.init(tree)
        if r % 2:  # alternate who goes first: the page cache and the machine's load favour no tool
            ts.reverse()
        for t in ts:
            res = results.setdefault(t.name, {"first": [], "second": [], "restore": [], "stored1": [],
                                              "stored2": [], "cpu1": [], "cpu2": [], "cpu3": []})
            res["first"].append(t.backup(tree))
            res["cpu1"].append(CPU[-1])
            if isinstance(t, Ours):
                res.setdefault("job1", []).append(t.job_seconds[-1])
            res["stored1"].append(t.stored())
            log(f"{t.name}: first backup {res['first'][-1]:.2f} s ({CPU[-1]:.2f} CPU s), "
                f"{res['stored1'][-1] / MB:.1f} MB stored; load {load()}")
        modify(tree, args.files)
        state1 = tree_digest(tree)
        for t in ts:
            res = results[t.name]
            res["second"].append(t.backup(tree))
            res["cpu2"].append(CPU[-1])
            if isinstance(t, Ours):
                res.setdefault("job2", []).append(t.job_seconds[-1])
            res["stored2"].append(t.stored() - res["stored1"][-1])
            log(f"{t.name}: second backup {res['second'][-1]:.2f} s ({CPU[-1]:.2f} CPU s), "
                f"{res['stored2'][-1] / MB:.2f} MB added; {SPLIT[-1]}; load {load()}")
        outs = []
        for t in ts:
            res = results[t.name]
            out = work / f"r{r}" / f"restore-{len(outs)}-{len(res['restore'])}"
            res["restore"].append(t.restore(out))
            res["cpu3"].append(CPU[-1])
            outs.append(out)
            got = tree_digest(out)
            if got != state1:
                raise SystemExit(f"{t.name}: the restore differs from the tree ({len(got)} vs {len(state1)} files)")
            log(f"{t.name}: restore {res['restore'][-1]:.2f} s ({CPU[-1]:.2f} CPU s: {SPLIT[-1]}, identical); "
                f"load {load()}")
        # Removed only after the last run (see the module's docstring).
    log(f"removing the work directory {work}")
    shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"\nTree: {args.files} files + 100 added, {tree_mb:.0f} MB; medians of {args.repeat} runs "
          f"({args.tar_repeat} for tar); {os.cpu_count()} CPUs.\n")
    print("| tool | first backup (s) | stored (MB) | second backup (s) | added by the second (MB) | restore (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, res in results.items():
        print(f"| {name} | {med(res['first']):.2f} | {med(res['stored1']) / MB:.1f} | {med(res['second']):.2f} | "
              f"{med(res['stored2']) / MB:.2f} | {med(res['restore']):.2f} |")
    print("\nCPU seconds (user + system, medians): " + "; ".join(
        f"{name} {med(res['cpu1']):.2f} / {med(res['cpu2']):.2f} / {med(res['cpu3']):.2f}"
        for name, res in results.items()) + " (first / second / restore).")
    for name, res in results.items():
        if "job1" in res:
            print(f"\n{name}: the backup jobs themselves (without process start-up) took "
                  f"{med(res['job1']):.2f} s and {med(res['job2']):.2f} s.")


if __name__ == "__main__":
    main()
