#!/usr/bin/env python
"""WAL archiving throughput: a backlog of N segments archived by `wal_push` per file vs with a spool.

Builds the test suite's archiving site (tests/wal_site.py: a real cluster whose archive_command is the line
`archive_config --spool` prints, run by PostgreSQL as postgres), then for each mode, alternating: archiving
held (`archive_command = '/bin/false'`), N segments of writes, the mode's archive_command set, and the time
until pg_stat_archiver reports the last one archived. Prints one line per run.

    .venv/bin/python bench/wal_backlog.py --segments 40 --repeat 2
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", "bench")
    if "BACKUP_ENCRYPTION_KEYS" not in os.environ:
        from apps.pipeline.keys import generate_spec

        os.environ["BACKUP_ENCRYPTION_KEYS"] = generate_spec("bench")
    import django

    django.setup()
    import psycopg
    import psycopg.sql

    from apps.backups import wal_config
    from tests.wal_site import TARGET, archiving_site

    with archiving_site("wal-backlog-") as site:
        (spooled,), = site.sql("SHOW archive_command")
        plain = wal_config.archive_command(TARGET, wal_config.Invocation(
            python=site.python, manage=str(ROOT / "manage.py"), env_file=str(site.env_file)))
        modes = [("one wal_push per file", plain), ("--spool (backlog per process)", spooled)]
        with psycopg.connect(**site.cluster.conn().kwargs("bench"), autocommit=True) as c:
            def set_command(command: str) -> None:
                c.execute(psycopg.sql.SQL("ALTER SYSTEM SET archive_command = {}").format(psycopg.sql.Literal(command)))
                c.execute("SELECT pg_reload_conf()")

            for i in range(args.repeat):
                for label, command in (modes if i % 2 == 0 else modes[::-1]):
                    set_command("/bin/false")
                    time.sleep(1)
                    for _ in range(args.segments):
                        c.execute("INSERT INTO marks (note) SELECT repeat(md5(g::text), 60) FROM generate_series(1, 7000) g")
                        (last,), = c.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchall()
                        c.execute("SELECT pg_switch_wal()")
                    set_command(command)
                    t0 = time.monotonic()
                    while True:
                        (archived,), = c.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchall()
                        if archived is not None and archived >= last:
                            break
                        time.sleep(0.05)
                    seconds = time.monotonic() - t0
                    print(f"#{i + 1} {label}: {args.segments} segments ({args.segments * 16} MB) archived in "
                          f"{seconds:.1f} s, {args.segments * 16 / seconds:.0f} MB/s; load {os.getloadavg()[0]:.1f}",
                          flush=True)


if __name__ == "__main__":
    main()
