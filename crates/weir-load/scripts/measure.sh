#!/usr/bin/env bash
# Runs one weir-load scenario against a fresh release `weir serve` on
# embedded defaults in a temporary data dir: the server pinned to core 0,
# the harness to core 1. Everything stays on 127.0.0.1.
#
# Run it in a loopback-only network namespace (as root):
#
#   unshare -n bash -c 'ip link set lo up; exec crates/weir-load/scripts/measure.sh NAME OUT_DIR -- WEIR_LOAD_FLAGS...'
#
# Writes OUT_DIR/NAME.json (the report), NAME.txt (the summary),
# NAME.health.json (the server's /healthz at the end: its forwarding
# latency), NAME.threads.txt (CPU time per server thread), NAME.server.log, and keeps the server's data dir as OUT_DIR/NAME.data
# (recordings under NAME.data/recordings). Build first:
#   cargo build --release -p weir-load --bin weir-load -p weir-server --bin weir
set -euo pipefail

if [[ $# -lt 3 || $2 == -- || $3 != -- ]]; then
    echo "usage: $0 NAME OUT_DIR -- WEIR_LOAD_FLAGS..." >&2
    exit 2
fi
name=$1
out=$2
shift 3

bin=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}/release
for b in weir weir-load; do
    [[ -x $bin/$b ]] || { echo "missing $bin/$b: build the release binaries first" >&2; exit 2; }
done
mkdir -p "$out"
data=$out/$name.data
rm -rf "$data"
mkdir -p "$data"
# The REST API's admin key (32+ letters and digits), for --record.
admin_key=loadtestadminkey0123456789abcdefghij

# WARMUP (default 3s; 0 for none): weir-load's --warmup, a call of one
# publisher and one subscriber before the start readings, so that the
# server's memory growth is the scenario's, not its code being paged in by
# the first call.
warmup=${WARMUP:-3s}
# SERVER_CPUS / HARNESS_CPUS (taskset lists) override the pinning, e.g.
# SERVER_CPUS=0,1 to let the server use both cores.
server_cpus=${SERVER_CPUS:-0}
harness_cpus=${HARNESS_CPUS:-1}
WEIR_ADMIN_KEY=$admin_key taskset -c "$server_cpus" "$bin/weir" serve --data-dir "$data" \
    --http-listen 127.0.0.1:7880 --udp-listen 127.0.0.1:7882 \
    >"$out/$name.server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:7880/healthz >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS http://127.0.0.1:7880/healthz >/dev/null

status=0
WEIR_ADMIN_KEY=$admin_key taskset -c "$harness_cpus" "$bin/weir-load" \
    --url ws://127.0.0.1:7880/rtc/v1 --data-dir "$data" --server-pid "$server" \
    --json "$out/$name.json" --no-progress --warmup "$warmup" "$@" >"$out/$name.txt" || status=$?
cat "$out/$name.txt"
# CPU time per server thread (how the work spread over threads and cores).
for task in /proc/"$server"/task/*; do
    # comm is in parentheses (no spaces in ours); utime + stime in ticks.
    awk -v hz="$(getconf CLK_TCK)" '{printf "%-18s %7.2f s\n", $2, ($14 + $15) / hz}' "$task/stat"
done 2>/dev/null | sort -k2 -n -r | head -8 >"$out/$name.threads.txt" || true
# The server's own view, including its forwarding latency histogram.
curl -fsS http://127.0.0.1:7880/healthz >"$out/$name.health.json" 2>/dev/null || true
python3 - "$out/$name.health.json" <<'PY' || true
import json, sys
latency = json.load(open(sys.argv[1])).get("forwarding_latency")
if latency:
    print("server forwarding latency: p50 {p50_us} us, p99 {p99_us} us, max {max_us} us ({samples} datagrams)".format(**latency))
PY

kill -TERM "$server"
wait "$server" || true
trap - EXIT
exit "$status"
