#!/usr/bin/env bash
# The local demo console: secrets under var/, migrate, the demo (admin user, sandbox PostgreSQL,
# target "demo", first backup), then the job worker in the background and the web server.
# Expects `scripts/setup.sh` to have run (`make run` does both). A second run reuses everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ADDR=${RUN_ADDR:-127.0.0.1:8000}
PY=.venv/bin/python

say() { printf '[run] %s\n' "$*"; }

# var/ must stay traversable (0755) so the postgres user can reach var/sandbox-pg; the secrets in it are 0600.
mkdir -p var
chmod 755 var

new_secret() {  # new_secret FILE COMMAND...: write the command's output to FILE (mode 600) unless FILE exists
    local file=$1; shift
    if [ ! -s "$file" ]; then
        (umask 077; "$@" > "$file.tmp" && mv "$file.tmp" "$file")
        say "generated $file"
    fi
    chmod 600 "$file"
}
new_secret var/secret_key "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))'
new_secret var/encryption.keys "$PY" -c 'from apps.pipeline.keys import generate_spec; print(generate_spec("k1"))'

export DEBUG=1
export SECRET_KEY_FILE="$ROOT/var/secret_key"
export BACKUP_ENCRYPTION_KEYS_FILE="$ROOT/var/encryption.keys"
unset SECRET_KEY BACKUP_ENCRYPTION_KEYS

# RUN_PROFILE=production: the production shape on this machine, a private redis-server (var/redis, port
# RUN_REDIS_PORT, default 6380) as django-q2's broker and gunicorn (backupsite/gunicorn.conf.py, static files
# collected and served by whitenoise) instead of runserver. Metadata stays in SQLite unless DATABASE_URL is set.
PROFILE=${RUN_PROFILE:-demo}
RPID=""
if [ "$PROFILE" = production ]; then
    mkdir -p var/redis
    REDIS_PORT=${RUN_REDIS_PORT:-6380}
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$ROOT/var/redis" \
        --loglevel warning &
    RPID=$!
    trap 'kill -TERM "$RPID" 2>/dev/null' EXIT  # until cleanup() below takes over
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    for _ in $(seq 1 50); do
        "$PY" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()' "$REDIS_URL" 2>/dev/null && break
        sleep 0.1
    done
    say "redis-server on $REDIS_URL (pid $RPID)"
fi

"$PY" manage.py migrate --noinput
"$PY" manage.py setup_schedules
"$PY" manage.py demo --url "http://$ADDR/"

QPID=""
WPID=""
cleanup() {
    trap - EXIT INT TERM
    set +e
    [ -n "$WPID" ] && kill -TERM "$WPID" 2>/dev/null
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        # Exactly one SIGTERM: django-q2 hangs if a second signal interrupts its shutdown. It finishes the
        # task at hand first; after the grace period the whole worker group is killed (an interrupted
        # backup is marked failed by the next request or the minute sweep: its process is gone).
        kill -TERM "$QPID" 2>/dev/null
        for _ in $(seq 1 "${WORKER_STOP_GRACE:-30}"); do
            kill -0 "$QPID" 2>/dev/null || break
            sleep 1
        done
        kill -0 "$QPID" 2>/dev/null && { say "job worker did not stop in time; killing it"; kill -KILL -- "-$QPID" 2>/dev/null; }
    fi
    [ -n "$RPID" ] && kill -TERM "$RPID" 2>/dev/null
    wait 2>/dev/null
    say "stopped the web server and the job worker (the sandbox PostgreSQL keeps running; 'make stop' stops it)"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# setsid: the worker gets its own process group, so Ctrl-C (or a signal to our whole group) does not reach it
# directly; cleanup() stops it with one SIGTERM instead.
setsid "$PY" manage.py qcluster &
QPID=$!
say "job worker (manage.py qcluster) started, pid $QPID"
if [ "$PROFILE" = production ]; then
    "$PY" manage.py collectstatic --noinput -v0
    GUNICORN_BIND="$ADDR" WEB_CONCURRENCY=${WEB_CONCURRENCY:-2} .venv/bin/gunicorn -c backupsite/gunicorn.conf.py &
else
    # --noreload: one process we can stop cleanly; restart `make run` after editing code.
    "$PY" manage.py runserver "$ADDR" --noreload &
fi
WPID=$!
say "console on http://$ADDR/ (admin at /admin/; credentials above, also in var/demo-admin-password); Ctrl-C stops"

# Whichever of the two ends first ends the run (and the trap stops the other).
set +e
wait -n "$WPID" "$QPID"
rc=$?
set -e
exit "$rc"
