#!/usr/bin/env bash
# Run every cargo-fuzz target for a while (default 60 s each) and keep what crashes as a
# regression input: fuzz/regressions/TARGET/ is replayed by the normal suite
# (tests/fuzz_regressions.rs runs the same checks, fuzz/checks/*.rs, on every file there).
#
#   scripts/fuzz-smoke.sh [SECONDS] [TARGET ...]
#
# Not part of the README's test command (four minutes of fuzzing is not a test); run it
# after touching a parser, and in a nightly job. Installs cargo-fuzz when missing. The
# machine's one toolchain is stable: libFuzzer's -Z flags are allowed with
# RUSTC_BOOTSTRAP=1 (as cargo-fuzz's own CI does for stable), AddressSanitizer included.
# Exit status: 0 when no target crashed, 1 otherwise (the crash inputs are kept either way).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_message frame_stream sdp rtp)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1

# Bounded inputs: what the parsers see on the wire (a datagram, a few kB of stream, an SDP
# body, RTP packets).
declare -A max_len=([parse_message]=4096 [frame_stream]=8192 [sdp]=8192 [rtp]=2048)

# Build first (minutes on a busy 2-core machine), outside the run's time bound.
(cd fuzz && cargo fuzz build)

failed=0
for t in "${targets[@]}"; do
    echo "fuzz-smoke: $t for ${seconds}s" >&2
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$t"
    # Seed the corpus with the kept regressions so they are mutated first.
    find "fuzz/regressions/$t" -type f ! -name .gitkeep -exec cp -n {} "$corpus/" \; || true
    status=0
    (cd fuzz && timeout --kill-after=30s "$((seconds + 120))s" \
        cargo fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1) || status=$?
    if [ "$status" -eq 0 ]; then
        echo "fuzz-smoke: $t: no crash" >&2
    elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        failed=1
        echo "fuzz-smoke: $t did not finish within its time bound (exit $status)" >&2
    else
        failed=1
        echo "fuzz-smoke: $t FAILED (exit $status: a crash, leak or timeout input, kept below)" >&2
    fi
    for a in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-*; do
        [ -e "$a" ] || continue
        cp -n "$a" "fuzz/regressions/$t/"
        echo "fuzz-smoke: kept $a as fuzz/regressions/$t/$(basename "$a")" >&2
    done
done
exit "$failed"
