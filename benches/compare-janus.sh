#!/usr/bin/env bash
# Runs one weir-load scenario against Weir and against Janus Gateway's
# VideoRoom, one server at a time, in one loopback-only network namespace,
# and prints both results and the ratio of forwarded packets per server
# CPU-second (Weir / Janus).
#
#   benches/compare-janus.sh [WEIR_LOAD_FLAGS...]
#
# Default scenario: 1 room, 1 publisher, 50 subscribers, audio + video,
# 1500 kbit/s, 30 fps, 30 s, after a 3 s warm-up call on each server
# (--warmup: the start readings are of a server that has carried a call,
# its code paged in). Flags given replace the matching defaults
# (e.g. `--subscribers 5 --duration 10`); the script sets --target, --url,
# --janus-url, --data-dir, --server-pid, --json and --no-progress itself.
#
# Each server runs pinned to core 0 and the harness to core 1; the server's
# CPU time (from /proc, all its threads) covers the sending phase only.
# Needs root (unshare -n), Debian's `janus` (apt-get install -y janus),
# taskset, curl and python3. Results go to $OUT_DIR (default: a new
# /tmp/weir-compare.XXXXXX): weir.json, janus.json, their summaries and
# server logs, and compare.json (both reports and the ratio). The release
# binaries are built first (in $CARGO_TARGET_DIR, default
# ~/.cache/weir-target) unless SKIP_BUILD=1.
#
# Everything stays on 127.0.0.x inside the namespace: Janus gathers no ICE
# candidate on a loopback interface, so it gets a veth (jv0) holding
# 127.0.0.2, which routes through the namespace's own lo like any local
# address.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
bin=$CARGO_TARGET_DIR/release

WEIR_HTTP=127.0.0.1:7880
WEIR_UDP=127.0.0.1:7882
JANUS_URL=http://127.0.0.1:8088/janus
ADMIN_KEY=comparejanusadminkey0123456789abcdef

# Seconds of a weir-load duration (30, 30s, 500ms, 2m, 1h), rounded up.
seconds_of() {
    python3 -c '
import math, re, sys
m = re.fullmatch(r"([0-9.]+)\s*(ms|s|m|min|h)?", sys.argv[1].strip())
if not m:
    sys.exit("bad duration: " + sys.argv[1])
scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
print(math.ceil(float(m.group(1)) * scale))' "$1"
}

# The value of flag $1 among the remaining arguments, or $2.
flag_value() {
    local name=$1 default=$2
    shift 2
    local value=$default
    while [[ $# -gt 0 ]]; do
        case $1 in
            "$name") [[ $# -ge 2 ]] && value=$2; shift ;;
            "$name"=*) value=${1#*=} ;;
        esac
        shift
    done
    printf '%s\n' "$value"
}

if [[ ${WEIR_COMPARE_INNER:-} != 1 ]]; then
    for arg in "$@"; do
        case $arg in
            --target|--target=*|--url|--url=*|--janus-url|--janus-url=*|--data-dir|--data-dir=*|\
            --server-pid|--server-pid=*|--json|--json=*|--token-secret|--token-secret=*|--record)
                echo "compare-janus.sh sets $arg itself (or it does not apply to both servers)" >&2
                exit 2 ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || { echo "needs root (unshare -n)" >&2; exit 2; }
    for tool in janus taskset curl python3 unshare ip timeout; do
        command -v "$tool" >/dev/null || {
            echo "missing $tool (janus: apt-get install -y janus)" >&2
            exit 2
        }
    done
    duration=$(seconds_of "$(flag_value --duration 30 "$@")")
    ramp=$(seconds_of "$(flag_value --ramp 0 "$@")")
    # Each run: server start, joins, ramp, sending, drain, leave.
    export RUN_TIMEOUT=$((duration + ramp + 180))

    if [[ ${SKIP_BUILD:-} == 1 ]]; then
        for b in weir weir-load; do
            [[ -x $bin/$b ]] || { echo "missing $bin/$b (SKIP_BUILD=1)" >&2; exit 2; }
        done
    else
        echo "== building release binaries" >&2
        (cd "$root" && cargo build --release -p weir-load --bin weir-load -p weir-server --bin weir)
    fi

    export OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/weir-compare.XXXXXX)}
    mkdir -p "$OUT_DIR"
    export WEIR_COMPARE_INNER=1
    # Both runs, plus server starts and stops, bounded as a whole too.
    exec timeout --kill-after=15 $((2 * RUN_TIMEOUT + 60)) \
        unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "$@"
fi

