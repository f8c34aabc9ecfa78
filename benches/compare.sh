#!/usr/bin/env bash
# Trunkgate next to Kamailio (+ rtpengine) on the same SIPp load: one table, both systems,
# the ratio per figure and the targets of issue 13.
#
#   benches/compare.sh [--smoke | --quick] [--runs N] [--seconds N] [--trunkgate-bin PATH]
#                      [--no-trunkgate | --no-kamailio] [--kamailio-udp4-raw]
#   benches/compare.sh --check-dialog-limit     # prove both limits reject, then exit
#
# Builds trunkgate (release) unless --trunkgate-bin is given, installs Debian's sip-tester,
# kamailio, rtpengine-daemon and tcpdump when missing, then for each point starts a fresh
# proxy, runs one SIPp UAC step through it (UDP) to a SIPp UAS, and records SIPp's counters,
# the proxy's CPU time (utime+stime of all its processes; Kamailio + rtpengine together for
# the anchored rows) and its memory (PSS summed over its processes, smaps_rollup).
#
# Main scenario: SIPp's built-in uac/uas, 180 Ringing, calls held 1 s (-d 1000). Second:
# no ringing (benches/sipp/uas_no_ringing.xml). RUNS runs per point (default 3): median and
# the spread (min-max). Points of a full run:
#   CPU per call at 4,000 calls/s, ringing and no ringing (media not anchored);
#   highest clean rate (< 0.1 % of planned calls not successful in every run) on the ladder
#     2,000 .. 12,000 calls/s, ringing and no ringing; a rate with one unclean run stops its
#     point (the CPU rate always gets all runs); two unclean rates in a row end the ladder;
#   memory: PSS peak (sampled every second) while 12,000 calls/s run for 15 s;
#   media anchored (Trunkgate's relay, media.fastpath = "userspace"; Kamailio's rtpengine module to an
#     rtpengine-daemon, --table=-1): CPU per call at 2,500 calls/s and the clean rate on
#     2,500 / 4,000 / 5,000, rates the descriptor limit cannot hold skipped (arithmetic printed);
#   media anchored by Trunkgate's kernel fast path (media.fastpath = "kernel": BPF with
#     sk_lookup, no socket per call, ports 16384-65535), same rates with no descriptor ceiling;
#     Trunkgate only (the reference has no equivalent: rtpengine's kernel module cannot be
#     built here). Needs root; --no-tg-kernel leaves it out;
#   BYE -> 200 round trip through the proxy, p50, at 4,000 calls/s with ringing: tcpdump on lo
#     for 3 s of the step (only the PBX's BYEs and the proxy's 200s to the PBX), time from the
#     UAC's BYE to the proxy's 200 for the same Call-ID (SIPp's own rtd has 1 ms resolution).
#
#   Trunkgate  127.0.195.1 (PBX 127.0.195.2, carrier 127.0.195.3), admin 127.0.195.1:9091:
#              config/trunkgate.toml moved to 127.0.195.x, per-trunk max_cps/max_sessions
#              raised to 1,000,000 (checked, never binding), media anchoring off except in the
#              anchored rows, call records on (written under the results directory).
#   Kamailio   127.0.196.1 (PBX .2, carrier .3): benches/kamailio/compare.cfg (tm, rr,
#              dialog with a per-trunk profile limit, allow list), children=4,
#              -x tlsf -X tlsf -m 4096 -M 32; anchored: -A WITH_RTPENGINE.
#   rtpengine  127.0.197.1, ng on 127.0.197.1:22222, foreground, userspace (--table=-1),
#              2 threads, ports 20000-39999, --delete-delay=0.
#
# --smoke: tiny rates (<= 300 calls/s), 3 s steps, 1 run: the script end to end, the figures
#          mean nothing. --quick: full rates, 1 run, 5 s steps, a shorter ladder.
# --kamailio-udp4-raw: Kamailio sends through a raw socket (udp4_raw=1), off by default.
#
# Loopback only. Every step is bounded (SIPp -timeout and an outer `timeout`); the EXIT trap
# stops only the processes this script started. Results: target/bench/compare-<time>/
# (results.csv, logs, table.md); the table is printed as markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/benches/lib.sh"

RUNS=3
SECS=10
HOLD_MS=1000
CPU_RATE=4000
LADDER="2000 4000 6000 8000 10000 12000"
MEM_RATE=12000
MEM_SECS=15
ANCHOR_CPU_RATE=2500
ANCHOR_LADDER="2500 4000 5000"
ANCHOR_TARGET=5000
RTT_CAPTURE_SECS=3
MODE=full
TG_BIN=""
WITH_TRUNKGATE=1
WITH_KAMAILIO=1
KAM_DEFINES=()
CHECK_LIMIT=0
TG_KERNEL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke)
            MODE=smoke; RUNS=1; SECS=3; CPU_RATE=200; LADDER="100 200"; MEM_RATE=300
            MEM_SECS=3; ANCHOR_CPU_RATE=100; ANCHOR_LADDER="100 200"; ANCHOR_TARGET=200
            RTT_CAPTURE_SECS=1 ;;
        --quick) MODE=quick; RUNS=1; SECS=5; LADDER="2000 4000 8000 12000" ;;
        --runs) RUNS="$2"; shift ;;
        --seconds) SECS="$2"; shift ;;
        --trunkgate-bin) TG_BIN="$2"; shift ;;
        --no-trunkgate) WITH_TRUNKGATE=0 ;;
        --no-tg-kernel) TG_KERNEL=0 ;;
        --no-kamailio) WITH_KAMAILIO=0 ;;
        --kamailio-udp4-raw) KAM_DEFINES+=(-A WITH_UDP4_RAW) ;;
        --check-dialog-limit) CHECK_LIMIT=1 ;;
        -h|--help) sed -n '2,53p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SECS" -gt 20 ] || [ "$SECS" -lt 1 ]; then
    echo "--seconds is 1..20" >&2
    exit 2
