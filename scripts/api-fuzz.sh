#!/usr/bin/env bash
# A bounded schemathesis run against the REST API's served OpenAPI document:
# starts `weir serve` on 127.0.0.1 with a throwaway data dir and a known
# admin key, runs every schemathesis phase and check for at most
# API_FUZZ_SECONDS (default 60), then stops the server.
#
#   scripts/api-fuzz.sh [--database-url postgres://...]
#
# Needs: the `weir` binary built (CARGO_TARGET_DIR respected) and `st`
# (schemathesis, pinned in e2e/api/requirements.txt) on PATH or in $ST.
# scripts/test.sh runs it inside a loopback-only network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

ST=${ST:-st}
SECONDS_BUDGET=${API_FUZZ_SECONDS:-60}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
WEIR="$TARGET_DIR/debug/weir"
[ -x "$WEIR" ] || { echo "api-fuzz: $WEIR is missing: cargo build --bin weir" >&2; exit 1; }

DATA_DIR=$(mktemp -d)
LOG="$DATA_DIR/server.log"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
HTTP_PORT=$(free_port)
UDP_PORT=$(free_port)
export WEIR_ADMIN_KEY
WEIR_ADMIN_KEY=$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)))')
if [ "${1:-}" = "--database-url" ]; then
    export WEIR_DATABASE_URL=$2
fi

"$WEIR" serve --data-dir "$DATA_DIR" --http-listen "127.0.0.1:$HTTP_PORT" \
    --udp-listen "127.0.0.1:$UDP_PORT" --advertise-ip 127.0.0.1 >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

status=0
"$ST" --config-file e2e/api/schemathesis.toml run \
    "http://127.0.0.1:$HTTP_PORT/api/v1/openapi.json" \
    --wait-for-schema 20 \
    -H "Authorization: Bearer $WEIR_ADMIN_KEY" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples 30 \
    --max-time "$SECONDS_BUDGET" \
    --workers 1 \
    --seed 1 \
    --no-color || status=$?

if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "api-fuzz: the server died during the run; its log:" >&2
    cat "$LOG" >&2
    exit 1
fi
if grep -q "panicked" "$LOG"; then
    echo "api-fuzz: the server panicked; its log:" >&2
    cat "$LOG" >&2
    exit 1
fi
exit "$status"
