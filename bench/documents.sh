#!/bin/sh
# Document backup benchmark: ours vs restic vs tar -czf vs tar -I zstd on a generated tree (see bench/documents.py).
#   bench/documents.sh                         # 10,000 files, 500 MB, 3 repeats -> table on stdout
#   bench/documents.sh --files 2000 --mb 100 --repeat 1     # a quick try
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in restic zstd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            echo "$tool is missing: installing the Debian package" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$tool" >&2
        else
            echo "$tool is missing: apt-get install $tool (as root)" >&2
            exit 2
        fi
    fi
done
exec "$root/.venv/bin/python" "$root/bench/documents.py" "$@"