fi
HOLD_S=$((HOLD_MS / 1000))

# ---- tools ----------------------------------------------------------------------------------
command -v sipp >/dev/null 2>&1 || apt_install sip-tester
command -v tcpdump >/dev/null 2>&1 || apt_install tcpdump
if [ "$WITH_KAMAILIO" = 1 ] || [ "$CHECK_LIMIT" = 1 ]; then
    if ! command -v kamailio >/dev/null 2>&1; then
        apt_install kamailio
        # The package may enable its own service (Debian's cfg listens on 5060); this
        # benchmark runs its own instances only.
        as_root systemctl disable --now kamailio >/dev/null 2>&1 || true
    fi
    if ! command -v rtpengine >/dev/null 2>&1; then
        apt_install rtpengine-daemon
        as_root systemctl disable --now rtpengine-daemon >/dev/null 2>&1 || true
    fi
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

STAMP=$(date +%Y%m%d-%H%M%S)
WORK="$ROOT/target/bench/compare-$STAMP"
mkdir -p "$WORK" "$WORK/kamailio-run"
CSV="$WORK/results.csv"
echo "system,scenario,media,rate,seconds,run,planned,created,ok,failed,not_ok_pct,wall_s,cpu_ms,cpu_us_per_call,pss_mb,pss_peak_mb,bye_rtt_p50_us,bye_proxy_p50_us,bye_calls" > "$CSV"
CLK_TCK=$(getconf CLK_TCK)

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$TG_BIN" ] && { [ "$WITH_TRUNKGATE" = 1 ] || [ "$CHECK_LIMIT" = 1 ]; }; then
    echo "building trunkgate (release)..." >&2
    cargo build --release -p trunkgate >&2
    TG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/trunkgate"
fi

# ---- Trunkgate ------------------------------------------------------------------------------
TG_IP=127.0.195
# tg_config FILE ANCHOR(0|1) [MAX_SESSIONS]
tg_config() {
    sed -e "s/127\.0\.0\./$TG_IP./g" \
        -e 's/^max_cps *=.*/max_cps = 1000000/' \
        -e "s/^max_sessions *=.*/max_sessions = ${3:-1000000}/" \
        -e 's/^shutdown_grace *=.*/shutdown_grace = "2s"/' \
        config/trunkgate.toml > "$1"
    if [ "$2" = 0 ]; then
        sed -i 's/^max_cps *=.*/&\nmedia = { anchor = false }/' "$1"
    fi
    local records
    records="$WORK/trunkgate-records-$(basename "$1" .toml).sqlite"
    printf '\n# ---- added by benches/compare.sh ----\n[records]\npath = "%s"\n' "$records" >> "$1"
    "$TG_BIN" check --config "$1" >/dev/null
}

# start_trunkgate CONFIG LOG: appends to PROXY_PIDS
start_trunkgate() {
    local status=""
    RUST_LOG=${RUST_LOG:-warn} "$TG_BIN" run --config "$1" > "$2" 2>&1 &
    PROXY_PIDS+=("$!")
    PIDS+=("$!")
    for _ in $(seq 100); do
        status=$(http_get "$TG_IP.1" 9091 /health 2>/dev/null || true)
        [[ "$status" == "HTTP/1."?" 200"* ]] && return 0
        kill -0 "$!" 2>/dev/null || break
        sleep 0.1
    done
    echo "trunkgate did not become healthy:" >&2
    tail -20 "$2" >&2
    exit 1
}

