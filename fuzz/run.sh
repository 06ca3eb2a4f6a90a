#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60),
# one after another, and exits non-zero if any of them finds a crash; the
# input that crashed is kept in fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#   cargo fuzz run TARGET fuzz/corpus/TARGET     # one target, until stopped
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Builds once, into
# $WEIR_FUZZ_TARGET_DIR (default fuzz/target; never the workspace's
# CARGO_TARGET_DIR): optimized, with debug assertions, overflow checks and
# coverage instrumentation, and no sanitizer, since Weir's crates forbid
# unsafe code (WEIR_FUZZ_SANITIZER=address turns ASan on: a longer build
# and about half the speed). Each target starts from its committed seeds
# (fuzz/corpus/TARGET, only read) and from what earlier runs found
# ($WEIR_FUZZ_TARGET_DIR/corpus/TARGET, where new inputs go); runs of 10 s
# or less from the seeds only.
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
[ $# -gt 0 ] && shift
target_dir=${WEIR_FUZZ_TARGET_DIR:-$PWD/target}
sanitizer=${WEIR_FUZZ_SANITIZER:-none}
unset CARGO_TARGET_DIR
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi
fuzz=(--sanitizer "$sanitizer" --target-dir "$target_dir")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

start=$SECONDS
cargo fuzz build "${fuzz[@]}"
echo "fuzz build: $((SECONDS - start)) s"

mkdir -p "$target_dir/logs"
failed=()
for target in "${targets[@]}"; do
    # Short runs (the test suite's smoke pass) start from the seeds only,
    # so that their time does not grow with what earlier runs found.
    scratch="$target_dir/corpus/$target"
    if [ "$seconds" -le 10 ]; then
        scratch="$target_dir/smoke-corpus/$target"
        rm -rf "$scratch"
    fi
    mkdir -p "$scratch" "corpus/$target"
    log="$target_dir/logs/$target.log"
    status=0
    cargo fuzz run "${fuzz[@]}" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 || true)
    corpus=$(grep -ao 'corp: [0-9]*' "$log" | tail -1 || true)
    if [ "$status" = 0 ]; then
        printf '%-20s ok      %10s runs %8s exec/s  %-10s %s\n' "$target" "${runs:-?}" "${speed:-?}" "$cov" "$corpus"
    else
        printf '%-20s FAILED  (exit %s; log %s)\n' "$target" "$status" "$log"
        grep -a -m1 -A1 -E 'panicked at|ERROR: libFuzzer' "$log" || tail -5 "$log"
        grep -a -m1 -o 'Test unit written to .*' "$log" || true
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each, no crash"
