"""The retention decision, from plain data only: no database, no storage, no clock of its own.

Given every succeeded backup of a target (as `BackupFacts`), the archived WAL segments (`WalFacts`), the
target's `Rules` and `now`, `plan()` says for each backup keep / archive / delete and which rule decided,
and which WAL segments may go. The same input always gives the same answer (calendar in UTC, ties broken
by id), so a dry run and the real run agree, and the service (apps/retention/services.py) only applies it.

Grandfather-father-son, the seed's table:

    daily full      kept while younger than `daily_days` (30)           then delete
    incremental     kept while younger than `incremental_days` (7)       then delete
    weekly          the first full of each ISO week, `weekly_weeks` (12)  then delete
    monthly         the first full of each month, `monthly_months` (12)   then archive (or delete)
    archive         an archived monthly, `archive_years` (7)              then delete

A backup that several rules keep is reported under the longest-lived of them. Then the protections, which
only ever turn a delete into a keep: a legal hold; the newest `keep_last_fulls` fulls of the target (3);
the base backup the PITR window of `pitr_window_days` (30) starts from; and every backup a kept (or
archived) incremental depends on, down to its full. WAL segments that end before the start of the PITR
base backup are no longer needed by the window and may be deleted.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

KEEP, ARCHIVE, DELETE = "keep", "archive", "delete"
FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class Rules:
    name: str = "default"
    daily_days: int = 30
    incremental_days: int = 7
    weekly_weeks: int = 12
    monthly_months: int = 12
    monthly_then: str = ARCHIVE  # what happens to a monthly after monthly_months: archive or delete
    archive_years: int = 7
    keep_last_fulls: int = 3
    pitr_window_days: int = 30
    enabled: bool = True


@dataclass(frozen=True)
class BackupFacts:
    id: str
    target: str
    kind: str  # full, incremental; any other kind is not governed by retention (kept)
    taken_at: datetime  # when it finished, UTC-aware
    parent_id: str | None = None
    legal_hold: bool = False
    archived: bool = False
    physical: bool = False  # a base backup that PITR can start from
    lsn_start: int | None = None
    timeline: int | None = None
    size: int = 0


@dataclass(frozen=True)
class WalFacts:
    name: str
    timeline: int
    start_lsn: int
    size: int  # the segment size (the raw size of a whole segment)


@dataclass(frozen=True)
class Decision:
    backup_id: str
    target: str
    action: str  # keep, archive, delete
    rule: str  # the RetentionRule's name
    reason: str  # which part of it decided, e.g. "weekly (12 w)" or "legal hold"
    size: int = 0

    def as_dict(self) -> dict:
        return {"backup_id": self.backup_id, "target": self.target, "action": self.action, "rule": self.rule,
                "reason": self.reason, "size": self.size}


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)
    wal_deletions: dict[str, list[str]] = field(default_factory=dict)  # target -> segment names
    pitr_bases: dict[str, str | None] = field(default_factory=dict)  # target -> base backup id

    def by_action(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]


def add_months(when: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months later (the month's last day when it is shorter)."""
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    days = [31, 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30,
            31, 30, 31][month - 1]
    return when.replace(year=year, month=month, day=min(when.day, days))


def _firsts(fulls: list[BackupFacts], key) -> set[str]:
    """Ids of the first full (oldest, then smallest id) of each calendar period `key(taken_at)`."""
    first: dict = {}
    for b in fulls:
        k = key(b.taken_at)
        if k not in first or (b.taken_at, b.id) < (first[k].taken_at, first[k].id):
            first[k] = b
    return {b.id for b in first.values()}


def _base_decision(b: BackupFacts, *, rules: Rules, now: datetime, weekly: set[str], monthly: set[str]) -> tuple[str, str]:
    age = now - b.taken_at
    if b.kind == INCREMENTAL:
        if age < timedelta(days=rules.incremental_days):
            return KEEP, f"incremental ({rules.incremental_days} d)"
        return DELETE, f"incremental older than {rules.incremental_days} d"
    # A full: the longest-lived rule that applies names the decision.
    if b.id in monthly:
        if now < add_months(b.taken_at, rules.monthly_months):
            return KEEP, f"monthly ({rules.monthly_months} mo)"
        if rules.monthly_then == ARCHIVE:
            if now < add_months(b.taken_at, 12 * rules.archive_years):
                return (KEEP if b.archived else ARCHIVE), f"archive ({rules.archive_years} y)"
            return DELETE, f"archive older than {rules.archive_years} y"
    if b.id in weekly and age < timedelta(weeks=rules.weekly_weeks):
        return KEEP, f"weekly ({rules.weekly_weeks} w)"
    if age < timedelta(days=rules.daily_days):
        return KEEP, f"daily full ({rules.daily_days} d)"
    return DELETE, f"full older than {rules.daily_days} d and not a kept weekly or monthly"


