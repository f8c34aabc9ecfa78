#!/usr/bin/env bash
# SIPp call-rate steps through Trunkgate (and, optionally, through a reference Kamailio).
#
#   benches/sipp_steps.sh [--with-kamailio] [--rates "1000 2000 ..."] [--seconds N] [--smoke]
#                         [--no-trunkgate] [--no-ringing] [--anchor-media]
#                         [--baseline-bin PATH] [--rounds N]
#
# For each rate: a fresh SIPp UAC sends rate*seconds calls (default 10 s worth; the built-in
# `uac` scenario: INVITE, 180, 200, ACK, BYE, 200) from the "PBX" address through the proxy
# to a SIPp UAS on the "carrier" address, over UDP. Recorded per step: SIPp's own counters
# (created / successful / failed), the proxy's CPU time (utime+stime from /proc/PID/stat,
# summed over all its processes) and its memory (PSS) after the step. Printed: a table, CPU µs per successful
# call, and the highest rate with < 0.1% of the planned calls not successful.
#
#   Trunkgate: 127.0.50.1 (PBX 127.0.50.2, carrier 127.0.50.3), release build, the embedded
#              default layout with the per-trunk limits raised out of the way (still checked).
#   Kamailio:  127.0.51.1 (PBX 127.0.51.2, carrier 127.0.51.3), benches/kamailio/kamailio.cfg
#              (tm + sl + rr + maxfwd + textops, record_route, t_relay), children=2, the fast
#              allocator (KAMAILIO_OPTS, default "-x fm -X fm"; Debian's default qm allocator
#              with memory debugging costs ~3x the CPU). Run with --with-kamailio (installs
#              Debian's `kamailio` if missing) or when it is on PATH.
#
# --no-ringing: the UAS answers 200 without a 180 (benches/sipp/uas_no_ringing.xml, 11
# datagrams per call instead of 13), for both systems. Kamailio's workers can reorder one
# call's 180 and 200, which SIPp's `uac` counts as a failed call (a few per thousand at any
# rate); this takes that artifact out of the rate comparison.
#
# Signaling only by default: the trunks' `media.anchor` is off, as Kamailio here runs without
# rtpengine. --anchor-media keeps Trunkgate's default (every call's SDP rewritten, 4 media
# sockets bound per call) to measure the cost of anchoring (offer/answer/delete per call).
#
# --baseline-bin PATH: also run the same steps through another Trunkgate build (e.g. the
# release binary of an earlier commit, built in a `git worktree`), on the same policy and
# addresses, alternating with the current build for --rounds N rounds (default 1), and print
# the CPU-per-call ratio current/baseline per rate: a change's cost, measured side by side.
#
# Loopback only; every step is bounded (SIPp -timeout, plus a hard `timeout`). Results also
# go to target/bench/sipp_steps-<time>.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/benches/lib.sh"

RATES="1000 2000 4000 6000 8000 10000 12000"
SECONDS_PER_STEP=10
WITH_KAMAILIO=0
WITH_TRUNKGATE=1
UAS_SCENARIO=(-sn uas)
ANCHOR_MEDIA=0
BASELINE_BIN=""
ROUNDS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --with-kamailio) WITH_KAMAILIO=1 ;;
        --rates) RATES="$2"; shift ;;
        --seconds) SECONDS_PER_STEP="$2"; shift ;;
        --smoke) RATES="200"; SECONDS_PER_STEP=5 ;;
        --no-trunkgate) WITH_TRUNKGATE=0 ;; # reference only
        --anchor-media) ANCHOR_MEDIA=1 ;;
        --baseline-bin) BASELINE_BIN="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --no-ringing) UAS_SCENARIO=(-sf "$ROOT/benches/sipp/uas_no_ringing.xml") ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SECONDS_PER_STEP" -gt 12 ]; then
    echo "--seconds is at most 12 (each step is bounded to ~15 s)" >&2
    exit 2
fi

command -v sipp >/dev/null 2>&1 || apt_install sip-tester
if [ "$WITH_KAMAILIO" = 1 ] && ! command -v kamailio >/dev/null 2>&1; then
    apt_install kamailio
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
WORK="$ROOT/target/bench/sipp_steps-$STAMP"
mkdir -p "$WORK"
CSV="$ROOT/target/bench/sipp_steps-$STAMP.csv"
echo "system,rate,planned,created,successful,failed,not_ok_pct,elapsed_s,cpu_ms,cpu_us_per_call,pss_mb" > "$CSV"

trap bench_cleanup EXIT

