#!/usr/bin/env bash
# RTP relay benchmark: Trunkgate's in-process media relay next to rtpengine (the reference),
# on the same paced load from the same tool. A benchmark, not a test: it prints figures.
#
#   benches/rtp_relay.sh [--calls "100 1000 3500"] [--duration 20] [--cps 500]
#                        [--relay-threads 2] [--tool-threads 2] [--tool-sockets 4]
#                        [--fastpath "userspace kernel"] [--hold "10000"] [--hold-cps 1000]
#                        [--no-rtpengine] [--no-trunkgate] [--no-direct] [--smoke]
#
# For each point (concurrent calls): a fresh relay process, then crates/trunkgate-rtpgen sets
# the calls up (rtpengine: ng offer/answer; Trunkgate: SIP INVITE/200/ACK, the tool being
# both the PBX and the trunk), sends one G.711-sized stream each way per call (160-byte
# payload, PT 8, 50 packets/s, paced evenly over the 20 ms period) for --duration seconds,
# receives both ends, and reports loss, one-way latency through the relay (send time is
# stamped into each packet from one monotonic clock) and the relay's CPU per relayed packet
# (utime+stime of the relay process over the send window / packets the tool received).
# 100 calls = 10,000 packets/s relayed, 1,000 = 100,000, 3,500 = 350,000.
#
# CPU is counted two ways. "relay process µs/packet": the relay process's utime+stime. "host
# µs/packet": every CPU's busy time (/proc/stat: user, nice, system, irq, softirq, steal) over
# the same window — the kernel fast path (media.fastpath = "kernel") runs in softirq and in
# the sender's system calls, in no process of its own, so only this figure sees it. "net
# µs/packet" is the host figure minus the tool alone ("direct", same calls, same script): what
# relaying adds, wherever it runs.
#
# --fastpath MODES: Trunkgate's media.fastpath values to run (default "userspace kernel"; the
# kernel one needs root, clang-built BPF and Linux >= 6.6). "trunkgate-kernel" rows use the
# BPF path with sk_lookup: anchored calls hold no socket, so "relay fds" stays flat.
#
# --hold "N ...": concurrency points — N anchored calls set up at --hold-cps and held with
# media at 1 packet/s per direction for --duration, through every relay, over a port range
# of 16384-65535 (12,288 calls at 4 ports each); "failed calls" and "relay fds" say where
# each gives. The descriptor hard limit (20,000 on the build machines) caps a relay that
# binds 4 sockets per call near 4,500 calls (Trunkgate's budget) or 5,000 (rtpengine).#
# The tool runs with --shared-sockets TOOL_SOCKETS (default 4 per side; 0 = one socket per call
# per side): its streams share a few sockets each side (batched sendmmsg/recvmmsg, a 200 µs
# send/receive tick, kernel receive timestamps), because one socket per stream costs two
# system calls per packet, more than the 2 cores can give next to the relay at 350k packets/s.
# The relays are unaffected: each call still has its own relay ports; only the address the
# relay sends each call to is one of a few. Latency = kernel receive time - send stamp.
#
#   rtpengine: Debian `rtpengine-daemon` (installed when missing), run in the foreground, no
#              config file, userspace forwarding (--table=-1), --num-threads=RELAY_THREADS,
#              its poller threads at nice -10 (--scheduling=other --priority=-10), as
#              Trunkgate's relay threads are by default (media.nice = -10),
#              interface 127.0.61.1, ng on 127.0.61.1:22222, ports 20000-39999; the tool's
#              media on 127.0.61.2 (caller) / 127.0.61.3 (callee).
#   Trunkgate: release build, config/trunkgate.toml with every 127.0.0.x moved to 127.0.60.x
#              (SBC .1, PBX .2, carrier-a .3), the per-trunk limits raised out of the way and
#              a [media] section (threads = RELAY_THREADS, ports 20000-39999).
#   direct:    the tool sending to itself with no relay (its own latency floor and CPU),
#              127.0.62.x. Skipped with --no-direct.
#
# Loopback only (127.0.0.0/8). Every run is bounded (`timeout` around each tool run, relays
# stopped after each point, trap on exit). The open-files soft limit is raised to the hard
# limit (20,000 on the build machines: the tool needs 2 sockets per call, Trunkgate 4).
# Results: target/bench/rtp_relay-<time>/ (JSON lines, logs) and a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CALLS="100 1000 3500"
DURATION=20
CPS=500
RELAY_THREADS=2
TOOL_THREADS=2
TOOL_SOCKETS=4
WITH_RTPENGINE=1
WITH_TRUNKGATE=1
WITH_DIRECT=1
FASTPATHS="userspace kernel"
HOLD=""
HOLD_CPS=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) CALLS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --cps) CPS="$2"; shift ;;
        --relay-threads) RELAY_THREADS="$2"; shift ;;
        --tool-threads) TOOL_THREADS="$2"; shift ;;
        --tool-sockets) TOOL_SOCKETS="$2"; shift ;;
        --no-rtpengine) WITH_RTPENGINE=0 ;;
        --no-trunkgate) WITH_TRUNKGATE=0 ;;
        --no-direct) WITH_DIRECT=0 ;;
        --fastpath) FASTPATHS="$2"; shift ;;
        --hold) HOLD="$2"; shift ;;
        --hold-cps) HOLD_CPS="$2"; shift ;;
        --smoke) CALLS="50"; DURATION=3 ;;
        -h|--help) sed -n '2,60p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/benches/lib.sh"
