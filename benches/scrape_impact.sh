#!/usr/bin/env bash
# Does reading the relay stall signaling? (issue 13 item 3, "done when": a `GET /calls` and a
# metrics scrape during a 5,000 calls/s run with 3,000 anchored calls do not raise the SIP
# round-trip p99 by more than 10 %.)
#
#   benches/scrape_impact.sh [--rate 5000] [--concurrent 3000] [--window 10] [--interval 100]
#                            [--bin PATH] [--smoke]
#
# One SIPp run through a release Trunkgate with media anchored (every call's SDP rewritten,
# 4 sockets bound per call): SIPp's built-in `uac` from the PBX address at --rate calls/s,
# each call held (`-d`) concurrent/rate seconds so that ~--concurrent calls are anchored at
# once, to SIPp's built-in `uas` on the carrier address. After a warm-up (hold + 3 s) the run
# has three windows of --window seconds each:
#
#   A1  no readers
#   B   readers: `GET /calls` then `GET /metrics` every --interval ms (one curl process per
#       interval, both on one connection)
#   A2  no readers
#
# The SIP round trip is SIPp's response time INVITE → 200 (the built-in uac's `rtd`, both
# SDPs pass the relay on the way: offer and answer), per call from `-trace_rtt`, assigned to
# a window by its time. Printed per window class (A = A1 + A2, B): calls, mean, p50, p99,
# p99.9, max, and the shares of calls over 4 and 20 ms; then the ratios of the means and of
# the p99s, B/A, against the 1.10 bound. SIPp's response times come in whole milliseconds,
# on this machine in steps of 4 ms (printed): with round trips of a few ms the p99 moves in
# coarse steps, so read the mean and the tail shares beside it.
#
# The same windows are also measured in µs, not SIPp's ms steps: tcpdump on lo captures
# CAP_SECS (3) s of INVITEs and 200s from the middle of each window, and per call (Call-ID)
# the proxy's own time on the INVITE round trip is taken from the capture — INVITE in from
# the PBX → INVITE out to the carrier, plus 200 in from the carrier → 200 out to the PBX —
# with the whole INVITE → 200 seen by the PBX beside it. Printed: p50/p99/p99.9 per window
# and the p99 ratio B/A against the 1.10 bound: the figure the verdict is read from.
#
# Descriptors: the hard open-files limit here is 20,000 and cannot be raised. Userspace
# anchoring holds 4 sockets per call, so 3,000 concurrent calls are 12,000 descriptors in
# Trunkgate (plus SIP, files and the relay's epoll: the default budget gives media 4,275 calls
# at a limit of 20,000); SIPp runs in its single-socket UDP mode (a few descriptors). The
# script refuses a --concurrent that does not fit (4 × concurrent + 2,000 > hard limit).
#
#   Trunkgate 127.0.190.1 (SIP :5060, admin :9091, media 20000-39999), PBX (SIPp uac)
#   127.0.190.2, carrier-a (SIPp uas) 127.0.190.3: config/trunkgate.toml with 127.0.0.x moved
#   to 127.0.190.x and the per-trunk limits raised out of the way.
#
# --bin PATH: run that Trunkgate binary instead of building this tree's (before/after runs).
# --read "PATHS": what the readers GET each interval (default "/calls /metrics"); e.g.
#   "/health /health" is the control: the same reader traffic at no cost inside Trunkgate.
# --smoke: 1,000 calls/s, 600 concurrent, 8 s windows (shows the script works; not the figure).
# Loopback only. Every process is bounded (`timeout`), only the PIDs started here are stopped,
# on exit too. Results: target/bench/scrape_impact-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RATE=5000
CONCURRENT=3000
WINDOW=10
INTERVAL_MS=100
TG_BIN=""
READ="/calls /metrics"
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift ;;
        --concurrent) CONCURRENT="$2"; shift ;;
        --window) WINDOW="$2"; shift ;;
        --interval) INTERVAL_MS="$2"; shift ;;
        --bin) TG_BIN="$2"; shift ;;
        --read) READ="$2"; shift ;;
        --smoke) RATE=1000; CONCURRENT=600; WINDOW=8 ;;
        -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$WINDOW" -gt 60 ]; then
    echo "--window is at most 60 s" >&2
    exit 2
