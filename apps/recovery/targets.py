"""What a point-in-time recovery aims at: a time, an LSN or a named restore point, checked as user input."""
import re
from dataclasses import dataclass
from datetime import datetime

from django.utils.dateparse import parse_datetime

from apps.core.errors import UserError
from apps.databases import lsn as lsns

# pg_create_restore_point() takes up to 63 bytes; the name is written into postgresql.auto.conf, so
# only plain characters are accepted (no quotes, backslashes or control characters to escape).
_RESTORE_POINT = re.compile(r"^[A-Za-z0-9_.:@+-][A-Za-z0-9_.:@+ -]{0,62}$")


@dataclass(frozen=True)
class RecoveryTarget:
    time: datetime | None = None
    lsn: str = ""
    name: str = ""
    inclusive: bool = True

    @property
    def lsn_value(self) -> int | None:
        return lsns.parse(self.lsn) if self.lsn else None

    def settings(self) -> dict[str, str]:
        """recovery_target_* settings (unquoted values) for postgresql.auto.conf."""
        out: dict[str, str] = {}
        if self.time:
            out["recovery_target_time"] = self.time.isoformat(sep=" ")
        elif self.lsn:
            out["recovery_target_lsn"] = self.lsn
        elif self.name:
            out["recovery_target_name"] = self.name
        if out:
            out["recovery_target_inclusive"] = "on" if self.inclusive else "off"
        return out

    def describe(self) -> str:
        if self.time:
            return f"time {self.time.isoformat()}"
        if self.lsn:
            return f"LSN {self.lsn}"
        if self.name:
            return f"restore point {self.name!r}"
        return "the end of the archived WAL"


def parse_target(*, time: str | datetime | None = None, lsn: str | None = None, name: str | None = None,
                 inclusive: bool = True) -> RecoveryTarget:
    """Exactly one of time / LSN / restore point name, or none (recover to the end of the archive)."""
    given = [v for v in (time, lsn, name) if v not in (None, "")]
    if len(given) > 1:
        raise UserError("Give one recovery target: a time, an LSN or a restore point name, not several.")
    if time not in (None, ""):
        when = time if isinstance(time, datetime) else parse_datetime(str(time).strip())
        if when is None:
            raise UserError(f"{time!r} is not a time; use ISO 8601 with a UTC offset, e.g. '2026-11-25 12:00:00+00'.")
        if when.tzinfo is None or when.utcoffset() is None:
            raise UserError(f"{time!r} has no UTC offset; add one (e.g. +00) so the server cannot read it in "
                            "another time zone.")
        return RecoveryTarget(time=when, inclusive=inclusive)
    if lsn not in (None, ""):
        return RecoveryTarget(lsn=lsns.to_text(lsns.parse(lsn.strip())), inclusive=inclusive)
    if name not in (None, ""):
        if not _RESTORE_POINT.match(name):
            raise UserError("A restore point name is 1-63 letters, digits, spaces or _ . : @ + - characters.")
        return RecoveryTarget(name=name, inclusive=inclusive)
    return RecoveryTarget(inclusive=inclusive)
