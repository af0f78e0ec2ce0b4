"""The WAL a recovery will replay, fetched into a private spool while the base backup is restored.

PostgreSQL asks its restore_command for one file at a time, and each `wal_fetch` is a Django process
(about a second). So the recovery fetches, beside the base restore and in parallel, every archived
segment from the base backup's start to just past the goal, each authenticated like any fetch; the
restore_command then only moves files in (wal_config.restore_command). Files known not to be archived
that PostgreSQL always asks for (the next timelines' history, the segment after the archive's end) get
a `.missing` marker, answered "not archived" by the shell; a file asked for again after it was moved in
(the last segment, as recovery ends) is copied from pg_wal. Anything else still goes to wal_fetch.
"""
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.db import connection

from apps.backups import wal_archive, wal_names, wal_selectors
from apps.backups.models import Backup, WalSegment
from apps.backups.wal_config import FILLING
from apps.databases import lsn as lsns
from apps.databases.models import DatabaseTarget
from apps.recovery.targets import RecoveryTarget

log = logging.getLogger(__name__)

MARGIN = 2  # segments beyond the goal's, for the server's read-ahead (recovery_prefetch)


def needed(target: DatabaseTarget, base: Backup, goal: RecoveryTarget, *, restore_point_lsn: int | None = None
           ) -> tuple[list[str], list[str]]:
    """(archived files to fetch, names to mark missing) for recovering from `base` to `goal`."""
    size = wal_selectors.segment_size(target)
    tli = base.timeline or 1
    reach = wal_selectors.reach_from(target, base)
    first, end = lsns.parse(base.lsn_start) // size, reach.latest_lsn // size  # end: first segment not archived
    last = end - 1
    stop_lsn = goal.lsn_value if goal.lsn else restore_point_lsn
    if stop_lsn is not None:
        last = min(last, stop_lsn // size + MARGIN)
    if goal.time:
        names = {wal_names.segment_name(tli, n, size): n for n in range(first, end)}
        after = (WalSegment.objects.filter(database_target=target, name__in=list(names), last_commit_at__gt=goal.time)
                 .order_by("name").values_list("name", flat=True).first())
        if after is not None:
            last = min(last, names[after] + MARGIN)
    segments = [wal_names.segment_name(tli, n, size) for n in range(first, last + 1)]
    history = list(WalSegment.objects.filter(database_target=target, name__endswith=".history")
                   .values_list("name", flat=True))
    # Asked for at promotion: this timeline's history (copied into the new one's) and the next ones' (to pick a
    # free timeline id).
    missing = [f"{t:08X}.history" for t in range(tli, tli + 4) if f"{t:08X}.history" not in history]
    if last == end - 1:
        missing.append(wal_names.segment_name(tli, end, size))  # where the archive (or the stretch) ends
    return history + segments, missing  # in the order the server asks for them


def fill(*, target: DatabaseTarget, names: list[str], missing: list[str], spool: Path, workers: int = 2) -> int:
    """Fetch `names` into `spool` (two at a time) and write the `.missing` markers; the number fetched."""
    def one(name: str) -> None:
        try:
            wal_archive.fetch(target=target, name=name, dest=spool / name, scratch=True)
        finally:
            connection.close()  # each worker thread has its own database connection

    for name in missing:  # first: the server asks for some of these (the next timelines' history) at once
        (spool / f"{name}.missing").touch()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, names))
    finally:
        (spool / FILLING).unlink(missing_ok=True)  # restore_command stops waiting for files not fetched
    return len(names)