def pitr_base(backups: list[BackupFacts], *, rules: Rules, now: datetime) -> BackupFacts | None:
    """The base backup the PITR window starts from: the newest one finished at or before the window's start,
    else (a history shorter than the window) the oldest one."""
    bases = sorted((b for b in backups if b.physical and b.lsn_start is not None), key=lambda b: (b.taken_at, b.id))
    if not bases:
        return None
    start = now - timedelta(days=rules.pitr_window_days)
    before = [b for b in bases if b.taken_at <= start]
    return before[-1] if before else bases[0]


def plan_target(backups: list[BackupFacts], *, rules: Rules, now: datetime,
                wal: list[WalFacts] | None = None) -> Plan:
    """Decisions for the backups of one target (all of one target, succeeded, not deleted)."""
    plan = Plan()
    if not backups:
        return plan
    target = backups[0].target
    if not rules.enabled:
        plan.decisions = [Decision(b.id, target, KEEP, rules.name, "retention off", b.size)
                          for b in sorted(backups, key=lambda b: (b.taken_at, b.id))]
        return plan
    by_id = {b.id: b for b in backups}
    fulls = sorted((b for b in backups if b.kind == FULL), key=lambda b: (b.taken_at, b.id))
    weekly = _firsts(fulls, lambda t: t.isocalendar()[:2])
    monthly = _firsts(fulls, lambda t: (t.year, t.month))
    decided: dict[str, tuple[str, str]] = {}
    for b in backups:
        if b.kind not in (FULL, INCREMENTAL):
            decided[b.id] = (KEEP, f"{b.kind} backups are not governed by retention")
        else:
            decided[b.id] = _base_decision(b, rules=rules, now=now, weekly=weekly, monthly=monthly)

    def protect(backup_id: str, reason: str) -> None:
        if decided[backup_id][0] == DELETE:
            decided[backup_id] = (KEEP, reason)

    for b in backups:
        if b.legal_hold:
            decided[b.id] = (KEEP, "legal hold")
    for b in fulls[-rules.keep_last_fulls:] if rules.keep_last_fulls > 0 else []:
        protect(b.id, f"one of the last {rules.keep_last_fulls} fulls")
    base = pitr_base(backups, rules=rules, now=now) if wal else None
    plan.pitr_bases[target] = base.id if base else None
    if base is not None:
        protect(base.id, f"PITR window base ({rules.pitr_window_days} d)")
    # Chains: whatever a kept or archived incremental is built on stays (newest first, so a protected link's
    # own parents are reached through it).
    for b in sorted(backups, key=lambda b: (b.taken_at, b.id), reverse=True):
        if b.kind != INCREMENTAL or decided[b.id][0] == DELETE:
            continue
        link, seen = b.parent_id, set()
        while link is not None and link in by_id and link not in seen:
            seen.add(link)
            protect(link, f"needed by kept incremental {b.id}")
            link = by_id[link].parent_id
    plan.decisions = [Decision(b.id, target, decided[b.id][0], rules.name, decided[b.id][1], b.size)
                      for b in sorted(backups, key=lambda b: (b.taken_at, b.id))]
    if base is not None and wal:
        plan.wal_deletions[target] = sorted(
            w.name for w in wal
            if w.timeline <= (base.timeline or 1) and w.start_lsn + w.size <= base.lsn_start
        )
    return plan


def plan(backups: list[BackupFacts], *, rules_for, now: datetime,
         wal: dict[str, list[WalFacts]] | None = None) -> Plan:
    """Decisions for every target: `rules_for(target)` gives each target's Rules."""
    grouped: dict[str, list[BackupFacts]] = defaultdict(list)
    for b in backups:
        grouped[b.target].append(b)
    total = Plan()
    for target in sorted(grouped):
        part = plan_target(grouped[target], rules=rules_for(target), now=now, wal=(wal or {}).get(target))
        total.decisions += part.decisions
        total.wal_deletions.update(part.wal_deletions)
        total.pitr_bases.update(part.pitr_bases)
    return total
