#!/usr/bin/env bash
# Runs every Weir test suite and prints a summary; the last line is
# `suites: N passed, M failed` and the exit status is non-zero if any failed.
#
# Installs what is missing first, so it works on a fresh Debian 12 machine
# (run as root): Debian `chromium`, `ffmpeg`, `iproute2`; the browser tests'
# node packages (`npm ci` in e2e/); aiortc in a venv under $WEIR_CACHE.
#
#   scripts/test.sh                   # everything
#   WEIR_SKIP_E2E=1 scripts/test.sh   # Rust checks and tests only
#
# Tests that start WebRTC peers (the Rust tests, the browser and interop
# suites) run inside `unshare -n`: a fresh network namespace with only
# loopback, so no test traffic can leave the machine.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export WEIR_BIN="$CARGO_TARGET_DIR/debug/weir"
VENV="$WEIR_CACHE/venv"
API_VENV="$WEIR_CACHE/venv-api"
FUZZ_SECONDS="${WEIR_FUZZ_SECONDS:-3}"
mkdir -p "$CARGO_TARGET_DIR" "$WEIR_CACHE"

# A full disk fails far from its cause (the linker dies with a bus error, a
# build with "No space left on device"): say so first. The cache grows with
# every build (incremental state, earlier builds' test executables).
FREE_KIB=$(df -Pk "$CARGO_TARGET_DIR" 2>/dev/null | awk 'NR == 2 { print $4 }') || FREE_KIB=
if [ -n "$FREE_KIB" ] && [ "$FREE_KIB" -lt $((8 * 1024 * 1024)) ]; then
    echo "warning: $((FREE_KIB / 1024)) MiB free for $CARGO_TARGET_DIR; the builds need" \
        "several GiB (removing $CARGO_TARGET_DIR/debug/incremental frees most of a grown cache)" >&2
fi

log() { printf '\n==> %s\n' "$*"; }
need_e2e() { [ "${WEIR_SKIP_E2E:-0}" != 1 ]; }

# ---------------------------------------------------------------- results
PASSED=0
FAILED=0
RESULTS=()
FINISHED=0

summary() {
    log "summary"
    local line
    for line in "${RESULTS[@]}"; do echo "  $line"; done
    echo "total time: ${SECONDS} s"
    echo "suites: ${PASSED} passed, ${FAILED} failed"
}

# An error outside a suite (an install step) still ends with the summary.
on_exit() {
    local status=$?
    if [ "$FINISHED" = 0 ]; then
        FAILED=$((FAILED + 1))
        RESULTS+=("$(printf '%-8s %-28s %s' FAILED setup "exit status $status before all suites ran")")
        summary
        exit 1
    fi
}
trap on_exit EXIT

CURRENT=
on_interrupt() {
    trap - INT TERM
    if [ -n "$CURRENT" ]; then
        kill -TERM "$CURRENT" 2>/dev/null || true
        wait "$CURRENT" 2>/dev/null || true
    fi
    FAILED=$((FAILED + 1))
    RESULTS+=("$(printf '%-8s %-28s %s' FAILED interrupted "")")
    FINISHED=1
    summary
    exit 130
}
trap on_interrupt INT TERM

# suite NAME TIME_LIMIT COMMAND...: runs one suite, records its result.
suite() {
    local name=$1 limit=$2
    shift 2
    log "suite: $name"
    local start=$SECONDS status=0
    # In the background so that Ctrl-C (the trap below) can stop it: timeout
    # runs the suite in its own process group.
    timeout --kill-after=15s "$limit" "$@" &
    CURRENT=$!
    wait "$CURRENT" || status=$?
    CURRENT=
    local took="$((SECONDS - start)) s"
    if [ "$status" = 0 ]; then
        PASSED=$((PASSED + 1))
        RESULTS+=("$(printf '%-8s %-28s %s' ok "$name" "$took")")
        echo "--- $name: ok ($took)"
    else
        FAILED=$((FAILED + 1))
        [ "$status" = 124 ] && took="$took, timed out after $limit"
        RESULTS+=("$(printf '%-8s %-28s %s' FAILED "$name" "$took (exit $status)")")
        echo "--- $name: FAILED ($took, exit $status)"
    fi
}

skipped() {
    RESULTS+=("$(printf '%-8s %-28s %s' skipped "$1" "$2")")
}

# A fresh network namespace that has only loopback.
IN_LOOPBACK_NAMESPACE=(unshare -n bash -c 'ip link set lo up && exec "$@"' in-namespace)

# ---------------------------------------------------------------- install
APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv DIR REQUIREMENTS PROGRAM MODULE: (re)creates the Python venv
# DIR from REQUIREMENTS unless it was made from the same file and has
# PROGRAM and MODULE.
ensure_venv() {
    local dir=$1 requirements=$2 program=$3 module=$4
    if cmp -s "$requirements" "$dir/weir-requirements.txt" && [ -x "$dir/$program" ] &&
        "$dir/bin/python" -c "import $module" >/dev/null 2>&1; then
        return 0
    fi
    log "creating the venv $dir from $requirements"
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3 python3-venv
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q -r "$requirements"
    cp "$requirements" "$dir/weir-requirements.txt"
}

