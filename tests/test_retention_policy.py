"""The retention decision alone (apps/retention/policy.py), on plain data: a 400-day synthetic history of several
targets under the seed's rules, checked against the independent calculation in tests/retention_history.py."""
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from apps.retention import policy
from tests.retention_history import NOW, SEGMENT, build, expected


def facts(items, archived=frozenset()):
    return [policy.BackupFacts(id=i.id, target=i.target, kind=i.kind, taken_at=i.taken_at, parent_id=i.parent_id,
                               legal_hold=i.legal_hold, archived=i.id in archived, physical=i.physical,
                               lsn_start=i.lsn_start, timeline=1 if i.physical else None, size=i.size)
            for i in items]


def wal_facts(wal):
    return {t: [policy.WalFacts(name=n, timeline=1, start_lsn=lsn, size=SEGMENT) for n, lsn in segs]
            for t, segs in wal.items()}


def run(items, wal, rules=policy.Rules(), now=NOW, archived=frozenset()):
    return policy.plan(facts(items, archived), rules_for=lambda _t: rules, now=now, wal=wal_facts(wal))


def split(plan):
    return ({d.backup_id for d in plan.by_action("keep")}, {d.backup_id for d in plan.by_action("archive")},
            {d.backup_id for d in plan.by_action("delete")})


TARGETS = {"alpha": "physical", "beta": "logical", "gamma": "physical"}


def test_400_days_of_history_keep_exactly_the_expected_backups_and_wal():
    items, wal = build(TARGETS, days=400)
    wal["gamma"] = []  # gamma archives no WAL: no PITR window to protect
    assert len(items) > 4000
    plan = run(items, wal)
    keep, archive, delete, wal_delete = expected(items, wal)
    assert split(plan) == (keep, archive, delete)
    assert plan.wal_deletions == {t: names for t, names in wal_delete.items()}
    # What the history says in numbers, per target: 30 dailies, 12 weeklies, 12 monthlies (some overlap).
    beta = {d.backup_id: d for d in plan.decisions if d.target == "beta"}
    kept = [d for d in beta.values() if d.action == "keep"]
    assert 30 <= len(kept) <= 30 + 12 + 12
    assert {d.reason for d in kept} == {"daily full (30 d)", "weekly (12 w)", "monthly (12 mo)"}
    assert {d.reason for d in beta.values() if d.action == "archive"} == {"archive (7 y)"}
    assert len([d for d in beta.values() if d.action == "archive"]) in (1, 2)  # 400 d = 13 months: the oldest
    # Incrementals: only the last 7 days' (4 a day), plus what the PITR base of alpha needs.
    alpha_incr = [d for d in plan.decisions if d.target == "alpha" and d.backup_id in
                  {i.id for i in items if i.kind == "incremental"} and d.action == "keep"]
    assert 7 * 4 <= len(alpha_incr) <= 7 * 4 + 5
    gamma_incr_kept = [d for d in plan.decisions if d.target == "gamma" and d.action == "keep" and
                       d.reason.startswith("incremental")]
    assert len(gamma_incr_kept) in (28, 29)
    # The same history gives the same answer, in any order.
    assert run(list(reversed(items)), wal).decisions == plan.decisions


def test_the_pitr_window_keeps_its_base_backup_and_chain_and_frees_older_wal():
    items, wal = build({"alpha": "physical"}, days=60)
    plan = run(items, wal)
    base_id = plan.pitr_bases["alpha"]
    base = next(i for i in items if i.id == base_id)
    assert NOW - timedelta(days=30, hours=6) <= base.taken_at <= NOW - timedelta(days=30)
    decision = {d.backup_id: d for d in plan.decisions}
    assert decision[base_id].action == "keep" and decision[base_id].reason.startswith("PITR window base")
    # The base is an incremental (the newest backup before the window): its chain, down to its full, stays.
    link = base
    while link.parent_id:
        link = next(i for i in items if i.id == link.parent_id)
        assert decision[link.id].action == "keep"
    assert link.kind == "full"
    # WAL: every segment that ends before the base's start goes, none after.
    gone = set(plan.wal_deletions["alpha"])
    for name, lsn in wal["alpha"]:
        assert (name in gone) == (lsn + SEGMENT <= base.lsn_start)
    assert gone and len(gone) < len(wal["alpha"])


