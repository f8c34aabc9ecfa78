#!/usr/bin/env bash
# The soak of tests/e2e_reliability.rs for 10 minutes (or SECONDS): 10 calls/s with 5 s of
# RTP both ways each (about 50 calls up at once), RSS / open descriptors / media port pairs
# sampled every 2 s and printed, flat after warm-up and back to zero at the end (asserted
# by the test). A release build, nothing else running: the figures go to
# docs/performance.md ("Soak").
#
#   benches/soak.sh [SECONDS]      # default 600
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --workspace --bins
TRUNKGATE_SOAK_SECS=$secs timeout --kill-after=30s "$((secs + 300))s" \
    cargo test --release -p trunkgate --test e2e_reliability a_soak -- --nocapture 2>&1 |
    grep -E "^soak:|test result|panicked|assert" || true
