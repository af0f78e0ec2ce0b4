"""A synthetic backup history for the retention tests, and an independent calculation of what should stay.

Physical targets: a full every day at 02:00 UTC and an incremental every 6 hours (00, 06, 12, 18), each
incremental built on the target's previous physical backup; a WAL segment per 6 hours, and each backup's
start LSN inside the segment of its time. Logical targets: a full every day at 02:00. All with fake
timestamps, `days` back from NOW.

`expected()` is written without the policy module: calendar periods from date arithmetic, chains by walking
parents, so a mistake in one is not repeated in the other.
"""
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SEGMENT = 16 * 1024 * 1024


@dataclass
class Item:
    id: str
    target: str
    kind: str
    taken_at: datetime
    parent_id: str | None
    physical: bool
    lsn_start: int | None
    legal_hold: bool = False
    size: int = 1000


def build(targets: dict[str, str], *, days: int = 400, now: datetime = NOW) -> tuple[list[Item], dict[str, list]]:
    """targets: name -> "physical" | "logical". Returns (items oldest first, {target: [(segment name, start lsn)]})."""
    items, wal = [], {}
    start = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    periods = int((now - start) / timedelta(hours=6)) + 1
    schedule = [(0, "incremental"), (2, "full"), (6, "incremental"), (12, "incremental"), (18, "incremental")]
    counter = 0
    for name, method in targets.items():
        last_physical = None
        wal[name] = [(f"00000001{p >> 8:08X}{p & 0xFF:08X}", p * SEGMENT) for p in range(periods)] \
            if method == "physical" else []
        day = start
        while day <= now:
            for hour, kind in schedule:
                taken = day + timedelta(hours=hour, minutes=10)
                if taken > now or (kind == "incremental" and (method != "physical" or last_physical is None)):
                    continue
                counter += 1
                segno = int((taken - start) / timedelta(hours=6))
                # ULID-shaped (26 Crockford characters), as real backup ids, so console links work.
                item = Item(id=hashlib.md5(name.encode()).hexdigest()[:8].upper() + f"{counter:018d}", target=name, kind=kind, taken_at=taken,
                            parent_id=last_physical if kind == "incremental" else None,
                            physical=method == "physical",
                            lsn_start=segno * SEGMENT + 4096 if method == "physical" else None)
                items.append(item)
                if method == "physical":
                    last_physical = item.id
            day += timedelta(days=1)
    return items, wal


def _months_later(t: datetime, n: int) -> datetime:
    y, m = t.year + (t.month - 1 + n) // 12, (t.month - 1 + n) % 12 + 1
    for day in (t.day, 30, 29, 28):
        try:
            return t.replace(year=y, month=m, day=day)
        except ValueError:
            continue
    raise AssertionError


def expected(items: list[Item], wal: dict[str, list], *, now: datetime = NOW, daily=30, incr=7, weeks=12,
             months=12, years=7, last_fulls=3, pitr_days=30, archived: set[str] = frozenset()):
    """(keep ids, archive ids, delete ids, {target: WAL names to delete}) by the seed's rules."""
    keep, archive, delete, wal_delete = set(), set(), set(), {}
    for target in sorted({i.target for i in items}):
        mine = [i for i in items if i.target == target]
        fulls = sorted((i for i in mine if i.kind == "full"), key=lambda i: (i.taken_at, i.id))
        first_of_week, first_of_month = {}, {}
        for f in fulls:
            y, w, _ = f.taken_at.isocalendar()
            first_of_week.setdefault((y, w), f.id)
            first_of_month.setdefault((f.taken_at.year, f.taken_at.month), f.id)
        weekly, monthly = set(first_of_week.values()), set(first_of_month.values())
        verdict = {}
        for i in mine:
            age = now - i.taken_at
            if i.kind == "incremental":
                verdict[i.id] = "keep" if age < timedelta(days=incr) else "delete"
            elif i.id in monthly and _months_later(i.taken_at, months) > now:
                verdict[i.id] = "keep"
            elif i.id in monthly and _months_later(i.taken_at, 12 * years) > now:
                verdict[i.id] = "keep" if i.id in archived else "archive"
            elif i.id in weekly and age < timedelta(days=7 * weeks):
                verdict[i.id] = "keep"
            elif age < timedelta(days=daily) and i.id not in monthly:
                verdict[i.id] = "keep"
            else:
                verdict[i.id] = "delete"
        rescued = {i.id for i in mine if i.legal_hold} | {f.id for f in fulls[-last_fulls:]}
        bases = sorted((i for i in mine if i.physical), key=lambda i: (i.taken_at, i.id))
        base = None
        if bases and wal.get(target):
            before = [b for b in bases if b.taken_at <= now - timedelta(days=pitr_days)]
            base = before[-1] if before else bases[0]
            rescued.add(base.id)
            wal_delete[target] = sorted(n for n, lsn in wal[target] if lsn + SEGMENT <= base.lsn_start)
        for i in mine:
            if i.id in rescued and verdict[i.id] == "delete":
                verdict[i.id] = "keep"
        by_id = {i.id: i for i in mine}
        for i in mine:
            if i.kind == "incremental" and verdict[i.id] != "delete":
                p = i.parent_id
                while p:
                    if verdict[p] == "delete":
                        verdict[p] = "keep"
                    p = by_id[p].parent_id
        for bid, v in verdict.items():
            {"keep": keep, "archive": archive, "delete": delete}[v].add(bid)
    return keep, archive, delete, wal_delete