# ---- inside the namespace from here on ----
out=$OUT_DIR
server=
cleanup() {
    if [[ -n $server ]]; then
        kill -TERM "$server" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The scenario: defaults, each replaced by the flag if given.
scenario=()
defaults=(--rooms 1 --publishers 1 --subscribers 50 --media av --video-kbps 1500 --fps 30 --duration 30 --warmup 3s)
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
    name=${defaults[i]}
    given=no
    for arg in "$@"; do
        [[ $arg == "$name" || $arg == "$name="* ]] && given=yes
    done
    [[ $given == yes ]] || scenario+=("$name" "${defaults[i + 1]}")
done
scenario+=("$@")
echo "== scenario: ${scenario[*]}" >&2

# Runs weir-load pinned to core 1: NAME, then its flags.
load() {
    local name=$1
    shift
    local status=0
    WEIR_ADMIN_KEY=$ADMIN_KEY timeout --kill-after=10 "$RUN_TIMEOUT" \
        taskset -c 1 "$bin/weir-load" --server-pid "$server" --json "$out/$name.json" \
        --no-progress "$@" "${scenario[@]}" >"$out/$name.txt" 2>"$out/$name.err" || status=$?
    cat "$out/$name.txt"
    if [[ $status -ne 0 ]]; then
        echo "weir-load against $name failed ($status):" >&2
        tail -n 20 "$out/$name.err" >&2
    fi
    return "$status"
}

wait_http() {
    local url=$1
    for _ in $(seq 1 100); do
        curl -fsS "$url" >/dev/null 2>&1 && return 0
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    curl -fsS "$url" >/dev/null
}

# ---- Weir ----
echo "== weir" >&2
data=$out/weir.data
rm -rf "$data"
mkdir -p "$data"
WEIR_ADMIN_KEY=$ADMIN_KEY taskset -c 0 "$bin/weir" serve --data-dir "$data" \
    --http-listen "$WEIR_HTTP" --udp-listen "$WEIR_UDP" >"$out/weir.server.log" 2>&1 &
server=$!
wait_http "http://$WEIR_HTTP/healthz"
weir_status=0
load weir --url "ws://$WEIR_HTTP/rtc/v1" --data-dir "$data" || weir_status=$?
cleanup

# ---- Janus ----
echo "== janus" >&2
ip link add jv0 type veth peer name jv1
ip link set jv1 up
ip link set jv0 up
ip addr add 127.0.0.2/32 dev jv0

conf=$out/janus.conf
rm -rf "$conf"
cp -r /etc/janus "$conf"
lib=$(dirname "$(ls -d /usr/lib/*/janus/plugins/libjanus_videoroom.so | head -n 1)")
lib=$(dirname "$lib")
others() { # the .so files of $1 except those matching $2, comma-separated
    find "$lib/$1" -maxdepth 1 -name '*.so' -printf '%f\n' | grep -v -- "$2" | sort | paste -sd, -
}
cat >"$conf/janus.jcfg" <<EOF
general: {
	configs_folder = "$conf"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	session_timeout = 60
}
certificates: {
}
media: {
}
nat: {
	nice_debug = false
	ignore_mdns = true
	ice_enforce_list = "jv0"
}
plugins: {
	disable = "$(others plugins libjanus_videoroom.so)"
}
transports: {
	disable = "$(others transports libjanus_http.so)"
}
loggers: {
	disable = "$(others loggers '^$')"
}
events: {
	broadcast = false
	disable = "$(others events '^$')"
}
EOF
cat >"$conf/janus.transport.http.jcfg" <<EOF
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = 8088
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
cat >"$conf/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
taskset -c 0 janus -C "$conf/janus.jcfg" -F "$conf" -o -N -L "$out/janus.server.log" \
    >/dev/null 2>&1 &
server=$!
wait_http "$JANUS_URL/info"
janus_status=0
load janus --target janus --janus-url "$JANUS_URL" || janus_status=$?
cleanup

# ---- both ----
python3 - "$out" <<'EOF'
import json, os, sys

out = sys.argv[1]
reports = {}
for name in ("weir", "janus"):
    path = os.path.join(out, name + ".json")
    if os.path.exists(path):
        with open(path) as f:
            reports[name] = json.load(f)

fields = [
    ("packets_sent", "packets sent"),
    ("packets_expected", "packets expected"),
    ("packets_received", "packets received"),
    ("loss_ratio", "loss ratio"),
    ("forwarded_pps", "forwarded pkt/s"),
    ("server_cpu_seconds", "server CPU (s)"),
    ("server_cpu_percent", "server CPU (% of a core)"),
    ("forwarded_packets_per_cpu_second", "forwarded pkt per CPU-second"),
    ("client_cpu_seconds", "harness CPU (s)"),
    ("join_failures", "join failures"),
]
print()
print("%-30s %14s %14s" % ("", "weir", "janus"))
for key, label in fields:
    row = [reports.get(n, {}).get(key) for n in ("weir", "janus")]
    print("%-30s %14s %14s" % (label, *["-" if v is None else v for v in row]))
for key in ("p50", "p99"):
    row = [reports.get(n, {}).get("latency_ms", {}).get(key) for n in ("weir", "janus")]
    print("%-30s %14s %14s" % ("latency %s (ms)" % key, *["-" if v is None else v for v in row]))
for name, report in reports.items():
    for error in report.get("errors", []):
        print("%s error: %s" % (name, error))

rates = [reports.get(n, {}).get("forwarded_packets_per_cpu_second") for n in ("weir", "janus")]
ratio = rates[0] / rates[1] if all(rates) else None
print()
if ratio is None:
    print("ratio of forwarded packets per CPU-second (weir / janus): n/a")
else:
    print("ratio of forwarded packets per CPU-second (weir / janus): %.2f" % ratio)
with open(os.path.join(out, "compare.json"), "w") as f:
    json.dump({"weir": reports.get("weir"), "janus": reports.get("janus"),
               "forwarded_packets_per_cpu_second_ratio": None if ratio is None else round(ratio, 3)},
              f, indent=2)
    f.write("\n")
print("reports: %s/{weir,janus,compare}.json" % out)
EOF
[[ $weir_status -eq 0 && $janus_status -eq 0 ]]
