"""Locating PostgreSQL client and server binaries."""
import shutil
from pathlib import Path

from django.conf import settings

from apps.core.errors import UserError
from apps.databases.clusters import SERVER_BIN_DIRS



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
    for directory in SERVER_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise UserError(f"PostgreSQL program {name!r} not found; install the PostgreSQL client or set PG_BIN_DIR.")
