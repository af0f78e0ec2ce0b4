#!/bin/sh
# Physical backup benchmark (ours vs pgBackRest vs pg_basebackup | zstd): see bench/physical.py and bench/README.md.
#   bench/physical.sh --size 100 --repeat 1 --no-docs      # a quick try
#   bench/physical.sh                                       # 800 MB, pgbench and mixed, 3 repeats -> docs/BENCHMARKS.md
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v pgbackrest >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "pgbackrest is missing: installing the Debian package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbackrest >&2
    else
        echo "pgbackrest is missing: apt-get install pgbackrest (as root)" >&2
        exit 2
    fi
fi
exec "$root/.venv/bin/python" "$root/bench/physical.py" "$@"
