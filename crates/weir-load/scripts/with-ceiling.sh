#!/usr/bin/env bash
# Measures a 1 -> N room with weir-load (measure.sh) and, at the same time,
# the machine's forwarding ceiling for the same traffic (forwarding-ceiling),
# each in its own loopback-only network namespace, and prints both and their
# ratio. The VM's speed moves from minute to minute; the ratio of one run
# is what compares. Run as root (it calls unshare -n); build first:
#   cargo build --release -p weir-load -p weir-server
#
#   crates/weir-load/scripts/with-ceiling.sh NAME OUT_DIR [SUBSCRIBERS]
#
# VIDEO_KBPS (1500), FPS (30), KEYFRAME_INTERVAL (60), DURATION (20 s of
# sending after a 5 s ramp) shape the scenario. CEILING_FLAGS go to
# forwarding-ceiling (`--no-gso`: a datagram per message, the bare
# sendmmsg path of shared/notes/performance.md). Writes OUT_DIR/NAME.* as
# measure.sh does, and OUT_DIR/NAME.ceiling.json.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 NAME OUT_DIR [SUBSCRIBERS]" >&2
    exit 2
fi
name=$1
out=$2
subscribers=${3:-50}
kbps=${VIDEO_KBPS:-1500}
fps=${FPS:-30}
keyframes=${KEYFRAME_INTERVAL:-60}
duration=${DURATION:-20}
ramp=5
here=$(cd "$(dirname "$0")" && pwd)
bin=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}/release
[[ -x $bin/forwarding-ceiling ]] || { echo "missing $bin/forwarding-ceiling: build first" >&2; exit 2; }
mkdir -p "$out"

flags="--rooms 1 --publishers 1 --subscribers $subscribers --media av --video-kbps $kbps --fps $fps"
flags+=" --keyframe-interval $keyframes --duration $duration --ramp $ramp"
WEIR_EMPTY_TIMEOUT_SECONDS=1 unshare -n bash -c \
    "ip link set lo up; exec '$here/measure.sh' '$name' '$out' -- $flags" >"$out/$name.measure.out" 2>&1 &
weir=$!
# Into weir-load's sending phase: the server starts, a 3 s warm-up call,
# the joins over the ramp.
sleep $((ramp + 4))
unshare -n bash -c "ip link set lo up; exec '$bin/forwarding-ceiling' --subscribers $subscribers \
    --video-kbps $kbps --fps $fps --keyframe-interval $keyframes --duration $duration \
    ${CEILING_FLAGS:-} --json '$out/$name.ceiling.json'" >"$out/$name.ceiling.txt"
wait "$weir" || { cat "$out/$name.measure.out" >&2; exit 1; }

python3 - "$out/$name.json" "$out/$name.ceiling.json" <<'PY'
import json, sys
weir = json.load(open(sys.argv[1]))
ceiling = json.load(open(sys.argv[2]))
w = weir["forwarded_packets_per_cpu_second"]
c = ceiling["forwarded_packets_per_cpu_second"]
print(f"weir     {w:10.0f} forwarded pkt per cpu-second, loss {weir['loss_ratio'] * 100:.3f} %")
kind = "GSO" if ceiling.get("gso", True) else "no GSO"
print(f"ceiling  {c:10.0f} forwarded pkt per cpu-second, loss {ceiling['loss_ratio'] * 100:.3f} % ({kind})")
print(f"weir / ceiling {w / c:.3f}")
PY