fi

# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/benches/lib.sh"
command -v sipp >/dev/null 2>&1 || apt_install sip-tester
command -v curl >/dev/null 2>&1 || apt_install curl
command -v tcpdump >/dev/null 2>&1 || apt_install tcpdump

HARD=$(ulimit -Hn)
ulimit -n "$HARD"
if [ "$HARD" != unlimited ] && [ $((CONCURRENT * 4 + 2000)) -gt "$HARD" ]; then
    echo "$CONCURRENT concurrent anchored calls need $((CONCURRENT * 4)) sockets (4 per call) plus" \
        "~2,000 other descriptors: over the hard limit of $HARD" >&2
    exit 2
fi

SBC=127.0.190.1
PBX=127.0.190.2
CARRIER=127.0.190.3
ADMIN="$SBC:9091"
HOLD_MS=$((CONCURRENT * 1000 / RATE))
WARMUP=$((HOLD_MS / 1000 + 3))
TOTAL=$((WARMUP + 3 * WINDOW))
CALLS=$((RATE * TOTAL))

STAMP=$(date +%Y%m%d-%H%M%S)
WORK="$ROOT/target/bench/scrape_impact-$STAMP"
mkdir -p "$WORK"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$TG_BIN" ]; then
    echo "building trunkgate (release)..."
    cargo build --release -p trunkgate
    TG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/trunkgate"
fi

sed -e 's/127\.0\.0\./127.0.190./g' \
    -e 's/^max_cps *=.*/max_cps = 1000000/' \
    -e 's/^max_sessions *=.*/max_sessions = 1000000/' \
    -e 's/^shutdown_grace *=.*/shutdown_grace = "2s"/' \
    config/trunkgate.toml > "$WORK/trunkgate.toml"
cat >> "$WORK/trunkgate.toml" <<EOF

# ---- added by benches/scrape_impact.sh ----------------------------------------------------
[media]
address = "$SBC"
ports = "20000-39999"
timeout = "60s"
# ---- end ----------------------------------------------------------------------------------
EOF
"$TG_BIN" check --config "$WORK/trunkgate.toml" > /dev/null

echo "Trunkgate $TG_BIN; $RATE calls/s held ${HOLD_MS} ms (~$CONCURRENT anchored, $((CONCURRENT * 4))" \
    "media sockets of a hard limit of $HARD); warm-up ${WARMUP} s, windows A1/B/A2 of ${WINDOW} s;" \
    "readers every ${INTERVAL_MS} ms in B"

# Trunkgate, bounded: the run plus room to start and drain.
(cd "$WORK" && exec timeout --kill-after=5s $((TOTAL + 60))s env RUST_LOG="${RUST_LOG:-warn}" \
    "$TG_BIN" run --config "$WORK/trunkgate.toml") > "$WORK/trunkgate.log" 2>&1 &
