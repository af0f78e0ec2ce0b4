"""PostgreSQL log sequence numbers ('X/Y' text <-> integer, so they compare as numbers) and WAL segment names."""
import re

from apps.core.errors import UserError

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse(text: str) -> int:
    """'16/B374D848' -> integer; UserError when it is not an LSN."""
    m = _LSN.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise UserError(f"{text!r} is not an LSN (expected hexadecimal X/Y, e.g. 0/1A2B3C4D).")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def to_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    """The WAL file name of segment number `segno` of a timeline."""
    per_id = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"