start_uas() { # name ip
    sipp "${UAS_SCENARIO[@]}" -i "$2" -p 5060 -nostdin -aa -bind_local -max_socket 4096 \
        -buff_size 4194304 -timeout 3600s -trace_err -error_file "$WORK/$1-uas-errors.log" \
        > "$WORK/$1-uas.out" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    kill -0 "$!" 2>/dev/null || { echo "SIPp UAS on $2 did not start:" >&2; cat "$WORK/$1-uas.out" >&2; exit 1; }
}

# run_steps NAME PROXY_PID PROXY_IP PBX_IP
run_steps() {
    local name=$1 pid=$2 proxy=$3 pbx=$4 rate planned before after stf elapsed_ms t0
    local created ok failed not_ok cpu_ms per_call pss best=0 bad_steps=0
    # Idle baseline: what the proxy burns with no traffic (timers, probes), for reading the
    # per-call figure at low rates.
    before=$(tree_ticks "$pid")
    sleep 3
    after=$(tree_ticks "$pid")
    echo "$name idle: $(( (after - before) * 1000 / CLK_TCK / 3 )) ms CPU per second"
    header
    for rate in $RATES; do
        planned=$((rate * SECONDS_PER_STEP))
        stf="$WORK/$name-uac-$rate.csv"
        kill -0 "$pid" 2>/dev/null || { echo "$name exited" >&2; break; }
        before=$(tree_ticks "$pid")
        t0=$(date +%s%N)
        timeout --kill-after=5s $((SECONDS_PER_STEP + 10))s \
            sipp -sn uac "$proxy:5060" -i "$pbx" -p 5060 -s 1000 -r "$rate" -m "$planned" \
            -nostdin -aa -max_socket 4096 -buff_size 4194304 \
            -timeout "$((SECONDS_PER_STEP + 5))s" -recv_timeout 5000 \
            -trace_stat -fd 1 -stf "$stf" -trace_err -error_file "$WORK/$name-uac-$rate-errors.log" \
            > "$WORK/$name-uac-$rate.out" 2>&1 || true
        elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        sleep 1 # let the last BYE/200 and retransmissions pass before reading the CPU time
        after=$(tree_ticks "$pid")
        created=$(stat_field "$stf" "TotalCallCreated")
        ok=$(stat_field "$stf" "SuccessfulCall(C)")
        failed=$(stat_field "$stf" "FailedCall(C)")
        not_ok=$(awk -v p="$planned" -v ok="$ok" 'BEGIN { printf "%.3f", (p - ok) * 100 / p }')
        cpu_ms=$(( (after - before) * 1000 / CLK_TCK ))
        per_call=$(awk -v ms="$cpu_ms" -v ok="$ok" 'BEGIN { if (ok > 0) printf "%.1f", ms * 1000 / ok; else print "-" }')
        pss=$(tree_pss_mb "$pid")
        printf '%-10s %6d %8d %8d %8d %7d %8s%% %7.1f %8d %10s %7d\n' "$name" "$rate" "$planned" \
            "$created" "$ok" "$failed" "$not_ok" "$(awk -v m="$elapsed_ms" 'BEGIN{print m/1000}')" \
            "$cpu_ms" "$per_call" "$pss"
        echo "$name,$rate,$planned,$created,$ok,$failed,$not_ok,$((elapsed_ms / 1000)),$cpu_ms,$per_call,$pss" >> "$CSV"
        if awk -v n="$not_ok" 'BEGIN { exit !(n < 0.1) }'; then
            best=$rate
            bad_steps=0
        else
            bad_steps=$((bad_steps + 1))
            # Two failing steps in a row: higher rates will not pass either.
            [ "$bad_steps" -ge 2 ] && break
        fi
        sleep 2
    done
    echo "$name: highest rate with < 0.1% of calls not successful: $best cps"
}

header() {
    printf '%-10s %6s %8s %8s %8s %7s %9s %7s %8s %10s %7s\n' system cps planned created ok failed \
        "not-ok" "wall_s" cpu_ms "cpu_us/call" pss_MB
}