TG_PID=$!
PIDS+=("$TG_PID")
for _ in $(seq 100); do
    curl -sf --max-time 1 -o /dev/null "http://$ADMIN/health" && break
    kill -0 "$TG_PID" 2>/dev/null || { echo "trunkgate exited:" >&2; tail -20 "$WORK/trunkgate.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf --max-time 1 -o /dev/null "http://$ADMIN/health" \
    || { echo "trunkgate /health not 200 after 10 s" >&2; exit 1; }

(cd "$WORK" && exec timeout --kill-after=5s $((TOTAL + 40))s sipp -sn uas -i "$CARRIER" -p 5060 \
    -nostdin -bind_local -buff_size 8388608 -timeout $((TOTAL + 30))s \
    -trace_err -error_file "$WORK/uas-errors.log") > "$WORK/uas.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    ss -lun 2>/dev/null | grep -q "$CARRIER:5060 " && break
    sleep 0.1
done

# Readers: per interval one curl process GETs the paths in turn on one kept-alive connection
# (what a scraper does), started on an absolute schedule (a late start does not push the
# next one back; a pass longer than the interval delays the next, as a scraper would).
read -r -a PATHS <<< "$READ"
for path in "${PATHS[@]}"; do
    out=/dev/null
    [ "$path" = /metrics ] && out="$WORK/metrics-last.txt"
    printf 'url = "http://%s%s"\noutput = "%s"\n' "$ADMIN" "$path" "$out"
done > "$WORK/readers.curl"
readers() {
    local start next now
    start=$(date +%s%N)
    next=$start
    while :; do
        timeout 5 curl -s --max-time 4 -w '%{url_effective} %{http_code} %{time_total} %{size_download}\n' \
            -K "$WORK/readers.curl" >> "$WORK/readers.txt" || true
        next=$((next + INTERVAL_MS * 1000000))
        now=$(date +%s%N)
        if [ "$now" -lt "$next" ]; then
            sleep "$(awk -v ns=$((next - now)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
        else
            next=$now
        fi
    done
}

now_ms() { date +%s%3N; }
T0=$(now_ms)
(cd "$WORK" && exec timeout --kill-after=5s $((TOTAL + 30))s sipp -sn uac "$SBC:5060" -i "$PBX" -p 5060 \
    -r "$RATE" -m "$CALLS" -d "$HOLD_MS" -l $((CONCURRENT * 2)) -nostdin -aa \
    -buff_size 8388608 -timeout $((TOTAL + 20))s -recv_timeout 5000 \
    -trace_rtt -rtt_freq 1000 -trace_stat -fd 1 -stf "$WORK/uac-stat.csv" \
    -trace_err -error_file "$WORK/uac-errors.log") > "$WORK/uac.out" 2>&1 &
UAC_PID=$!
PIDS+=("$UAC_PID")

CAP_SECS=${CAP_SECS:-3}
[ "$CAP_SECS" -lt "$WINDOW" ] || CAP_SECS=$((WINDOW - 1))
# capture NAME: CAP_SECS s of INVITEs and 200s on the test net from the middle of a window.
capture() {
    sleep "$(( (WINDOW - CAP_SECS) / 2 ))"
    timeout -s INT --kill-after=3s "$CAP_SECS" tcpdump -i lo -nn -Z root -s 1500 -B 65536 \
        -w "$WORK/cap-$1.pcap" \
        "udp and net ${SBC%.*}.0/24 and (udp[8:4] = 0x494e5649 or (udp[8:4] = 0x5349502f and udp[16:4] = 0x32303020))" \
        2> "$WORK/cap-$1.log" || true
}
sleep "$WARMUP"
A1=$(( $(now_ms) - T0 ))
capture A1 & PIDS+=($!)
sleep "$WINDOW"
B=$(( $(now_ms) - T0 ))
capture B & PIDS+=($!)
readers &
READERS_PID=$!
PIDS+=("$READERS_PID")
sleep "$WINDOW"
kill -TERM "$READERS_PID" 2>/dev/null || true
A2=$(( $(now_ms) - T0 ))
capture A2 & PIDS+=($!)
sleep "$WINDOW"
END=$(( $(now_ms) - T0 ))
wait "$UAC_PID" || true

RTT=$(find "$WORK" -maxdepth 1 -name 'uac_*_rtt.csv' | head -1)
[ -n "$RTT" ] || { echo "no SIPp rtt file (see $WORK/uac.out)" >&2; exit 1; }
field() { # stat file column by name, last line
    awk -F';' -v n="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i } END { print $c }' \
        "$WORK/uac-stat.csv"
}
echo
echo "SIPp: created $(field TotalCallCreated), successful $(field 'SuccessfulCall(C)'), failed $(field 'FailedCall(C)')"
if [ -s "$WORK/metrics-last.txt" ]; then
    awk '$1 == "trunkgate_media_sessions" { printf "anchored calls at the last scrape in B (trunkgate_media_sessions): %d\n", $2 }' \
        "$WORK/metrics-last.txt"
fi
if [ -s "$WORK/readers.txt" ]; then
    awk '$2 == "000" { next } { k = $1; sub(/.*\//, "", k); n[k]++; t[k] += $3; s[k] = $4; if ($2 != 200) bad[k]++; if ($3 > max[k]) max[k] = $3 }
        END { for (k in n) printf "readers: %d x GET /%s, mean %.1f ms, max %.1f ms, %d bytes, %d not 200\n",
            n[k], k, t[k] / n[k] * 1000, max[k] * 1000, s[k], bad[k] }' "$WORK/readers.txt" | sort
fi

# Samples: "time_ms;rtt_ms;rtd_no" (rtd 1 = INVITE → 200), windows by time since SIPp start.
summary() { # class samples p99-out
    sort -n "$2" | awk -v c="$1" -v out="$3" '{ v[NR] = $1; s += $1; if ($1 > 4) over4++; if ($1 > 20) over20++ }
        END {
            if (NR == 0) { printf "%s: no samples\n", c; exit }
            i50 = int((NR - 1) * 0.50 + 0.5) + 1; i99 = int((NR - 1) * 0.99 + 0.5) + 1
            i999 = int((NR - 1) * 0.999 + 0.5) + 1
            printf "%-12s calls %6d  mean %6.2f ms  p50 %3d  p99 %4d  p99.9 %4d  max %5d ms  > 4 ms %6.3f %%  > 20 ms %6.3f %%\n",
                c, NR, s / NR, v[i50], v[i99], v[i999], v[NR], over4 * 100 / NR, over20 * 100 / NR
            if (out != "") printf "%d %.4f\n", v[i99], s / NR > out
        }'
}
awk -F';' -v a1="$A1" -v b="$B" -v a2="$A2" -v e="$END" -v dir="$WORK" 'NR > 1 && $3 == 1 {
        t = $1 + 0
        if (t >= a1 && t < b) w = "A1"; else if (t >= b && t < a2) w = "B"; else if (t >= a2 && t < e) w = "A2"
        else next
        print $2 > (dir "/rtt-" w ".txt")
        if (w != "B") print $2 > (dir "/rtt-A.txt")
        if ($2 > 0 && (step == "" || $2 < step)) step = $2
    } END { print step + 0 > (dir "/rtt-step.txt") }' "$RTT"
