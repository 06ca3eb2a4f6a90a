#!/usr/bin/env bash
# Compares two `weir` builds by running them AT THE SAME TIME: each pair of
# runs starts both servers (each with its own weir-load, each in its own
# loopback-only network namespace, so both use the same ports), the servers
# pinned to one core and the harnesses to the other, exactly as
# measure.sh pins one. Both builds then see the same state of the machine,
# which on a shared VM moves a lone run's forwarded packets per CPU-second
# by ~30 % from minute to minute; the ratio of a pair moves far less
# (two identical builds: 0.93-1.07 over 6 pairs, see docs/performance.md).
#
# As root (it calls unshare -n), from the repository root:
#
#   crates/weir-load/scripts/ab.sh BASE_WEIR NEW_WEIR OUT_DIR PAIRS -- WEIR_LOAD_FLAGS...
#
# e.g. BASE_WEIR a copy of target/release/weir built from main, NEW_WEIR one
# built from a branch. weir-load comes from $CARGO_TARGET_DIR/release (the
# same for both). Writes each run's files as measure.sh does
# (OUT_DIR/ab-base-N.*, OUT_DIR/ab-new-N.*) and prints one line per pair and
# the ratios' median.
set -euo pipefail

if [[ $# -lt 5 || $5 != -- ]]; then
    echo "usage: $0 BASE_WEIR NEW_WEIR OUT_DIR PAIRS -- WEIR_LOAD_FLAGS..." >&2
    exit 2
fi
base_weir=$1
new_weir=$2
out=$3
pairs=$4
shift 5

here=$(cd "$(dirname "$0")" && pwd)
load=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}/release/weir-load
[[ -x $load ]] || { echo "missing $load: build weir-load first" >&2; exit 2; }
mkdir -p "$out"
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
# measure.sh takes its binaries from $CARGO_TARGET_DIR/release.
for side in base new; do
    mkdir -p "$bins/$side/release"
    cp "$load" "$bins/$side/release/weir-load"
done
cp "$base_weir" "$bins/base/release/weir"
cp "$new_weir" "$bins/new/release/weir"

# Forwarded packets per server CPU-second from a run's JSON report.
per_cpu() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["forwarded_packets_per_cpu_second"] or 0)' "$1"
}

ratios=()
for i in $(seq 1 "$pairs"); do
    pids=()
    for side in base new; do
        CARGO_TARGET_DIR=$bins/$side unshare -n bash -c \
            'ip link set lo up; exec "$0" "$@"' "$here/measure.sh" "ab-$side-$i" "$out" -- "$@" \
            >"$out/ab-$side-$i.out" 2>&1 &
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    if [[ $failed -ne 0 ]]; then
        echo "pair $i: a run failed (see $out/ab-*-$i.out)" >&2
        exit 1
    fi
    base=$(per_cpu "$out/ab-base-$i.json")
    new=$(per_cpu "$out/ab-new-$i.json")
    ratio=$(python3 -c "import sys; b=float(sys.argv[1]); print(f'{float(sys.argv[2]) / b:.3f}' if b else 'nan')" "$base" "$new")
    ratios+=("$ratio")
    echo "pair $i: base $base, new $new forwarded pkt per CPU-second, new/base $ratio"
done
python3 -c "import statistics, sys; r=[float(x) for x in sys.argv[1:]]; print(f'new/base over {len(r)} pairs: median {statistics.median(r):.3f}, min {min(r):.3f}, max {max(r):.3f}')" "${ratios[@]}"
