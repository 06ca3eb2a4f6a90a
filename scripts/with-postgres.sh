#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on 127.0.0.1.
#
#   scripts/with-postgres.sh cargo test -p weir-store
#
# Installs Debian's `postgresql` when `initdb` is missing, creates a cluster in
# a temp dir (as the `postgres` user when run as root: initdb refuses root),
# starts it on a free port, creates the role and database `weir_test`, and
# runs the command with WEIR_TEST_POSTGRES_URL set to
# postgres://weir_test:weir_test@127.0.0.1:PORT/weir_test (a superuser: the
# tests create and drop a database each). The server is stopped and its dir
# removed on exit, whatever the command's outcome; the command's exit status
# is the script's.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

find_pg_bin() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    fi
}

PG_BIN=$(find_pg_bin)
if [ -z "$PG_BIN" ]; then
    echo "with-postgres: installing postgresql (apt-get)" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "with-postgres: initdb is missing and not root: install postgresql first" >&2
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    PG_BIN=$(find_pg_bin)
    if [ -z "$PG_BIN" ]; then
        echo "with-postgres: no initdb after installing postgresql" >&2
        exit 1
    fi
fi

# The cluster runs as the invoking user, or as `postgres` when that is root.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    as_pg() { runuser -u postgres -- "$@"; }
    PG_USER=postgres
else
    as_pg() { "$@"; }
    PG_USER=$(id -un)
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-pg.XXXXXX")
chmod 700 "$PG_DIR"
[ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$PG_DIR"

cleanup() {
    local status=$?
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    exit 1
}

# A port can be taken between choosing and binding it: try a few.
started=
for _ in 1 2 3 4 5; do
    PORT=$(free_port)
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
        started=1
        break
    fi
done
if [ -z "$started" ]; then
    echo "with-postgres: the server did not start:" >&2
    cat "$PG_DIR/server.log" >&2 || true
    exit 1
fi

for _ in $(seq 1 50); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.1
done
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || {
    echo "with-postgres: the server is not ready" >&2
    exit 1
}

as_pg "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d postgres <<'SQL'
CREATE ROLE weir_test LOGIN SUPERUSER PASSWORD 'weir_test';
CREATE DATABASE weir_test OWNER weir_test;
SQL

export WEIR_TEST_POSTGRES_URL="postgres://weir_test:weir_test@127.0.0.1:$PORT/weir_test"
echo "with-postgres: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
