#!/usr/bin/env python
"""Cost of monitoring on a catalog of realistic size: one rule evaluation (what runs after every job and every
5 minutes), a /metrics scrape, the dashboard, and sending the outbox to a local webhook receiver compared with
the floor (the same number of bare `requests.post` calls to the same receiver).

Runs on its own SQLite file in a temporary directory (migrated first). Results go to docs/BENCHMARKS.md between
this script's markers.

    .venv/bin/python bench/monitoring.py                       # 50 targets × 60 backups, 200 deliveries
    .venv/bin/python bench/monitoring.py --targets 5 --backups 10 --deliveries 20 --no-write
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/BENCHMARKS.md"
START, END = "<!-- bench/monitoring.py results: start -->", "<!-- bench/monitoring.py results: end -->"
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=50)
    ap.add_argument("--backups", type=int, default=60)
    ap.add_argument("--deliveries", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-monitoring-")
    os.environ.update(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3", Q_SYNC="1",
                      SECRET_KEY="bench", LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from apps.backups.models import Backup, BackupStatus
    from apps.core.services import SYSTEM
    from apps.databases.models import DatabaseTarget
    from apps.monitoring import engine, outbox, selectors, services
    from apps.monitoring.models import Alert, Delivery, NotificationChannel
    from apps.storage.services import ensure_default_location
    from tests.receivers import HttpReceiver

    loc = ensure_default_location()
    now = timezone.now()
    rows = []
    for t in range(args.targets):
        target = DatabaseTarget.objects.create(name=f"db{t:03d}", host="127.0.0.1", port=5432, dbname="x", user="u")
        for i in range(args.backups):
            at = now - timedelta(hours=24 * (args.backups - i))
            failed = (t % 10 == 0 and i == args.backups - 1)
            rows.append(Backup(database_target=target, status=BackupStatus.FAILED if failed else BackupStatus.SUCCEEDED,
                               storage_location=loc, started_at=at, finished_at=at, size_raw=10_000_000 + 1000 * i,
                               size_stored=3_000_000, error="x" if failed else ""))
    Backup.objects.bulk_create(rows, batch_size=1000)

    results = []
    first = timed(lambda: engine.evaluate(), 1)
    results.append(("rule evaluation, first (opens alerts)", first))
    results.append(("rule evaluation, steady state", timed(lambda: engine.evaluate(), args.repeat)))
    client = Client()
    from django.conf import settings
    settings.METRICS_PUBLIC = True
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and b"backupsite_backups" in scrape.content, scrape.status_code
    results.append(("/metrics scrape", timed(lambda: client.get("/metrics"), args.repeat)))
    results.append(("dashboard data", timed(lambda: selectors.dashboard(), args.repeat)))
    alerts = Alert.objects.count()

    hook = HttpReceiver().start()
    try:
        channel = services.save_channel(channel=NotificationChannel(name="bench", kind="webhook"), actor=SYSTEM,
                                        secrets={"url": hook.url, "hmac_key": "k"})
        alert = Alert.objects.first()
        Delivery.objects.bulk_create([Delivery(alert=alert, channel=channel, event="trigger", next_attempt_at=now)
                                      for _ in range(args.deliveries)])
        t0 = time.perf_counter()
        counts = outbox.deliver_due(limit=args.deliveries)
        ours = time.perf_counter() - t0
        assert counts["sent"] == args.deliveries, counts
        body = b'{"event": "trigger"}'
        t0 = time.perf_counter()
        for _ in range(args.deliveries):
            requests.post(hook.url, data=body, timeout=10)
        floor = time.perf_counter() - t0
    finally:
        hook.stop()

    load = os.getloadavg()
    lines = [
        f"### Results {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
        f"- Command: `.venv/bin/python bench/monitoring.py --targets {args.targets} --backups {args.backups} "
        f"--deliveries {args.deliveries} --repeat {args.repeat}`",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, SQLite catalog; load average "
        f"at end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (other work shares the machine)",
        f"- Catalog: {args.targets} targets × {args.backups} backups ({args.targets * args.backups} rows), "
        f"{alerts} alerts open after the first evaluation; median of {args.repeat} runs", "",
        "| operation | seconds |", "|---|---:|",
        *[f"| {name} | {sec:.3f} |" for name, sec in results], "",
        "| outbox to a local webhook receiver | deliveries | seconds | per delivery ms | × bare requests.post |",
        "|---|---:|---:|---:|---:|",
        f"| `outbox.deliver_due` (claim, sign, POST, record) | {args.deliveries} | {ours:.2f} | "
        f"{1000 * ours / args.deliveries:.1f} | {ours / floor:.2f} |",
        f"| bare `requests.post` loop (the floor) | {args.deliveries} | {floor:.2f} | "
        f"{1000 * floor / args.deliveries:.1f} | 1.00 |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        doc = DOC.read_text()
        section = f"{START}\n{text}\n{END}"
        if START in doc:
            doc = doc[: doc.index(START)] + section + doc[doc.index(END) + len(END):]
        else:
            doc += ("\n## Monitoring: rule evaluation, /metrics, outbox\n\nProduced by `bench/monitoring.py`; the "
                    "section between the markers is rewritten on every run.\n\n" + section + "\n")
        DOC.write_text(doc)


if __name__ == "__main__":
    main()
