"""What a rule is: a class that reads the catalog and yields the conditions that hold now.

A rule never writes. The engine (apps/monitoring/engine.py) turns its conditions into alerts: one per
fingerprint, counted by occurrence, resolved when the rule stops yielding it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Iterator

from apps.monitoring.registration import register


@dataclass(frozen=True)
class Condition:
    fingerprint: str  # the same problem, the same fingerprint (e.g. "backup_failed:target:3")
    target: str  # name of what it is about: a target, a location, a document source
    message: str
    occurrence: str = ""  # what makes this one new (e.g. the failed backup's id): a new one adds to the count
    details: dict[str, Any] = field(default_factory=dict)
    database_target_id: int | None = None
    severity: str = ""  # empty: the rule's


class Rule:
    type: ClassVar[str] = ""
    label: ClassVar[str] = ""
    severity: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}  # built-in thresholds; AlertRule rows override them
    _types: ClassVar[dict[str, type["Rule"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(Rule._types, cls.type, cls, "alert rules")

    def __init__(self, thresholds):
        self.thresholds = thresholds  # apps.monitoring.thresholds.Thresholds

    def evaluate(self, *, now: datetime) -> Iterator[Condition]:
        raise NotImplementedError

    def params(self, *, target=None, location=None) -> dict | None:
        """This type's thresholds for one target or location; None when a rule row turns it off there."""
        return self.thresholds.lookup(self, target=target, location=location)


def all_rules() -> dict[str, type[Rule]]:
    return dict(Rule._types)


def get(rule_type: str) -> type[Rule]:
    return Rule._types[rule_type]
