#!/usr/bin/env bash
# Runs every Weir test suite. Installs what is missing first (Debian
# packages, node packages, the aiortc venv), so it works on a fresh machine.
#
#   scripts/test.sh            # everything
#   WEIR_SKIP_E2E=1 scripts/test.sh   # Rust checks and tests only
#
# Media tests run inside a loopback-only network namespace (unshare -n), so
# no test traffic can leave the machine.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
mkdir -p "$CARGO_TARGET_DIR" "$WEIR_CACHE"

log() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- install
APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

need_e2e() { [ "${WEIR_SKIP_E2E:-0}" != 1 ]; }

apt_install iproute2 util-linux
if need_e2e; then
    apt_install chromium ffmpeg
    if [ -f e2e/package.json ] && [ ! -d e2e/node_modules ]; then
        log "installing e2e node packages"
        (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
    fi
    if [ -d e2e/interop ] && [ ! -x "$WEIR_CACHE/venv/bin/python" ]; then
        log "creating the aiortc venv"
        python3 -m venv "$WEIR_CACHE/venv"
        "$WEIR_CACHE/venv/bin/pip" install -q aiortc
    fi
fi

# ---------------------------------------------------------------- suites
PASSED=0
FAILED=0
FAILED_NAMES=()
suite() {
    local name=$1
    shift
    log "suite: $name"
    local start=$SECONDS
    if "$@"; then
        PASSED=$((PASSED + 1))
        echo "--- $name: ok ($((SECONDS - start)) s)"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        echo "--- $name: FAILED ($((SECONDS - start)) s)"
    fi
}

# Runs a command in a fresh network namespace that has only loopback.
in_loopback_namespace() {
    unshare -n bash -c 'ip link set lo up && exec "$@"' in-namespace "$@"
}

suite "cargo fmt" cargo fmt --all --check
suite "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings

log "building"
cargo build --workspace --all-targets --locked
WEIR_BIN="$CARGO_TARGET_DIR/debug/weir"
export WEIR_BIN

suite "rust tests" in_loopback_namespace cargo test --workspace --locked --offline

if need_e2e; then
    if [ -f e2e/package.json ]; then
        suite "browser e2e" in_loopback_namespace node --test e2e/
    fi
    for script in e2e/interop/*.py; do
        [ -e "$script" ] || continue
        suite "interop $(basename "$script" .py)" in_loopback_namespace "$WEIR_CACHE/venv/bin/python" "$script"
    done
fi

if [ -d fuzz ] && cargo fuzz --help >/dev/null 2>&1 && [ -x fuzz/run.sh ]; then
    suite "fuzz smoke" fuzz/run.sh 5
fi

log "summary"
if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
    echo "failed suites: ${FAILED_NAMES[*]}"
fi
echo "total time: ${SECONDS} s"
echo "suites: ${PASSED} passed, ${FAILED} failed"
[ "$FAILED" -eq 0 ]