command -v unshare >/dev/null && command -v ip >/dev/null || apt_install iproute2 util-linux
# jemalloc (the server's allocator) is built from C with make.
command -v make >/dev/null && command -v cc >/dev/null || apt_install make gcc libc6-dev
# The control-plane suites also run on PostgreSQL (scripts/with-postgres.sh).
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "adding rustfmt and clippy"
    rustup component add rustfmt clippy
fi

if need_e2e; then
    apt_install chromium ffmpeg
    command -v node >/dev/null || apt_install nodejs npm
    if [ ! -f e2e/node_modules/.package-lock.json ] || [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
        log "installing the browser tests' node packages (npm ci)"
        (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
    fi
    ensure_venv "$VENV" e2e/interop/requirements.txt bin/python aiortc
fi

# schemathesis for the REST API fuzz run (its own venv: its pins are not
# aiortc's).
ensure_venv "$API_VENV" e2e/api/requirements.txt bin/st schemathesis

# s3s-fs, a real S3-compatible server on 127.0.0.1 for the recording storage
# tests (they skip, saying so, without it). About 7.5 min to build, once;
# 0.15+ needs a newer rustc. Built outside the shared target dir.
if [ ! -x "$WEIR_CACHE/bin/s3s-fs" ]; then
    log "installing s3s-fs into $WEIR_CACHE/bin"
    env -u CARGO_TARGET_DIR cargo install s3s-fs --version 0.14.1 --features binary --locked \
        --root "$WEIR_CACHE" --quiet
fi

# ---------------------------------------------------------------- suites
# (Selected as test targets of the whole workspace, so that the build of
# the rust tests suite is reused: `-p` would resolve other features.)
CONTROL_PLANE_TESTS='cargo test --workspace --locked --offline --test store --test admin_and_callbacks --test outbox \
    --test recording --test api_apps --test api_rooms --test api_tokens --test api_callbacks \
    --test callbacks_delivery --test api_recording'
suite "cargo fmt" 5m cargo fmt --all --check
suite "cargo clippy" 20m cargo clippy --workspace --all-targets --locked -- -D warnings
suite "cargo build" 20m cargo build --workspace --all-targets --locked
BUILT=$([ "${RESULTS[-1]%% *}" = ok ] && echo 1 || echo 0)

if [ "$BUILT" = 1 ]; then
    suite "rust tests" 20m "${IN_LOOPBACK_NAMESPACE[@]}" cargo test --workspace --locked --offline
    # The control-plane suites again on PostgreSQL: the store's tests and
    # the server's API and callback tests (each TestServer gets a scratch
    # database on a throwaway cluster on 127.0.0.1).
    suite "control plane on PostgreSQL" 15m "${IN_LOOPBACK_NAMESPACE[@]}" \
        scripts/with-postgres.sh bash -c "$CONTROL_PLANE_TESTS"
    # A bounded schemathesis run (all phases and checks, 60 s) against the
    # served OpenAPI document of a real server.
    suite "REST API fuzz" 5m "${IN_LOOPBACK_NAMESPACE[@]}" \
        env ST="$API_VENV/bin/st" scripts/api-fuzz.sh
else
    skipped "rust tests, control plane on PostgreSQL, REST API fuzz" "(the build failed)"
fi

if need_e2e; then
    if [ "$BUILT" = 1 ]; then
        suite "browser e2e" 10m "${IN_LOOPBACK_NAMESPACE[@]}" node --test --test-concurrency=1 e2e/
        for script in e2e/interop/*.py; do
            suite "interop $(basename "$script" .py)" 3m "${IN_LOOPBACK_NAMESPACE[@]}" "$VENV/bin/python" "$script"
        done
    else
        skipped "browser e2e, interop" "(the build failed)"
    fi
else
    skipped "browser e2e, interop" "(WEIR_SKIP_E2E=1)"
fi

# Fuzz smoke: every cargo-fuzz target (fuzz/) for a few seconds from its
# seeds, only where cargo-fuzz is installed. The fuzz build (its own, about
# 15 min on 2 cores the first time) is kept in $WEIR_CACHE/fuzz-target.
if cargo fuzz --version >/dev/null 2>&1; then
    suite "fuzz smoke" 45m env WEIR_FUZZ_TARGET_DIR="$WEIR_CACHE/fuzz-target" \
        fuzz/run.sh "$FUZZ_SECONDS"
else
    echo "fuzz smoke: skipped, cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
    skipped "fuzz smoke" "(cargo-fuzz not installed: cargo install cargo-fuzz --locked)"
fi

FINISHED=1
summary
[ "$FAILED" -eq 0 ]