# ---- Kamailio, rtpengine --------------------------------------------------------------------
KAM_IP=127.0.196
RE_IP=127.0.197
KAM_CFG="$ROOT/benches/kamailio/compare.cfg"
# start_kamailio LOG DEFINE...: appends to PROXY_PIDS
start_kamailio() {
    local log=$1
    shift
    kamailio -f "$KAM_CFG" -DD -E -m 4096 -M 32 -x tlsf -X tlsf -Y "$WORK/kamailio-run" \
        "${KAM_DEFINES[@]}" "$@" > "$log" 2>&1 &
    PROXY_PIDS+=("$!")
    PIDS+=("$!")
    wait_udp "$KAM_IP.1" 5060 "$!" || { echo "kamailio did not start:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 1 # the workers fork after the socket is bound: their start is not the step's CPU
}
# start_rtpengine LOG: appends to PROXY_PIDS (before Kamailio: its rtpengine module pings
# rtpengine at start and disables an unreachable one for a minute)
start_rtpengine() {
    rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1 \
        --interface="$RE_IP.1" --listen-ng="$RE_IP.1:22222" --port-min=20000 --port-max=39999 \
        --num-threads=2 --delete-delay=0 --timeout=60 > "$1" 2>&1 &
    PROXY_PIDS+=("$!")
    PIDS+=("$!")
    wait_udp "$RE_IP.1" 22222 "$!" || { echo "rtpengine did not start:" >&2; tail -20 "$1" >&2; exit 1; }
}

# ---- SIPp -----------------------------------------------------------------------------------
UAS_PID=""
# start_uas SCENARIO(ring|noring) IP LOGPREFIX
start_uas() {
    local uas_args=(-sn uas)
    [ "$1" = noring ] && uas_args=(-sf "$ROOT/benches/sipp/uas_no_ringing.xml")
    sipp "${uas_args[@]}" -i "$2" -p 5060 -nostdin -aa -bind_local -max_socket 4096 \
        -buff_size 4194304 -timeout 3600s -trace_err -error_file "$3-uas-errors.log" \
        > "$3-uas.out" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    wait_udp "$2" 5060 "$UAS_PID" || { echo "SIPp UAS on $2 did not start:" >&2; cat "$3-uas.out" >&2; exit 1; }
}
stop_uas() { [ -n "$UAS_PID" ] && stop_pid "$UAS_PID"; UAS_PID=""; }

# rtt_capture NET OUT DELAY SECS: after DELAY s, SECS s of the BYEs and 200s on NET (both
# legs: PBX <-> proxy, proxy <-> carrier), in the background
rtt_capture() {
    sleep "$3"
    # UDP payload starting "BYE " or "SIP/2.0 200 ".
    timeout -s INT --kill-after=3s "$4" tcpdump -i lo -nn -Z root -s 1500 -B 32768 -w "$2" \
        "udp and net $1.0/24 and (udp[8:4] = 0x42594520 or (udp[8:4] = 0x5349502f and udp[16:4] = 0x32303020))" \
        2> "$2.log" || true
}
# rtt_calls PCAP NET: per call (Call-ID) whose BYE and its 200 were seen on both legs, "RTT PROXY"
# in µs: RTT = the PBX's BYE to the proxy's 200 to the PBX (tcpdump on lo stamps a datagram
# when it is sent); PROXY = the proxy's own part of it (BYE in -> BYE out + 200 in -> 200 out),
# the rest being the carrier's (SIPp UAS's) turnaround. PROXY is "-" if the proxy changes the
# Call-ID towards the carrier.
rtt_calls() {
    tcpdump -r "$1" -nn -tt -A 2>/dev/null | awk -v pbx="$2.2." -v uas="$2.3." '
        function flush() {
            if (cid != "" && bye && kind != "") {
                k = kind (index(src, pbx) == 1 ? "_from_pbx" : index(dst, pbx) == 1 ? "_to_pbx" : index(src, uas) == 1 ? "_from_uas" : "_to_uas")
                if (!((k, cid) in t)) {
                    t[k, cid] = ts
                    if (k == "resp_to_pbx") order[++n] = cid
                }
            }
            kind = ""; cid = ""; bye = 0
        }
        /^[0-9]+\.[0-9]+ IP / {
            flush()
            split($1, a, "."); if (base == "") base = a[1]
            ts = (a[1] - base) * 1000000 + a[2]
            src = $3; dst = $5
            next
        }
        kind == "" && index($0, "BYE sip:") { kind = "req" }
        kind == "" && index($0, "SIP/2.0 200") { kind = "resp" }
        /^(Call-ID|i):/ { cid = $2; sub(/[.\r]+$/, "", cid) }
        /^CSeq:/ && / BYE/ { bye = 1 }
        END {
            flush()
            for (i = 1; i <= n; i++) {
                c = order[i]
                if (!(("req_from_pbx", c) in t)) continue
                rtt = t["resp_to_pbx", c] - t["req_from_pbx", c]
                proxy = "-"
                if ((("req_to_uas", c) in t) && (("resp_from_uas", c) in t))
                    proxy = (t["req_to_uas", c] - t["req_from_pbx", c]) + (t["resp_to_pbx", c] - t["resp_from_uas", c])
                print rtt, proxy
            }
        }'
}
# p50 COLUMN < "RTT PROXY" lines: median of the column ("-" if none)
p50() {
    awk -v c="$1" '$c != "-" { print $c }' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "-"; else printf "%.0f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# run_point SYSTEM SCENARIO MEDIA RATE SECS RUN FLAGS: one SIPp step through a fresh proxy.
# FLAGS: "rtt" (capture the BYE round trip), "mem" (sample PSS every second). Sets LAST_CLEAN.
run_point() {
    local sys=$1 scen=$2 media=$3 rate=$4 secs=$5 run=$6 flags=$7
    local net tag planned stf before after t0 elapsed_ms created ok failed not_ok cpu_ms per_call
    local pss peak=0 rtt="-" rtt_proxy="-" rtt_n=0 cap_pid="" mem_pid="" pcap bound
    tag="$WORK/$sys-$scen-$media-$rate-r$run"
    PROXY_PIDS=()
    case "$sys" in
        trunkgate)
            net=$TG_IP
            rm -f "$WORK"/trunkgate-records-*.sqlite*
            start_trunkgate "$WORK/trunkgate-$media.toml" "$tag-proxy.log" ;;
        kamailio)
            net=$KAM_IP
            if [ "$media" = anchor ]; then
                start_rtpengine "$tag-rtpengine.log"
                start_kamailio "$tag-proxy.log" -A WITH_RTPENGINE
            else
                start_kamailio "$tag-proxy.log"
            fi ;;
    esac
    # A fresh UAS too: calls a failing step left behind (200s retransmitted for 32 s) stay
    # out of the next step.
    start_uas "$scen" "$net.3" "$tag"
    planned=$((rate * secs))
    stf="$tag-uac.csv"
    pcap="$tag.pcap"
    if [[ "$flags" == *rtt* ]]; then
        rtt_capture "$net" "$pcap" "$(( secs > RTT_CAPTURE_SECS + 1 ? 2 : 1 ))" "$RTT_CAPTURE_SECS" &
        cap_pid=$!
        PIDS+=("$cap_pid")
    fi
    if [[ "$flags" == *mem* ]]; then
        ( while :; do tree_pss_mb "${PROXY_PIDS[@]}"; sleep 1; done ) > "$tag-pss.txt" &
        mem_pid=$!
        PIDS+=("$mem_pid")
    fi
    bound=$((secs + HOLD_S + 10))
    before=$(tree_ticks "${PROXY_PIDS[@]}")
    t0=$(date +%s%N)
    timeout --kill-after=5s "$((bound + 5))s" \
        sipp -sn uac "$net.1:5060" -i "$net.2" -p 5060 -s 1000 -d "$HOLD_MS" -r "$rate" -m "$planned" \
        -nostdin -aa -max_socket 4096 -buff_size 4194304 -timeout "${bound}s" -recv_timeout 5000 \
        -trace_stat -fd 1 -stf "$stf" -trace_err -error_file "$tag-uac-errors.log" \
        > "$tag-uac.out" 2>&1 || true
    elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ -n "$mem_pid" ]; then
        kill "$mem_pid" 2>/dev/null || true
        wait "$mem_pid" 2>/dev/null || true
    fi
    sleep 1 # the last BYE/200 and retransmissions pass before the CPU time is read
    after=$(tree_ticks "${PROXY_PIDS[@]}")
    pss=$(tree_pss_mb "${PROXY_PIDS[@]}")
    [ -s "$tag-pss.txt" ] && peak=$(sort -n "$tag-pss.txt" | tail -1)
    [ "$peak" -lt "$pss" ] && peak=$pss
    if [ -n "$cap_pid" ]; then
        wait "$cap_pid" 2>/dev/null || true
        if [ -s "$pcap" ]; then
            rtt_calls "$pcap" "$net" > "$tag-bye-rtt.txt"
            rtt=$(p50 1 < "$tag-bye-rtt.txt")
            rtt_proxy=$(p50 2 < "$tag-bye-rtt.txt")
            rtt_n=$(wc -l < "$tag-bye-rtt.txt")
            rm -f "$pcap" # tens of MB at full rate; the per-call figures stay
        fi
    fi
    if [ "$sys" = trunkgate ]; then
        http_get "$TG_IP.1" 9091 /metrics > "$tag-metrics.txt" 2>/dev/null || true
    fi
    for pid in "${PROXY_PIDS[@]}"; do stop_pid "$pid"; done
    stop_uas
    created=$(stat_field "$stf" "TotalCallCreated")
    ok=$(stat_field "$stf" "SuccessfulCall(C)")
    failed=$(stat_field "$stf" "FailedCall(C)")
    not_ok=$(awk -v p="$planned" -v ok="$ok" 'BEGIN { printf "%.3f", (p - ok) * 100 / p }')
    cpu_ms=$(( (after - before) * 1000 / CLK_TCK ))
    per_call=$(awk -v ms="$cpu_ms" -v ok="$ok" 'BEGIN { if (ok > 0) printf "%.1f", ms * 1000 / ok; else print "-" }')
    printf '%-9s %-6s %-6s %6d/s run %d: %7d planned %7d ok %6d failed %7s%% not ok, %6s us/call, PSS %5d MB (peak %d)' \
        "$sys" "$scen" "$media" "$rate" "$run" "$planned" "$ok" "$failed" "$not_ok" "$per_call" "$pss" "$peak" >&2
    [ -n "$cap_pid" ] && printf ', BYE->200 p50 %s us (proxy %s us, %d calls)' "$rtt" "$rtt_proxy" "$rtt_n" >&2
    echo >&2
    echo "$sys,$scen,$media,$rate,$secs,$run,$planned,$created,$ok,$failed,$not_ok,$((elapsed_ms / 1000)),$cpu_ms,$per_call,$pss,$peak,$rtt,$rtt_proxy,$rtt_n" >> "$CSV"
    LAST_CLEAN=0
    awk -v n="$not_ok" 'BEGIN { exit !(n < 0.1) }' && LAST_CLEAN=1
    sleep 1
    return 0
}