# ---- Trunkgate ------------------------------------------------------------------------
# run_trunkgate NAME BINARY: start BINARY on the bench policy, run the steps, stop it.
run_trunkgate() {
    local name=$1 bin=$2 status=""
    "$bin" check --config "$WORK/trunkgate.toml"
    RUST_LOG=${RUST_LOG:-warn} "$bin" run --config "$WORK/trunkgate.toml" > "$WORK/$name.log" 2>&1 &
    TG_PID=$!
    PIDS+=("$TG_PID")
    for _ in $(seq 100); do
        status=$(http_get 127.0.50.1 9091 /health 2>/dev/null || true)
        [[ "$status" == "HTTP/1."?" 200"* ]] && break
        kill -0 "$TG_PID" 2>/dev/null || { echo "$name exited:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    [[ "$status" == "HTTP/1."?" 200"* ]] || { echo "$name /health not 200 after 10 s" >&2; exit 1; }
    echo
    run_steps "$name" "$TG_PID" 127.0.50.1 127.0.50.2
    http_get 127.0.50.1 9091 /metrics > "$WORK/$name-metrics.txt" 2>/dev/null || true
    kill -TERM "$TG_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$TG_PID" 2>/dev/null || break; sleep 0.1; done
}

if [ "$WITH_TRUNKGATE" = 1 ]; then
    echo "building trunkgate (release)..."
    cargo build --release -p trunkgate
    TG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/trunkgate"
    sed -e 's/127\.0\.0\./127.0.50./g' \
        -e 's/^max_cps *=.*/max_cps = 1000000/' \
        -e 's/^max_sessions *=.*/max_sessions = 1000000/' \
        -e 's/^shutdown_grace *=.*/shutdown_grace = "5s"/' \
        config/trunkgate.toml > "$WORK/trunkgate.toml"
    if [ "$ANCHOR_MEDIA" = 0 ]; then
        sed -i 's/^max_cps *=.*/&\nmedia = { anchor = false }/' "$WORK/trunkgate.toml"
    fi
    start_uas trunkgate 127.0.50.3
    for _ in $(seq "$ROUNDS"); do
        if [ -n "$BASELINE_BIN" ]; then
            run_trunkgate baseline "$BASELINE_BIN"
        fi
        run_trunkgate trunkgate "$TG_BIN"
    done
    if [ -n "$BASELINE_BIN" ]; then
        echo
        awk -F, 'NR > 1 && ($1 == "trunkgate" || $1 == "baseline") && $10 != "-" {
                sum[$1 "," $2] += $10; n[$1 "," $2]++; rates[$2] = 1 }
            END {
                for (r in rates) if (n["trunkgate," r] && n["baseline," r])
                    printf "at %d cps: CPU per call trunkgate %.1f us, baseline %.1f us (mean of %d), ratio %.3f\n",
                        r, sum["trunkgate," r] / n["trunkgate," r], sum["baseline," r] / n["baseline," r],
                        n["trunkgate," r], (sum["trunkgate," r] / n["trunkgate," r]) / (sum["baseline," r] / n["baseline," r])
            }' "$CSV" | sort -n -k2
    fi
fi

# ---- Kamailio (reference) ------------------------------------------------------------
if command -v kamailio >/dev/null 2>&1; then
    mkdir -p "$WORK/kamailio-run"
    kamailio -c -f benches/kamailio/kamailio.cfg > "$WORK/kamailio-check.log" 2>&1 \
        || { cat "$WORK/kamailio-check.log" >&2; exit 1; }
    # shellcheck disable=SC2086 # KAMAILIO_OPTS is a list of options
    kamailio -f benches/kamailio/kamailio.cfg -DD -E -m 1024 -M 32 ${KAMAILIO_OPTS:--x fm -X fm} -Y "$WORK/kamailio-run" \
        > "$WORK/kamailio.log" 2>&1 &
    KAM_PID=$!
    PIDS+=("$KAM_PID")
    sleep 1
    kill -0 "$KAM_PID" 2>/dev/null || { echo "kamailio exited:" >&2; tail -20 "$WORK/kamailio.log" >&2; exit 1; }
    start_uas kamailio 127.0.51.3
    echo
    run_steps kamailio "$KAM_PID" 127.0.51.1 127.0.51.2
    kill -TERM "$KAM_PID" 2>/dev/null || true
    echo
    awk -F, 'NR > 1 { cpu[$1 "," $2] = $10; if ($7 < 0.1 && $2 > best[$1]) best[$1] = $2; rates[$2] = 1 }
        END {
            if (best["kamailio"] > 0 && best["trunkgate"] > 0)
                printf "max rate (< 0.1%% not ok): trunkgate %d cps, kamailio %d cps, ratio trunkgate/kamailio %.2f\n",
                    best["trunkgate"], best["kamailio"], best["trunkgate"] / best["kamailio"]
            for (r in rates) {
                t = cpu["trunkgate," r]; k = cpu["kamailio," r]
                if (t != "" && k != "" && t != "-" && k != "-" && k > 0)
                    printf "at %d cps: CPU per call trunkgate %s us, kamailio %s us, ratio %.2f\n", r, t, k, t / k
            }
        }' "$CSV" | sort
elif [ "$WITH_KAMAILIO" = 1 ]; then
    echo "kamailio requested but not available" >&2
    exit 1
else
    echo "(kamailio not installed: reference run skipped; pass --with-kamailio to install it)"
fi

echo
echo "results: $CSV"
echo "logs:    $WORK"
