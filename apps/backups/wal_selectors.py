"""Reads of the WAL archive: contiguous segment ranges per timeline, gaps, archiving lag, the recovery window.

Everything here is computed from the catalog (WalSegment and Backup rows), never from storage: a gap is a
segment the catalog does not hold. The segment size is the size of the archived segment files themselves
(every segment of a cluster has wal_segment_size bytes), so clusters initialised with another size work.

The recovery window of a target runs from the end of the oldest succeeded physical base backup from
which archived WAL is continuous, to the last commit in the last segment of that continuous run. A gap
ends a window: the WAL after it can only be used from a base backup taken after it.
Timeline switches are not followed yet: a window ends where its base backup's timeline's WAL ends.
"""
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db.models import Count, Max, Sum
from django.utils import timezone

from apps.backups import wal_names
from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus, WalSegment
from apps.databases.models import DatabaseTarget

BASE_BACKUP_FORMATS = (BackupFormat.BASEBACKUP, BackupFormat.FILES)
BASE_BACKUP_KINDS = (BackupKind.FULL, BackupKind.INCREMENTAL)


@dataclass(frozen=True)
class SegmentRange:
    """Segments first..last of one timeline, all archived."""

    timeline: int
    first: str
    last: str
    start_lsn: int
    end_lsn: int  # exclusive: where the segment after `last` starts
    segments: int
    last_commit_at: datetime | None

    def as_dict(self) -> dict:
        return {**asdict(self), "start_lsn": wal_names.format_lsn(self.start_lsn),
                "end_lsn": wal_names.format_lsn(self.end_lsn)}


@dataclass(frozen=True)
class Gap:
    """Segments missing between two archived ranges of a timeline."""

    timeline: int
    first_missing: str
    last_missing: str
    missing: int
    start_lsn: int
    end_lsn: int  # exclusive

    def as_dict(self) -> dict:
        return {**asdict(self), "start_lsn": wal_names.format_lsn(self.start_lsn),
                "end_lsn": wal_names.format_lsn(self.end_lsn)}


@dataclass(frozen=True)
class Span:
    """What can be recovered from one continuous stretch of WAL: from its oldest base backup to its last commit."""

    base_backup_id: str
    timeline: int
    earliest_at: datetime | None  # when that base backup ended: recovery is consistent from there
    earliest_lsn: int
    latest_at: datetime | None  # the last commit archived in the stretch
    latest_lsn: int  # end of the stretch's last archived segment

    def as_dict(self) -> dict:
        return {**asdict(self), "earliest_lsn": wal_names.format_lsn(self.earliest_lsn),
                "latest_lsn": wal_names.format_lsn(self.latest_lsn)}


@dataclass(frozen=True)
class RecoveryWindow:
    """The window reaching the newest archived WAL (`spans[-1]`), older disjoint spans, gaps, and why not."""

    target: str
    spans: list[Span] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    unusable_backups: dict[str, str] = field(default_factory=dict)  # backup id -> why no WAL serves it

    @property
    def current(self) -> Span | None:
        return self.spans[-1] if self.spans else None

    def as_dict(self) -> dict:
        cur = self.current
        return {
            "target": self.target,
            "recoverable": cur is not None,
            "earliest_at": cur.earliest_at if cur else None,
            "earliest_lsn": wal_names.format_lsn(cur.earliest_lsn) if cur else None,
            "latest_at": cur.latest_at if cur else None,
            "latest_lsn": wal_names.format_lsn(cur.latest_lsn) if cur else None,
            "base_backup_id": cur.base_backup_id if cur else None,
            "timeline": cur.timeline if cur else None,
            "spans": [s.as_dict() for s in self.spans],
            "gaps": [g.as_dict() for g in self.gaps],
            "unusable_backups": self.unusable_backups,
        }


def _segment_rows(target: DatabaseTarget):
    """(parsed name, last_commit_at, size_raw) of every archived whole segment, in name order."""
    rows = WalSegment.objects.filter(database_target=target).exclude(start_lsn="").order_by("name").values_list(
        "name", "last_commit_at", "size_raw")
    for name, last_commit, size in rows.iterator():
        wal = wal_names.parse(name)
        if wal.is_segment:  # a .partial is the unfinished copy of a segment the next timeline holds
            yield wal, last_commit, size