# ladder SYSTEM SCENARIO MEDIA "RATES" CPU_RATE FLAGS_AT_CPU_RATE: the clean-rate ladder; the
# CPU rate always gets RUNS runs (run after the ladder if the ladder ended below it).
ladder() {
    local sys=$1 scen=$2 media=$3 rates=$4 cpu_rate=$5 cpu_flags=$6 rate run clean bad=0 cpu_done=0 flags
    for rate in $rates; do
        clean=1
        flags=""
        [ "$rate" = "$cpu_rate" ] && flags=$cpu_flags
        for run in $(seq "$RUNS"); do
            run_point "$sys" "$scen" "$media" "$rate" "$SECS" "$run" "$flags"
            if [ "$LAST_CLEAN" = 0 ]; then
                clean=0
                [ "$rate" = "$cpu_rate" ] || break
            fi
        done
        [ "$rate" = "$cpu_rate" ] && cpu_done=1
        if [ "$clean" = 1 ]; then bad=0; else bad=$((bad + 1)); fi
        [ "$bad" -ge 2 ] && break
    done
    if [ "$cpu_done" = 0 ]; then
        for run in $(seq "$RUNS"); do
            run_point "$sys" "$scen" "$media" "$cpu_rate" "$SECS" "$run" "$cpu_flags"
        done
    fi
}

