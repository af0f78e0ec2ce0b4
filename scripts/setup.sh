#!/usr/bin/env bash
# Install what the project needs, and nothing else. Idempotent: a second run only checks.
#   1. Debian packages (PostgreSQL 15 server + client tools, zstd, restic, Chromium for the browser tests, Redis, a C
#      compiler and Python's headers for the page patcher), only when something is missing.
#   2. .venv with Python 3.11, created if missing.
#   3. pip install -e '.[test]' (which builds the page patcher, apps/backups/_pagepatch.c, in place), skipped while
#      .venv/.setup-stamp is newer than pyproject.toml and that C file, and the patcher is built.
#   4. Azurite (the Azure Blob emulator of the storage tests), from npm into .tools/azurite, if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
PY=${PYTHON:-python3.11}
STAMP=.venv/.setup-stamp

say() { printf '[setup] %s\n' "$*"; }

# --- 1. Debian packages ----------------------------------------------------------------------
missing=()
[ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ] && [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] \
    || missing+=("postgresql-$PG_MAJOR")
for tool in psql pg_dump pg_restore; do
    command -v "$tool" >/dev/null 2>&1 || { missing+=(postgresql-client); break; }
done
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v restic >/dev/null 2>&1 || missing+=(restic)       # bench/documents.sh compares document backups with it
command -v chromium >/dev/null 2>&1 || missing+=(chromium)   # tests/test_console_browser.py (Playwright)
command -v node >/dev/null 2>&1 || missing+=(nodejs)           # Azurite (tests/emulators.py)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)  # django-q2's Redis broker in the tests
# A C compiler and the C library's headers build the restores' page patcher (apps/backups/_pagepatch.c).
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/string.h ] || missing+=(libc6-dev)
# The postgres user runs archive_command/restore_command (tests/wal_site.py): when this interpreter lives where it
# cannot reach (a pyenv under /root), a venv of the system's Python 3.11 stands in.
[ -x /usr/bin/python3.11 ] || missing+=(python3.11)
if ! command -v "$PY" >/dev/null 2>&1; then
    missing+=(python3.11 python3.11-venv)
elif ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3.11-venv)          # Debian splits venv/ensurepip out of the interpreter
fi
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    missing+=(python3.11-dev)           # Python.h, for the page patcher (Debian splits it out too)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "[setup] missing Debian packages: ${missing[*]}; run as root or install them (no sudo here)." >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    say "Debian packages present (PostgreSQL $PG_MAJOR server and client, zstd, chromium, redis-server, gcc, $PY)"
fi

# --- 2. virtualenv ---------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $PY"
    "$PY" -m venv .venv
fi

# --- 3. Python dependencies ------------------------------------------------------------------
# The install also builds the page patcher in place (pyproject.toml's ext-modules): again when its source changed.
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt apps/backups/_pagepatch.c ] \
        && compgen -G 'apps/backups/_pagepatch.*.so' >/dev/null; then
    say "Python dependencies up to date (.venv/.setup-stamp is newer than pyproject.toml and the page patcher)"
else
    say "pip install -e '.[test]'"
    # compat mode: a plain path in a .pth file; the default import-hook finder costs every command ~20 ms.
    .venv/bin/python -m pip install --disable-pip-version-check -q --config-settings editable_mode=compat -e '.[test]'
    touch "$STAMP"
fi
# The project's own bytecode, as an installed application has it: where PYTHONDONTWRITEBYTECODE is set, every
# manage.py command would otherwise compile each module it imports (about 0.3 s of CPU per command). Up-to-date
# files are skipped, and Python checks each .pyc against its source's mtime, so an edit is never run stale.
.venv/bin/python -m compileall -q apps backupsite >/dev/null

# --- 4. Azurite ----------------------------------------------------------------------------------
# Pinned: 3.35.0 is the last release that runs on Debian 12's node 20 (3.36 needs node 21, 3.37 node 22).
AZURITE_VERSION=3.35.0
AZURITE_DIR=.tools/azurite
if [ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] \
        && grep -q "\"version\": \"$AZURITE_VERSION\"" "$AZURITE_DIR/node_modules/azurite/package.json" 2>/dev/null; then
    say "Azurite $AZURITE_VERSION present ($AZURITE_DIR)"
else
    say "npm install azurite@$AZURITE_VERSION into $AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
fi