def segment_size(target: DatabaseTarget) -> int:
    """The target's wal_segment_size, as the archived segments have it (16 MB before any is archived)."""
    size = WalSegment.objects.filter(database_target=target).exclude(start_lsn="").values_list(
        "size_raw", flat=True).first()
    return size or wal_names.DEFAULT_SEGMENT_SIZE


def segment_ranges(target: DatabaseTarget) -> dict[int, list[SegmentRange]]:
    """Contiguous runs of archived segments per timeline, in LSN order."""
    size = segment_size(target)
    ranges: dict[int, list[SegmentRange]] = {}
    run = None  # [timeline, first wal, last wal, first segno, last segno, count, last commit]
    for wal, last_commit, _ in _segment_rows(target):
        segno = wal.segno(size)
        if run and run[0] == wal.timeline and segno == run[4] + 1:
            run[2], run[4], run[5] = wal, segno, run[5] + 1
            run[6] = _later(run[6], last_commit)
            continue
        if run:
            ranges.setdefault(run[0], []).append(_range(run, size))
        run = [wal.timeline, wal, wal, segno, segno, 1, last_commit]
    if run:
        ranges.setdefault(run[0], []).append(_range(run, size))
    return ranges


def gaps(target: DatabaseTarget, ranges: dict[int, list[SegmentRange]] | None = None) -> list[Gap]:
    """Segments missing between archived ones, per timeline (before the first archived one is not a gap)."""
    size = segment_size(target)
    ranges = segment_ranges(target) if ranges is None else ranges
    found = []
    for tli, runs in sorted(ranges.items()):
        for before, after in zip(runs, runs[1:]):
            first, last = before.end_lsn // size, after.start_lsn // size - 1
            found.append(Gap(timeline=tli, first_missing=wal_names.segment_name(tli, first, size),
                             last_missing=wal_names.segment_name(tli, last, size), missing=last - first + 1,
                             start_lsn=before.end_lsn, end_lsn=after.start_lsn))
    return found


def base_backups(target: DatabaseTarget):
    """Succeeded physical base backups (full or incremental) with their LSNs, oldest first."""
    return (Backup.objects.filter(database_target=target, status=BackupStatus.SUCCEEDED,
                                  format__in=BASE_BACKUP_FORMATS, kind__in=BASE_BACKUP_KINDS)
            .exclude(lsn_start="").exclude(lsn_stop="").order_by("finished_at", "created_at"))


@dataclass(frozen=True)
class Reach:
    """How far archived WAL carries a recovery that starts from one base backup."""

    latest_at: datetime | None  # the last commit archived in the stretch (None: no commit after the backup)
    latest_lsn: int  # end of the stretch's last archived segment
    gap: Gap | None  # the gap that ends the stretch, if any


class Unreachable(Exception):
    """The WAL a base backup needs to become consistent is not all archived."""