def test_legal_hold_and_dependency_chains_protect_old_backups():
    items, wal = build({"alpha": "physical"}, days=90)
    old_incr = next(i for i in items if i.kind == "incremental" and NOW - i.taken_at > timedelta(days=60)
                    and i.taken_at.hour == 18)
    old_incr.legal_hold = True
    plan = run(items, {"alpha": []})
    decision = {d.backup_id: d for d in plan.decisions}
    assert decision[old_incr.id].action == "keep" and decision[old_incr.id].reason == "legal hold"
    chain = []
    link = old_incr
    while link.parent_id:
        link = next(i for i in items if i.id == link.parent_id)
        chain.append(link)
    assert [c.kind for c in chain] == ["incremental", "incremental", "full"]
    for c in chain:
        assert decision[c.id].action == "keep", decision[c.id]
    assert decision[chain[0].id].reason == f"needed by kept incremental {old_incr.id}"
    # The next day's incrementals do not depend on it: they go.
    later = [i for i in items if i.parent_id == old_incr.id]
    assert all(decision[i.id].action == "delete" for i in later)
    keep, archive, delete, _ = expected(items, {"alpha": []})
    assert split(plan) == (keep, archive, delete)


def test_the_last_fulls_survive_a_target_that_stopped_backing_up():
    items, _ = build({"beta": "logical"}, days=100)
    stopped = NOW + timedelta(days=200)  # nothing new for 200 days: every daily is old
    plan = run(items, {}, now=stopped)
    kept = [d for d in plan.decisions if d.action == "keep"]
    newest = sorted(items, key=lambda i: i.taken_at)[-3:]
    assert {i.id for i in newest} <= {d.backup_id for d in kept}
    assert all(d.reason == "one of the last 3 fulls" for d in kept if d.backup_id in {i.id for i in newest[1:]})
    keep, archive, delete, _ = expected(items, {}, now=stopped)
    assert split(plan) == (keep, archive, delete)


def test_archived_monthlies_are_kept_seven_years_then_deleted():
    items, _ = build({"beta": "logical"}, days=40)
    monthly = min((i for i in items if i.kind == "full"), key=lambda i: i.taken_at)
    archived = {monthly.id}
    in_six_years = run(items, {}, now=NOW + timedelta(days=6 * 365), archived=archived)
    d = {x.backup_id: x for x in in_six_years.decisions}[monthly.id]
    assert (d.action, d.reason) == ("keep", "archive (7 y)")
    in_eight_years = run(items, {}, now=NOW + timedelta(days=8 * 365), archived=archived)
    d = {x.backup_id: x for x in in_eight_years.decisions}[monthly.id]
    assert d.action == "delete" or d.reason == "one of the last 3 fulls"


def test_calendar_is_utc_and_deterministic_at_week_and_month_boundaries():
    sunday_late = datetime(2026, 8, 2, 23, 59, tzinfo=UTC)  # ISO week 31 (Sunday) / August
    monday_early = datetime(2026, 8, 3, 0, 1, tzinfo=UTC)  # ISO week 32
    b = [policy.BackupFacts(id="b1", target="t", kind="full", taken_at=sunday_late),
         policy.BackupFacts(id="b2", target="t", kind="full", taken_at=monday_early),
         policy.BackupFacts(id="b0", target="t", kind="full", taken_at=datetime(2026, 7, 31, 12, tzinfo=UTC))]
    rules = replace(policy.Rules(), keep_last_fulls=0, daily_days=0)
    plan = policy.plan_target(b, rules=rules, now=datetime(2026, 9, 1, tzinfo=UTC))
    reasons = {d.backup_id: d.reason for d in plan.decisions}
    assert reasons == {"b0": "monthly (12 mo)", "b1": "monthly (12 mo)", "b2": "weekly (12 w)"}
    assert policy.add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert policy.add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    off = policy.plan_target(b, rules=replace(rules, enabled=False), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert {d.action for d in off.decisions} == {"keep"}
