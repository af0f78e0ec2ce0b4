"""PostgreSQL's WAL file names and LSNs: what a name says (timeline, segment) and nothing else.

A name given to wal_push / wal_fetch is an identifier, never a path: only the four shapes
PostgreSQL archives are accepted, in upper-case hex as PostgreSQL writes them.
"""
import re
from dataclasses import dataclass

from apps.core.errors import UserError
from apps.databases.lsn import parse as parse_lsn, segment_name, to_text as format_lsn  # noqa: F401 (re-exported)

DEFAULT_SEGMENT_SIZE = 16 << 20

_SHAPES = {
    "segment": re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})"),
    "partial": re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial"),
    "backup": re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.[0-9A-F]{8}\.backup"),
    "history": re.compile(r"([0-9A-F]{8})\.history"),
}


def is_segment_name(name: str) -> bool:
    """A WAL segment's name (24 upper-case hex digits), not a .partial, .backup or .history file's."""
    return _SHAPES["segment"].fullmatch(name) is not None


@dataclass(frozen=True)
class WalFileName:
    name: str
    kind: str  # segment | partial | backup | history
    timeline: int
    log: int | None = None  # the "xlogid" and segment parts of a segment-based name
    seg: int | None = None

    @property
    def is_segment(self) -> bool:
        return self.kind == "segment"

    def segno(self, segment_size: int) -> int:
        """Segment number (start LSN // segment size) of a segment-based name."""
        return self.log * (0x1_0000_0000 // segment_size) + self.seg

    def start_lsn(self, segment_size: int) -> int:
        return self.segno(segment_size) * segment_size


def parse(name: str) -> WalFileName:
    """The parts of a WAL file name; UserError for anything else (paths, `..`, lower case, other files)."""
    if isinstance(name, str):
        for kind, shape in _SHAPES.items():
            m = shape.fullmatch(name)
            if m is None:
                continue
            if kind == "history":
                tli = int(m.group(1), 16)
                if tli:
                    return WalFileName(name=name, kind=kind, timeline=tli)
                break
            tli, log, seg = (int(g, 16) for g in m.groups())
            if tli:
                return WalFileName(name=name, kind=kind, timeline=tli, log=log, seg=seg)
            break
    raise UserError("Not a WAL file name: expected a segment (24 hex digits), TTTTTTTT.history, "
                    "a .partial segment or a .backup label, as PostgreSQL names them.")


def check_segment_size(size: int) -> int:
    """PostgreSQL's rule: a power of two between 1 MB and 1 GB."""
    if size < (1 << 20) or size > (1 << 30) or size & (size - 1):
        raise UserError(f"{size} bytes is not a WAL segment size (a power of two from 1 MB to 1 GB).")
    return size