# ---- --check-dialog-limit -------------------------------------------------------------------
# Both session limits set to 1: calls overlapping a held call must get 503; calls one after
# the other must all pass (the limit counts live calls, not calls ever made).
if [ "$CHECK_LIMIT" = 1 ]; then
    limit_step() { # NET LABEL HOLD_MS RATE CALLS
        local stf="$WORK/limit-${2// /-}.csv"
        timeout --kill-after=5s 40s sipp -sn uac "$1.1:5060" -i "$1.2" -p 5060 -d "$3" -r "$4" -m "$5" \
            -nostdin -timeout 30s -trace_stat -fd 1 -stf "$stf" -trace_err -error_file "$WORK/limit-${2// /-}-errors.log" \
            > "$WORK/limit-${2// /-}.out" 2>&1 || true
        local n503
        n503=$(grep -c ' 503 ' "$WORK/limit-${2// /-}-errors.log" 2>/dev/null || true)
        printf '%-32s %d calls: %d successful, %d failed, %d answered 503\n' "$2" "$5" \
            "$(stat_field "$stf" "SuccessfulCall(C)")" "$(stat_field "$stf" "FailedCall(C)")" "${n503:-0}"
    }
    echo "session limit = 1 on the one trunk; 4 calls held 3 s at 2 calls/s, then 4 calls held 0.2 s at 1 call/s:"
    PROXY_PIDS=()
    start_kamailio "$WORK/limit-kamailio.log" -A TRUNK_LIMIT=1
    start_uas ring "$KAM_IP.3" "$WORK/limit-kamailio"
    limit_step "$KAM_IP" "kamailio overlapping" 3000 2 4
    limit_step "$KAM_IP" "kamailio one after the other" 200 1 4
    stop_pid "${PROXY_PIDS[0]}"; stop_uas
    echo "kamailio log: $(grep -c 'at its limit' "$WORK/limit-kamailio.log" || true) rejections logged"
    tg_config "$WORK/trunkgate-limit.toml" 0 1
    # The one trunk of the route: carrier-b would take the overflow otherwise.
    sed -i 's/^trunks = \["carrier-a", "carrier-b"\]/trunks = ["carrier-a"]/' "$WORK/trunkgate-limit.toml"
    PROXY_PIDS=()
    start_trunkgate "$WORK/trunkgate-limit.toml" "$WORK/limit-trunkgate.log"
    start_uas ring "$TG_IP.3" "$WORK/limit-trunkgate"
    limit_step "$TG_IP" "trunkgate overlapping" 3000 2 4
    limit_step "$TG_IP" "trunkgate one after the other" 200 1 4
    stop_pid "${PROXY_PIDS[0]}"; stop_uas
    echo "logs: $WORK"
    exit 0
fi

