"""PostgreSQL log sequence numbers: 'X/Y' text ↔ integer, so they compare as numbers, not strings."""
import re

from apps.core.errors import UserError

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse(text: str) -> int:
    m = _LSN.match(text.strip())
    if not m:
        raise UserError(f"{text!r} is not an LSN (expected hexadecimal X/Y, e.g. 0/3000060).")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def to_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
