"""Locating PostgreSQL client and server binaries."""
import shutil
from pathlib import Path

from django.conf import settings

from apps.core.errors import UserError

SERVER_BIN_CANDIDATES = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]


def pg_bin(name: str) -> str:
    """Full path of a PostgreSQL program: PG_BIN_DIR first, then PATH, then the Debian server directories."""
    dirs = [settings.PG_BIN_DIR] if settings.PG_BIN_DIR else []
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    for directory in SERVER_BIN_CANDIDATES:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise UserError(f"PostgreSQL program {name!r} not found; install the PostgreSQL client or set PG_BIN_DIR.")
