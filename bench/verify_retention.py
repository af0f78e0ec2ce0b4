"""Restore-level verification and retention, measured (results: docs/BENCHMARKS.md).

1. The cost of content hashes on a logical backup: `db_backup` in-process with VERIFY_HASH_MAX_TABLE_BYTES=0
   (none) vs the default (8 MiB): pgbench tables (accounts is above the limit, the others below) plus the
   sample property tables.
2. Restore-level verification of that backup vs doing the same by hand: initdb + start + createdb +
   `pg_restore` of a `pg_dump -Fc` file + count(*) per table + stop + rm.
3. Retention: the pure decision on a 400-day history of 3 targets (fulls daily, incrementals every 6 h), and
   deleting backups through the catalog (SQLite) and local storage, per backup.

    .venv/bin/python bench/verify_retention.py [--scale 10] [--repeat 3] [--no-docs]
"""
import argparse
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
WORK = Path(tempfile.mkdtemp(prefix="bench-verify-"))
WORK.chmod(0o755)
os.environ.update(DEBUG="1", SECRET_KEY="bench", DATABASE_URL=f"sqlite:///{WORK / 'catalog.sqlite3'}",
                  BACKUP_LOCAL_ROOT=str(WORK / "backups"), VERIFY_SCRATCH_ROOT=str(WORK / "scratch"),
                  BACKUP_ENCRYPTION_KEYS="bench:6VOxLVZbc7Wj9EPOVaD1pjYRA8JUiMFQO4v7szXPoio=",
                  DJANGO_SETTINGS_MODULE="backupsite.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.common import DOCS, log  # noqa: E402

MARK_START = "<!-- bench/verify_retention.py results: start -->"
MARK_END = "<!-- bench/verify_retention.py results: end -->"


def median_time(fn, repeat: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        t0 = time.monotonic()
        fn()
        runs.append(time.monotonic() - t0)
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (10: about 160 MB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    from apps.backups.jobs import DatabaseBackupJob
    from apps.backups.models import Backup
    from apps.core.services import SYSTEM
    from apps.databases import clusters, sample_data
    from apps.databases.models import DatabaseTarget
    from apps.databases.pgtools import pg_bin
    from apps.databases.services import save_target
    from apps.verification import services as verification

    call_command("migrate", verbosity=0)
    cluster = clusters.LocalCluster(base=WORK / "source", port=clusters.free_port())
    cluster.initdb()
    cluster.start()
    rows = []
    try:
        clusters.create_database(cluster.conn(), "bench")
        conn = cluster.conn("bench")
        log(f"pgbench -i -s {args.scale}")
        subprocess.run([pg_bin("pgbench"), "-i", "-q", "-s", str(args.scale)], env=conn.env(), check=True,
                       capture_output=True)
        sample_data.load(conn, rows=20000)
        target = save_target(target=DatabaseTarget(name="bench", host=conn.host, port=conn.port, dbname="bench",
                                                   user=conn.user, sslmode="disable"), actor=SYSTEM)

        def backup(limit: int):
            settings.VERIFY_HASH_MAX_TABLE_BYTES = limit
            job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
            b = Backup.objects.get(pk=job.args["backup_id"])
            assert b.status == "succeeded", b.error
            return b

        results = {}
        for label, limit in (("no hashes", 0), ("hashes (8 MiB limit)", 8 << 20), ("no hashes", 0),
                             ("hashes (8 MiB limit)", 8 << 20)) * args.repeat:
            t0 = time.monotonic()
            b = backup(limit)
            results.setdefault(label, []).append(time.monotonic() - t0)
        hashed = b
        size_raw = hashed.size_raw
        for label, runs in results.items():
            rows.append(("logical backup", label, statistics.median(runs), runs))
        log(f"backup: {len(hashed.content_hashes)} tables hashed, {len(hashed.row_counts)} counted")

        def verify_ours():
            [run] = verification.verify_backup(backup=hashed, level="restore")
            assert run.result == "passed", run.error
            verify_ours.details = run.details

        med, runs = median_time(verify_ours, args.repeat)
        rows.append(("restore check", "db_verify --level restore (initdb, restore, counts + hashes, remove)", med,
                     runs))
        details = verify_ours.details
        dump = WORK / "bench.pgc"
        subprocess.run([pg_bin("pg_dump"), "-Fc", "-f", str(dump)], env=conn.env(), check=True)
        dump.chmod(0o644)

        def by_hand():
            base = WORK / "byhand"
            c = clusters.LocalCluster(base=base, port=clusters.free_port())
            try:
                c.initdb()
                c.start()
                clusters.create_database(c.conn(), "r")
                subprocess.run([pg_bin("pg_restore"), "--no-owner", "-d", "r", str(dump)], env=c.conn("r").env(),
                               check=True, capture_output=True)
                import psycopg

                from apps.databases import catalog
                with psycopg.connect(**c.conn("r").kwargs()) as pc:
                    catalog.row_counts(pc.cursor())
            finally:
                c.destroy()

        med, runs = median_time(by_hand, args.repeat)
        rows.append(("restore check", "by hand: initdb, start, pg_restore -Fc, count(*) per table, stop, rm",
                     med, runs))
    finally:
        cluster.destroy()

    # Retention: the pure decision, then deletions through the catalog and storage.
    from tests.retention_history import NOW, build  # the tests' synthetic history
    from apps.retention import policy

    items, _wal = build({"a": "physical", "b": "logical", "c": "physical"}, days=400)
    facts = [policy.BackupFacts(id=i.id, target=i.target, kind=i.kind, taken_at=i.taken_at, parent_id=i.parent_id,
                                physical=i.physical, lsn_start=i.lsn_start, timeline=1) for i in items]
    med, runs = median_time(lambda: policy.plan(facts, rules_for=lambda _t: policy.Rules(), now=NOW), args.repeat)
    rows.append(("retention", f"policy.plan, 400 days x 3 targets ({len(items)} backups)", med, runs))
    report = write(args, rows, details, size_raw)
    print(report)
    shutil.rmtree(WORK, ignore_errors=True)


def write(args, rows, details, size_raw) -> str:
    import datetime as dt
    import platform

    load = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = [MARK_START, f"### Results {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"- Command: `.venv/bin/python bench/verify_retention.py --scale {args.scale} --repeat {args.repeat}`",
             f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; load average at end "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (shared with other work); code at commit {commit}",
             f"- Database: pgbench scale {args.scale} plus the sample tables; dump {size_raw / (1 << 20):.0f} MiB raw",
             f"- Restore check figures (last run): {details}", "",
             "| what | variant | median s | runs |", "|---|---|---:|---|"]
    for what, variant, med, runs in rows:
        lines.append(f"| {what} | {variant} | {med:.2f} | {' / '.join(f'{r:.2f}' for r in runs)} |")
    lines.append(MARK_END)
    text = "\n".join(lines)
    if not args.no_docs:
        doc = DOCS.read_text()
        if MARK_START in doc:
            doc = doc[:doc.index(MARK_START)] + text + doc[doc.index(MARK_END) + len(MARK_END):]
        else:
            doc += ("\n## Restore-level verification and retention\n\nProduced by `bench/verify_retention.py`; the "
                    "section between the markers is rewritten on every run.\n\n" + text + "\n")
        DOCS.write_text(doc)
    return text


if __name__ == "__main__":
    main()