def reach_from(target: DatabaseTarget, backup: Backup, *, ranges=None, commits=None) -> Reach:
    """The continuous stretch of archived WAL that starts at `backup` (raises Unreachable if there is none)."""
    ranges = segment_ranges(target) if ranges is None else ranges
    size = segment_size(target)
    commits = _commit_times(target, size) if commits is None else commits
    tli = backup.timeline or 1
    start, stop = wal_names.parse_lsn(backup.lsn_start), wal_names.parse_lsn(backup.lsn_stop)
    run = next((r for r in ranges.get(tli, []) if r.start_lsn <= start < r.end_lsn), None)
    if run is None:
        raise Unreachable(f"the segment holding its start ({backup.lsn_start}, timeline {tli}) is not archived")
    if run.end_lsn < stop:
        raise Unreachable(f"WAL up to its end ({backup.lsn_stop}) is not all archived")
    last = max((t for segno, t in commits.get(tli, {}).items()
                if stop // size <= segno < run.end_lsn // size and t), default=None)
    gap = next((g for g in gaps(target, ranges) if g.timeline == tli and g.start_lsn == run.end_lsn), None)
    return Reach(latest_at=last, latest_lsn=run.end_lsn, gap=gap)


def recovery_window(target: DatabaseTarget) -> RecoveryWindow:
    """From the oldest base backup with continuous WAL after it, to the last commit archived after it."""
    ranges = segment_ranges(target)
    commits = _commit_times(target, segment_size(target))
    spans: dict[tuple[int, int], Span] = {}  # (timeline, stretch end) -> span of the oldest backup in it
    unusable = {}
    for backup in base_backups(target):
        try:
            reach = reach_from(target, backup, ranges=ranges, commits=commits)
        except Unreachable as exc:
            unusable[backup.pk] = str(exc)
            continue
        tli = backup.timeline or 1
        if (tli, reach.latest_lsn) in spans:
            continue  # an older backup already starts this stretch
        earliest_at, last = backup.finished_at, reach.latest_at
        spans[(tli, reach.latest_lsn)] = Span(
            base_backup_id=backup.pk, timeline=tli, earliest_at=earliest_at,
            earliest_lsn=wal_names.parse_lsn(backup.lsn_stop),
            latest_at=last if last and (earliest_at is None or last > earliest_at) else earliest_at,
            latest_lsn=reach.latest_lsn,
        )
    ordered = sorted(spans.values(), key=lambda s: (s.latest_lsn, s.timeline))
    return RecoveryWindow(target=target.name, spans=ordered, gaps=gaps(target, ranges), unusable_backups=unusable)


def archive_status(target: DatabaseTarget, *, now: datetime | None = None) -> dict:
    """Archived ranges and gaps per timeline, the newest archived file and commit, and how old they are."""
    now = now or timezone.now()
    ranges = segment_ranges(target)
    found_gaps = gaps(target, ranges)
    agg = WalSegment.objects.filter(database_target=target).aggregate(
        files=Count("pk"), stored=Sum("size_stored"), last_archived_at=Max("created_at"),
        last_commit_at=Max("last_commit_at"))
    newest = WalSegment.objects.filter(database_target=target).order_by("-created_at").values_list(
        "name", flat=True).first()
    return {
        "target": target.name,
        "wal_archiving": target.wal_archiving,
        "segment_size": segment_size(target),
        "files": agg["files"],
        "stored_bytes": agg["stored"] or 0,
        "timelines": {
            tli: {"ranges": [r.as_dict() for r in runs], "gaps": [g.as_dict() for g in found_gaps if g.timeline == tli]}
            for tli, runs in sorted(ranges.items())
        },
        "gaps": len(found_gaps),
        "last_archived": newest,
        "last_archived_at": agg["last_archived_at"],
        "last_commit_at": agg["last_commit_at"],
        # Time since a file last arrived: with archive_timeout = 60 this stays under ~60 s while the database is
        # written to; an idle database archives nothing, so a large value is a warning, not proof of a failure.
        "archive_lag_seconds": _seconds(now, agg["last_archived_at"]),
        # Time since the newest commit the archive holds: what a disaster now would lose at most, if the
        # database was written to since.
        "last_commit_age_seconds": _seconds(now, agg["last_commit_at"]),
    }


def _commit_times(target: DatabaseTarget, size: int) -> dict[int, dict[int, datetime | None]]:
    times: dict[int, dict[int, datetime | None]] = {}
    for wal, last_commit, _ in _segment_rows(target):
        times.setdefault(wal.timeline, {})[wal.segno(size)] = last_commit
    return times


def _range(run: list, size: int) -> SegmentRange:
    tli, first, last, first_no, last_no, count, last_commit = run
    return SegmentRange(timeline=tli, first=first.name, last=last.name, start_lsn=first_no * size,
                        end_lsn=(last_no + 1) * size, segments=count, last_commit_at=last_commit)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _seconds(now: datetime, then: datetime | None) -> float | None:
    return round((now - then).total_seconds(), 3) if then else None