# ---- plan -----------------------------------------------------------------------------------
# Trunkgate's descriptor budget with the default [limits] (crates/trunkgate/src/fd_budget.rs):
# margin = limit/20 within 128..4096, SIP connections = a tenth of the rest within 64..4096,
# media calls = what is left / 4 sockets per anchored call.
fd_margin=$((FD_LIMIT / 20)); [ "$fd_margin" -lt 128 ] && fd_margin=128; [ "$fd_margin" -gt 4096 ] && fd_margin=4096
fd_sip=$(( (FD_LIMIT - fd_margin) / 10 )); [ "$fd_sip" -lt 64 ] && fd_sip=64; [ "$fd_sip" -gt 4096 ] && fd_sip=4096
MEDIA_CALLS=$(( (FD_LIMIT - fd_margin - fd_sip) / 4 ))
ANCHOR_CEILING=$((MEDIA_CALLS * 95 / 100 / HOLD_S))
FD_NOTE="descriptors: hard limit $FD_LIMIT; Trunkgate's budget: margin $fd_margin + SIP connections $fd_sip + 4 sockets × $MEDIA_CALLS anchored calls; a call is held ${HOLD_S} s, so R calls/s keep ≈ R × ${HOLD_S} calls anchored: R ≤ 0.95 × $MEDIA_CALLS / ${HOLD_S} = $ANCHOR_CEILING calls/s"
ANCHOR_RATES=""
ANCHOR_SKIPPED=""
for rate in $ANCHOR_LADDER; do
    if [ $((rate * HOLD_S * 100)) -le $((MEDIA_CALLS * 95)) ]; then
        ANCHOR_RATES="$ANCHOR_RATES${ANCHOR_RATES:+ }$rate"
    else
        ANCHOR_SKIPPED="$ANCHOR_SKIPPED $rate"
        FD_NOTE="$FD_NOTE; $rate calls/s skipped: $rate × ${HOLD_S} s × 4 = $((rate * HOLD_S * 4)) sockets > $((MEDIA_CALLS * 4)) in the media share (of $FD_LIMIT in all)"
    fi
done
systems=0
[ "$WITH_TRUNKGATE" = 1 ] && systems=$((systems + 1))
[ "$WITH_KAMAILIO" = 1 ] && systems=$((systems + 1))
n_ladder=$(wc -w <<< "$LADDER")
n_anchor=$(wc -w <<< "$ANCHOR_RATES")
steps=$(( systems * RUNS * (2 * n_ladder + n_anchor) ))
est_s=$(( systems * RUNS * ((2 * n_ladder + n_anchor) * (SECS + HOLD_S + 6) + MEM_SECS + HOLD_S + 6) ))
echo "compare ($MODE): at most $steps steps of ${SECS} s + $((systems * RUNS)) memory steps of ${MEM_SECS} s, ≤ $((est_s / 60)) min; results in $WORK" >&2
echo "$FD_NOTE" >&2

# ---- the runs -------------------------------------------------------------------------------
run_system() { # SYSTEM
    local sys=$1 run
    ladder "$sys" ring plain "$LADDER" "$CPU_RATE" rtt
    for run in $(seq "$RUNS"); do
        run_point "$sys" ring plain "$MEM_RATE" "$MEM_SECS" "$run" mem
    done
    ladder "$sys" ring anchor "$ANCHOR_RATES" "$ANCHOR_CPU_RATE" ""
    if [ "$sys" = trunkgate ] && [ "$TG_KERNEL" = 1 ]; then
        ladder "$sys" ring kanchor "$ANCHOR_LADDER" "$ANCHOR_CPU_RATE" ""
    fi
    ladder "$sys" noring plain "$LADDER" "$CPU_RATE" ""
}
if [ "$WITH_TRUNKGATE" = 1 ]; then
    tg_config "$WORK/trunkgate-plain.toml" 0
    tg_config "$WORK/trunkgate-anchor.toml" 1
    # The userspace relay for the row beside Kamailio + rtpengine (the default, "auto", would
    # take the kernel path where it loads: that is the kanchor row).
    printf '[media]\nfastpath = "userspace"\n' >> "$WORK/trunkgate-anchor.toml"
    "$TG_BIN" check --config "$WORK/trunkgate-anchor.toml" >/dev/null
    if [ "$TG_KERNEL" = 1 ]; then
        tg_config "$WORK/trunkgate-kanchor.toml" 1
        printf '[media]\nfastpath = "kernel"\nports = "16384-65535"\n' >> "$WORK/trunkgate-kanchor.toml"
        "$TG_BIN" check --config "$WORK/trunkgate-kanchor.toml" >/dev/null
    fi
    run_system trunkgate
fi
if [ "$WITH_KAMAILIO" = 1 ]; then
    kamailio -c -f "$KAM_CFG" -A WITH_RTPENGINE "${KAM_DEFINES[@]}" > "$WORK/kamailio-check.log" 2>&1 \
        || { cat "$WORK/kamailio-check.log" >&2; exit 1; }
    run_system kamailio
fi

