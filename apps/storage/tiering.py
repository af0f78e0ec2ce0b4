"""Tier rules: which storage class / access tier an object should be in, by age.

A location's `tier_rules` is a list of {"after_days": N, "tier": NAME}; an empty list means the defaults of its
kind below (DESIGN §6 and the seed), and ["off"] means no tiering. An object moves only to a colder tier, never
back: the rule with the largest after_days not above the object's age names its tier.
"""
from apps.core.errors import UserError

DEFAULT_RULES = {
    "s3": [{"after_days": 30, "tier": "STANDARD_IA"}, {"after_days": 90, "tier": "GLACIER"}],
    "azure": [{"after_days": 30, "tier": "Cool"}],
    "gcs": [{"after_days": 30, "tier": "NEARLINE"}, {"after_days": 90, "tier": "COLDLINE"}],
}
OFF = ["off"]

# Coldness per kind (unknown names sort as the warmest, so a rule never moves an object "up" by accident).
ORDER = {
    "s3": ["STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"],
    "azure": ["Hot", "Cool", "Cold", "Archive"],
    "gcs": ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"],
}


def check_rules(rules, *, kind: str) -> None:
    if rules in ([], OFF):
        return
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise UserError('tier_rules must be a list of {"after_days": N, "tier": NAME} (or ["off"]).')
    if kind not in ORDER:
        raise UserError(f"{kind} storage has no tiers; leave tier_rules empty.")
    for rule in rules:
        days, tier = rule.get("after_days"), rule.get("tier")
        if set(rule) != {"after_days", "tier"} or not isinstance(days, int) or days < 1:
            raise UserError('Each tier rule is {"after_days": N (a whole number of days, at least 1), '
                            '"tier": NAME}.')
        if _normal(kind, tier) is None:
            raise UserError(f"Unknown {kind} tier {tier!r}; known: {', '.join(ORDER[kind])}.")


def rules_for(location) -> list[dict]:
    if location.tier_rules == OFF:
        return []
    rules = location.tier_rules or DEFAULT_RULES.get(location.kind, [])
    return sorted(rules, key=lambda r: r["after_days"])


def due_tier(location, age_days: float) -> str | None:
    """The tier an object of this age belongs in, or None when no rule applies yet."""
    tier = None
    for rule in rules_for(location):
        if age_days >= rule["after_days"]:
            tier = _normal(location.kind, rule["tier"])
    return tier


def colder(kind: str, new: str, current: str) -> bool:
    order = ORDER.get(kind, [])
    rank = {name: i for i, name in enumerate(order)}
    return rank.get(_normal(kind, new) or "", -1) > rank.get(_normal(kind, current or order[0]) or "", 0)


def _normal(kind: str, tier) -> str | None:
    if not isinstance(tier, str):
        return None
    for name in ORDER.get(kind, []):
        if name.lower() == tier.lower():
            return name
    return None