touch "$WORK/rtt-A.txt" "$WORK/rtt-B.txt" "$WORK/rtt-A1.txt" "$WORK/rtt-A2.txt"
echo "SIP round trip INVITE → 200 (SIPp response times; here in steps of $(cat "$WORK/rtt-step.txt") ms:" \
    "read the mean and the tail shares beside the p99):"
summary "A1 (no read)" "$WORK/rtt-A1.txt" ""
summary "B (readers)" "$WORK/rtt-B.txt" ""
summary "A2 (no read)" "$WORK/rtt-A2.txt" ""
summary "A = A1 + A2" "$WORK/rtt-A.txt" "$WORK/p99-A.txt"
summary "B" "$WORK/rtt-B.txt" "$WORK/p99-B.txt" > /dev/null
touch "$WORK/p99-A.txt" "$WORK/p99-B.txt"
awk 'FNR == 1 { p[FILENAME ~ /-B/ ? "b" : "a"] = $1; m[FILENAME ~ /-B/ ? "b" : "a"] = $2 }
    END {
        if (!("a" in p) || !("b" in p)) { print "p99 ratio: no samples"; exit }
        printf "mean: A %.2f ms, B %.2f ms, ratio B/A %.2f\n", m["a"], m["b"], (m["a"] > 0 ? m["b"] / m["a"] : 0)
        if (p["a"] == 0) { printf "p99: A %d ms, B %d ms (A below SIPp resolution)\n", p["a"], p["b"]; exit }
        r = p["b"] / p["a"]
        printf "p99: A %d ms, B %d ms, ratio B/A %.2f (%s the 1.10 bound)\n", p["a"], p["b"], r, (r <= 1.10 ? "within" : "over")
    }' "$WORK/p99-A.txt" "$WORK/p99-B.txt"