# ---- the table ------------------------------------------------------------------------------
# col SYSTEM SCENARIO MEDIA RATE COLUMN: the values of one figure over the runs, one a line
col() {
    awk -F, -v s="$1" -v sc="$2" -v m="$3" -v r="$4" -v c="$5" \
        'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
         $1 == s && $2 == sc && $3 == m && $4 == r && $k != "-" { print $k }' "$CSV"
}
# summary: "median min max n" of the numbers on stdin ("- - - 0" if none)
summary() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - - 0"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        print m, v[1], v[NR], NR }'
}
# cell "median min max n" DECIMALS: "62.1 (58.3–66.0)"
cell() {
    awk -v s="$1" -v d="$2" 'BEGIN { split(s, a, " ")
        if (a[4] == 0) { print "–"; exit }
        f = "%." d "f"
        out = sprintf(f, a[1]); if (a[4] > 1) out = out sprintf(" (" f "–" f ")", a[2], a[3])
        print out }'
}
# clean SYSTEM SCENARIO MEDIA "RATES": the highest rate whose every run was clean ("0" if none),
# with ">=" when it is the top of the ladder
clean() {
    local best=0 top=0 r
    for r in $4; do
        top=$r
        [ -n "$(col "$1" "$2" "$3" "$r" not_ok_pct)" ] || continue
        col "$1" "$2" "$3" "$r" not_ok_pct | awk '$1 >= 0.1 { bad = 1 } END { exit bad }' && best=$r
    done
    if [ "$best" != 0 ] && [ "$best" = "$top" ]; then echo "≥ $best"; else echo "$best"; fi
}
ratio() { # A B (numbers or "-")
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "–"; else printf "%.2f\n", a / b }'
}
# rate_ratio TG KAM: clean rates ("≥ N" = the top of the ladder passed) -> "2.00", "≥ 2.00" or "–"
rate_ratio() {
    case "$2" in "≥ "*) echo "–"; return ;; esac
    local r
    r=$(ratio "$(num "$1")" "$(num "$2")")
    case "$1" in "≥ "*) [ "$r" != "–" ] && r="≥ $r" ;; esac
    echo "$r"
}
# rate_met TG KAM: ≥ 2× Kamailio's; "?" when the ladder was too short to tell
rate_met() {
    local a b
    a=$(num "$1"); b=$(num "$2")
    if [ "$a" = "-" ] || [ "$b" = "-" ]; then echo "–"; return; fi
    if [ "$a" = 0 ]; then echo "✘"; return; fi
    case "$2" in "≥ "*) echo "? (Kamailio passed the top of the ladder)"; return ;; esac
    if [ $((a)) -ge $((2 * b)) ]; then echo "✔"
    else case "$1" in "≥ "*) echo "? (Trunkgate passed the top of the ladder)" ;; *) echo "✘" ;; esac
    fi
}
yes_no() { if [ "$1" = 1 ]; then echo "✔"; elif [ "$1" = 0 ]; then echo "✘"; else echo "–"; fi; }
# met EXPR: 1 if the awk condition over a and b holds, "-" when a is unknown
met() { awk -v a="$1" -v b="$2" "BEGIN { if (a == \"-\") print \"-\"; else print (($3) ? 1 : 0) }"; }
num() { echo "${1#≥ }"; }

