#!/usr/bin/env python
"""`manage.py help` start-up: this tree against a bare Django project (`django-admin startproject`, the six
contrib apps) and `python -c pass`, run alternately; medians of wall time and of the child's user+sys CPU.

Runs with a private bytecode cache, as an installed application does (this machine sets
PYTHONDONTWRITEBYTECODE). Prints a markdown table; docs/BENCHMARKS.md quotes it by hand.

    .venv/bin/python bench/startup.py [--runs 10] [--tree OTHER_TREE]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tree", type=Path, action="append", default=[],
                    help="also time manage.py help of another source tree (e.g. an older commit's `git archive`)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        subprocess.run([str(Path(sys.executable).parent / "django-admin"), "startproject", "bare", str(work)],
                       check=True)
        env = dict(os.environ, DEBUG="1", DATABASE_URL=f"sqlite:///{work / 'meta.sqlite3'}",
                   PYTHONPYCACHEPREFIX=str(work / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cmds = {"this tree": [sys.executable, str(ROOT / "manage.py"), "help"]}
        for tree in args.tree:
            cmds[str(tree)] = [sys.executable, str(tree / "manage.py"), "help"]
        cmds["bare Django project"] = [sys.executable, str(work / "manage.py"), "help"]
        cmds["python -c pass"] = [sys.executable, "-c", "pass"]
        for cmd in cmds.values():  # compile into the private cache first
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        load0 = os.getloadavg()
        for _ in range(args.runs):
            for label, cmd in cmds.items():
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
                walls[label].append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus[label].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        load1 = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.runs} alternating runs each; load average (1/5/15 min) at start "
          f"{' / '.join(f'{x:.2f}' for x in load0)}, at end {' / '.join(f'{x:.2f}' for x in load1)}\n")
    print("| | wall s, median (min) | CPU s, median (min) |\n|---|---:|---:|")
    for label in cmds:
        print(f"| {label} | {statistics.median(walls[label]):.2f} ({min(walls[label]):.2f}) "
              f"| {statistics.median(cpus[label]):.2f} ({min(cpus[label]):.2f}) |")


if __name__ == "__main__":
    main()