# From a capture: per call whose INVITE and 200 were seen on both legs, "PROXY WHOLE" in µs.
proxy_rtt() {
    tcpdump -r "$1" -nn -tt -A 2>/dev/null | awk -v pbx="$PBX." -v uas="$CARRIER." '
        function flush() {
            if (cid != "" && inv && kind != "") {
                k = kind (index(src, pbx) == 1 ? "_from_pbx" : index(dst, pbx) == 1 ? "_to_pbx" : index(src, uas) == 1 ? "_from_uas" : "_to_uas")
                if (!((k, cid) in t)) { t[k, cid] = ts; if (k == "resp_to_pbx") order[++n] = cid }
            }
            kind = ""; cid = ""; inv = 0
        }
        /^[0-9]+\.[0-9]+ IP / {
            flush(); split($1, a, "."); if (base == "") base = a[1]
            ts = (a[1] - base) * 1000000 + a[2]; src = $3; dst = $5; next
        }
        kind == "" && index($0, "INVITE sip:") { kind = "req" }
        kind == "" && index($0, "SIP/2.0 200") { kind = "resp" }
        /^(Call-ID|i):/ { cid = $2; sub(/[.\r]+$/, "", cid) }
        /^CSeq:/ && / INVITE/ { inv = 1 }
        END {
            flush()
            for (i = 1; i <= n; i++) {
                c = order[i]
                if (!(("req_from_pbx", c) in t) || !(("req_to_uas", c) in t) || !(("resp_from_uas", c) in t)) continue
                proxy = (t["req_to_uas", c] - t["req_from_pbx", c]) + (t["resp_to_pbx", c] - t["resp_from_uas", c])
                print proxy, t["resp_to_pbx", c] - t["req_from_pbx", c]
            }
        }'
}
us_summary() { # LABEL FILE COLUMN -> prints a line, writes "p99" to FILE.p99
    awk -v c="$3" '{ print $c }' "$2" | sort -g | awk -v l="$1" -v out="$2.p99.$3" '{ v[NR] = $1; s += $1 }
        END {
            if (NR == 0) { printf "%-14s no samples\n", l; exit }
            i50 = int((NR - 1) * 0.50 + 0.5) + 1; i99 = int((NR - 1) * 0.99 + 0.5) + 1
            i999 = int((NR - 1) * 0.999 + 0.5) + 1
            printf "%-14s calls %6d  mean %7.1f  p50 %6d  p99 %7d  p99.9 %7d  max %8d µs\n", l, NR, s / NR, v[i50], v[i99], v[i999], v[NR]
            print v[i99] > out
        }'
}
for w in A1 B A2; do
    if [ -s "$WORK/cap-$w.pcap" ]; then proxy_rtt "$WORK/cap-$w.pcap" > "$WORK/us-$w.txt"; else : > "$WORK/us-$w.txt"; fi
done
cat "$WORK/us-A1.txt" "$WORK/us-A2.txt" > "$WORK/us-A.txt"
for col in 1 2; do
    if [ "$col" = 1 ]; then
        echo "INVITE round trip inside the proxy (capture, µs: INVITE in → out + 200 in → out):"
    else
        echo "INVITE → 200 as the PBX sees it (capture, µs, the carrier's turnaround included):"
    fi
    for w in A1 B A2 A; do
        us_summary "$w$( [ "$w" = B ] && echo ' (readers)')" "$WORK/us-$w.txt" "$col"
    done
    a=$(cat "$WORK/us-A.txt.p99.$col" 2>/dev/null || echo 0); b=$(cat "$WORK/us-B.txt.p99.$col" 2>/dev/null || echo 0)
    awk -v a="$a" -v b="$b" 'BEGIN { if (a == 0) { print "  p99 ratio: no samples"; exit }
        r = b / a; printf "  p99 B/A = %d / %d µs = %.2f (%s the 1.10 bound)\n", b, a, r, (r <= 1.10 ? "within" : "over") }'
done
echo "results: $WORK"