fmt_rate() { awk -v r="$1" 'BEGIN { s = sprintf("%d", r); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]$/, ",&", s); print s }'; }
table() {
    local a b tg_s kam_s rt rk scen label
    echo "| figure | Trunkgate | Kamailio | ratio | target | met? |"
    echo "|---|---:|---:|---:|---|:---:|"
    for scen in ring noring; do
        tg_s=$(col trunkgate "$scen" plain "$CPU_RATE" cpu_us_per_call | summary)
        kam_s=$(col kamailio "$scen" plain "$CPU_RATE" cpu_us_per_call | summary)
        a=${tg_s%% *}; b=${kam_s%% *}
        label="180 ringing, ${HOLD_S} s calls"; [ "$scen" = noring ] && label="no ringing, ${HOLD_S} s calls"
        echo "| CPU µs per call at $(fmt_rate "$CPU_RATE") calls/s, $label | $(cell "$tg_s" 1) | $(cell "$kam_s" 1) | $(ratio "$a" "$b") | ≤ 35 µs or ≤ ¼ of Kamailio's | $(yes_no "$(met "$a" "$b" 'a <= 35 || (b != "-" && a <= b / 4)')") |"
    done
    for scen in ring noring; do
        rt=$(clean trunkgate "$scen" plain "$LADDER"); rk=$(clean kamailio "$scen" plain "$LADDER")
        [ "$WITH_TRUNKGATE" = 1 ] || rt="-"; [ "$WITH_KAMAILIO" = 1 ] || rk="-"
        label="180 ringing"; [ "$scen" = noring ] && label="no ringing"
        echo "| highest clean rate (< 0.1 % not ok in all $RUNS runs), $label, calls/s | $rt | $rk | $(rate_ratio "$rt" "$rk") | ≥ 2× Kamailio's | $(rate_met "$rt" "$rk") |"
    done
    tg_s=$(col trunkgate ring plain "$MEM_RATE" pss_peak_mb | summary)
    kam_s=$(col kamailio ring plain "$MEM_RATE" pss_peak_mb | summary)
    a=${tg_s%% *}; b=${kam_s%% *}
    echo "| memory: PSS MB, peak while $(fmt_rate "$MEM_RATE") calls/s run for $MEM_SECS s | $(cell "$tg_s" 0) | $(cell "$kam_s" 0) | $(ratio "$a" "$b") | ≤ 200 MB | $(yes_no "$(met "$a" "$b" 'a <= 200')") |"
    tg_s=$(col trunkgate ring anchor "$ANCHOR_CPU_RATE" cpu_us_per_call | summary)
    kam_s=$(col kamailio ring anchor "$ANCHOR_CPU_RATE" cpu_us_per_call | summary)
    a=${tg_s%% *}; b=${kam_s%% *}
    echo "| anchored media: CPU µs per call at $(fmt_rate "$ANCHOR_CPU_RATE") calls/s (Kamailio + rtpengine) | $(cell "$tg_s" 1) | $(cell "$kam_s" 1) | $(ratio "$a" "$b") | ≤ 60 µs | $(yes_no "$(met "$a" "$b" 'a <= 60')") |"
    rt=$(clean trunkgate ring anchor "$ANCHOR_RATES"); rk=$(clean kamailio ring anchor "$ANCHOR_RATES")
    [ "$WITH_TRUNKGATE" = 1 ] || rt="-"; [ "$WITH_KAMAILIO" = 1 ] || rk="-"
    local anchor_met
    anchor_met=$(yes_no "$(met "$(num "$rt")" "" "a >= $ANCHOR_TARGET")")
    # The target's rate skipped for descriptors and every rate below it clean: not measurable.
    if [ "$anchor_met" = "✘" ] && [ -n "$ANCHOR_SKIPPED" ] && [[ "$rt" == "≥ "* ]]; then
        anchor_met="– (the descriptor limit allows ≤ $(fmt_rate "$ANCHOR_CEILING") calls/s: below)"
    fi
    echo "| anchored media: highest clean rate, calls/s | $rt | $rk | $(rate_ratio "$rt" "$rk") | ≥ $(fmt_rate "$ANCHOR_TARGET") where the descriptor limit allows | $anchor_met |"
    if [ "$WITH_TRUNKGATE" = 1 ] && [ "$TG_KERNEL" = 1 ]; then
        tg_s=$(col trunkgate ring kanchor "$ANCHOR_CPU_RATE" cpu_us_per_call | summary)
        a=${tg_s%% *}
        echo "| anchored media, Trunkgate's kernel fast path (no socket per call): CPU µs per call at $(fmt_rate "$ANCHOR_CPU_RATE") calls/s | $(cell "$tg_s" 1) | – | – | ≤ 60 µs | $(yes_no "$(met "$a" "" 'a <= 60')") |"
        rt=$(clean trunkgate ring kanchor "$ANCHOR_LADDER")
        echo "| anchored media, Trunkgate's kernel fast path: highest clean rate, calls/s | $rt | – | – | ≥ $(fmt_rate "$ANCHOR_TARGET") | $(yes_no "$(met "$(num "$rt")" "" "a >= $ANCHOR_TARGET")") |"
    fi
    tg_s=$(col trunkgate ring plain "$CPU_RATE" bye_rtt_p50_us | summary)
    kam_s=$(col kamailio ring plain "$CPU_RATE" bye_rtt_p50_us | summary)
    a=${tg_s%% *}; b=${kam_s%% *}
    echo "| BYE → 200 round trip through the proxy, p50 µs, at $(fmt_rate "$CPU_RATE") calls/s | $(cell "$tg_s" 0) | $(cell "$kam_s" 0) | $(ratio "$a" "$b") | ≤ 120 µs | $(yes_no "$(met "$a" "$b" 'a <= 120')") |"
    tg_s=$(col trunkgate ring plain "$CPU_RATE" bye_proxy_p50_us | summary)
    kam_s=$(col kamailio ring plain "$CPU_RATE" bye_proxy_p50_us | summary)
    echo "| … of which inside the proxy (BYE in → out + 200 in → out), p50 µs | $(cell "$tg_s" 0) | $(cell "$kam_s" 0) | $(ratio "${tg_s%% *}" "${kam_s%% *}") | (the rest: the SIPp UAS) | |"
}

{
    echo
    echo "### Trunkgate and Kamailio side by side ($MODE run)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo '+changes'); machine: $(nproc) × $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    kam_line=""
    [ "$WITH_KAMAILIO" = 1 ] && kam_line=" $(kamailio -v 2>/dev/null | sed -n 's/^version: \(kamailio [0-9.]*\).*/\1/p' | head -1) (compare.cfg, children=4, -x tlsf -X tlsf${KAM_DEFINES[*]:+, ${KAM_DEFINES[*]}}); rtpengine $(rtpengine --version 2>&1 | sed -n 's/^Version: //p');"
    [ "$WITH_TRUNKGATE" = 1 ] || TG_BIN="not run"
    echo "Trunkgate: $TG_BIN.$kam_line SIPp $(sipp -v 2>&1 | sed -n 's/.*SIPp v\([0-9.]*\).*/\1/p' | head -1)."
    echo "$RUNS run(s) per point, ${SECS} s steps, calls held ${HOLD_S} s; median (min–max) over the runs; ratio = Trunkgate / Kamailio."
    echo
    table
    echo
    echo "Anchored rows: $FD_NOTE."
    if [ "$MODE" = smoke ]; then
        echo "Smoke run: tiny rates, the figures say nothing about the targets."
    fi
} | tee "$WORK/table.md"
echo
echo "results: $CSV" >&2
echo "logs:    $WORK" >&2