if [ "$WITH_RTPENGINE" = 1 ] && ! command -v rtpengine >/dev/null 2>&1; then
    apt_install rtpengine-daemon
    # The package enables its systemd unit; this benchmark runs its own instance only.
    as_root systemctl disable --now rtpengine-daemon >/dev/null 2>&1 || true
fi
ulimit -n "$(ulimit -Hn)"

echo "building trunkgate and trunkgate-rtpgen (release)..."
cargo build --release -p trunkgate -p trunkgate-rtpgen
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
GEN="$BIN/trunkgate-rtpgen"
TG_BIN="$BIN/trunkgate"

STAMP=$(date +%Y%m%d-%H%M%S)
WORK="$ROOT/target/bench/rtp_relay-$STAMP"
mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }


# run_point LABEL RELAY_PID CALLS MODE-ARGS...: one tool run against a running relay.
run_point() {
    local label=$1 pid=$2 calls=$3 bound out t0 t1
    shift 3
    out="$WORK/$label-$calls"
    if [ -n "$pid" ]; then
        # Idle baseline: what the relay burns with no traffic (timers), over 2 s.
        t0=$(ticks "$pid"); sleep 2; t1=$(ticks "$pid")
        echo "$label idle: $(( (t1 - t0) * 1000 / CLK_TCK / 2 )) ms CPU per second" | tee "$out.idle"
    fi
    # Setup ramp + RTP + drain + teardown, with room to spare.
    local cps=${POINT_CPS:-$CPS}
    bound=$(awk -v c="$calls" -v r="$cps" -v d="$DURATION" 'BEGIN { printf "%d", 2 * c / r + d + 60 }')
    timeout --kill-after=5s "${bound}s" "$GEN" "$@" ${POINT_PPS:+--pps "$POINT_PPS"} --calls "$calls" --cps "$cps" \
        --duration "$DURATION" --threads "$TOOL_THREADS" --shared-sockets "$TOOL_SOCKETS" \
        ${pid:+--cpu-pid "$pid"} \
        --label "$label" --json > "$out.json" 2> "$out.err" || echo "$label $calls: tool exit $?" >&2
    tail -n 4 "$out.err" | sed "s/^/  /"
    cat "$out.json" >> "$RESULTS"
}

# ---- rtpengine (reference) ---------------------------------------------------------------
start_rtpengine() { # log
    rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1 \
        --interface=127.0.61.1 --listen-ng=127.0.61.1:22222 --port-min=20000 --port-max=39999 \
        --num-threads="$RELAY_THREADS" --scheduling=other --priority=-10 \
        --delete-delay=0 --timeout=60 ${2:+--port-min=$2 --port-max=$3} > "$1" 2>&1 &
    RE_PID=$!
    PIDS+=("$RE_PID")
    for _ in $(seq 50); do
        ss -lun 2>/dev/null | grep -q '127.0.61.1:22222 ' && return 0
        kill -0 "$RE_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "rtpengine did not start:" >&2
    tail -20 "$1" >&2
    exit 1
}
if [ "$WITH_RTPENGINE" = 1 ]; then
    echo "rtpengine: $(rtpengine --version 2>&1 | head -1), userspace (--table=-1), $RELAY_THREADS threads"
    for n in $CALLS; do
        start_rtpengine "$WORK/rtpengine-$n.log"
        run_point rtpengine "$RE_PID" "$n" ng --ng 127.0.61.1:22222 \
            --media-ip 127.0.61.2 --trunk-media-ip 127.0.61.3
        stop_pid "$RE_PID"
    done
    for n in $HOLD; do
        start_rtpengine "$WORK/rtpengine-hold-$n.log" 16384 65535
        POINT_CPS=$HOLD_CPS POINT_PPS=1 run_point rtpengine-hold "$RE_PID" "$n" ng --ng 127.0.61.1:22222 \
            --media-ip 127.0.61.2 --trunk-media-ip 127.0.61.3
        stop_pid "$RE_PID"
    done
fi

# ---- Trunkgate -----------------------------------------------------------------------------
start_trunkgate() { # log [config]
    RUST_LOG=${RUST_LOG:-warn} "$TG_BIN" run --config "${2:-$WORK/trunkgate.toml}" > "$1" 2>&1 &
    TG_PID=$!
    PIDS+=("$TG_PID")
    local status=""
    for _ in $(seq 100); do
        status=$(http_get 127.0.60.1 9091 /health 2>/dev/null || true)
        [[ "$status" == "HTTP/1."?" 200"* ]] && return 0
        kill -0 "$TG_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "trunkgate did not become healthy:" >&2
    tail -20 "$1" >&2
    exit 1
}
if [ "$WITH_TRUNKGATE" = 1 ]; then
    sed -e 's/127\.0\.0\./127.0.60./g' \
        -e 's/^max_cps *=.*/max_cps = 100000/' \
        -e 's/^max_sessions *=.*/max_sessions = 100000/' \
        -e 's/^shutdown_grace *=.*/shutdown_grace = "2s"/' \
        config/trunkgate.toml > "$WORK/trunkgate.toml"
    cat >> "$WORK/trunkgate.toml" <<EOF

# ---- added by benches/rtp_relay.sh: media relay for the benchmark --------------------------
[media]
address = "127.0.60.1"
ports = "20000-39999"
timeout = "60s"
threads = $RELAY_THREADS
# ---- end of media block ----------------------------------------------------------------------
[records]
path = "$WORK/trunkgate-records.sqlite"
EOF
    "$TG_BIN" check --config "$WORK/trunkgate.toml"
    for mode in $FASTPATHS; do
        label=trunkgate
        [ "$mode" = userspace ] || label="trunkgate-$mode"
        for ports in 20000-39999 16384-65535; do
            sed -e "s/^ports = .*/ports = \"$ports\"/" "$WORK/trunkgate.toml" > "$WORK/trunkgate-$mode-$ports.toml"
            sed -i "s/^ports = .*/&\nfastpath = \"$mode\"/" "$WORK/trunkgate-$mode-$ports.toml"
        done
        echo "trunkgate: media relay, $RELAY_THREADS threads, media.fastpath = $mode"
        for n in $CALLS; do
            start_trunkgate "$WORK/$label-$n.log" "$WORK/trunkgate-$mode-20000-39999.toml"
            grep -h "media fast path" "$WORK/$label-$n.log" | sed 's/^/  /' || true
            run_point "$label" "$TG_PID" "$n" sip --sbc 127.0.60.1:5060 --pbx 127.0.60.2:5060 \
                --trunk 127.0.60.3:5060 --media-ip 127.0.60.2 --trunk-media-ip 127.0.60.3
            http_get 127.0.60.1 9091 /metrics > "$WORK/$label-$n-metrics.txt" 2>/dev/null || true
            stop_pid "$TG_PID"
        done
        for n in $HOLD; do
            start_trunkgate "$WORK/$label-hold-$n.log" "$WORK/trunkgate-$mode-16384-65535.toml"
            POINT_CPS=$HOLD_CPS POINT_PPS=1 run_point "$label-hold" "$TG_PID" "$n" sip --sbc 127.0.60.1:5060 \
                --pbx 127.0.60.2:5060 --trunk 127.0.60.3:5060 --media-ip 127.0.60.2 --trunk-media-ip 127.0.60.3
            stop_pid "$TG_PID"
        done
    done
fi

# ---- the tool alone --------------------------------------------------------------------------
if [ "$WITH_DIRECT" = 1 ]; then
    for n in $CALLS; do
        run_point direct "" "$n" direct --media-ip 127.0.62.2 --trunk-media-ip 127.0.62.3
    done
    for n in $HOLD; do
        POINT_CPS=$HOLD_CPS POINT_PPS=1 run_point direct-hold "" "$n" direct --media-ip 127.0.62.2 --trunk-media-ip 127.0.62.3
    done
fi

echo
echo "RTP relay, $DURATION s per point, 2 streams x 50 packets/s per call, $(nproc) cores, relay threads $RELAY_THREADS, tool threads $TOOL_THREADS, tool sockets per side $TOOL_SOCKETS:"
echo
"$GEN" table "$RESULTS" | tee "$WORK/table.md"
echo
echo "results: $RESULTS"
echo "logs:    $WORK"
