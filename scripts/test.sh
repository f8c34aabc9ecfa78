#!/usr/bin/env bash
# The one test command (`.ci/run` calls exactly this): install the SIP peers the end-to-end
# tests need, build every target of the workspace, run every test.
#
# The end-to-end tests (tests/e2e_sipp.rs) drive the real `trunkgate` binary with SIPp on
# loopback addresses 127.0.N.x. They FAIL when SIPp is missing (they never skip), so this
# script installs it first (Debian package `sip-tester`); likewise promtool (Debian package
# `prometheus`) for the alert rules' tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v sipp >/dev/null 2>&1; then
    echo "test.sh: sipp not found; installing Debian package sip-tester" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sip-tester
fi
if ! command -v sipp >/dev/null 2>&1; then
    echo "test.sh: sipp is still missing after installing sip-tester" >&2
    exit 1
fi
# tests/e2e_kamailio.rs runs Debian's Kamailio (registrar with digest, a challenging proxy);
# like SIPp it fails, never skips, when missing.
if ! command -v kamailio >/dev/null 2>&1 && [ ! -x /usr/sbin/kamailio ]; then
    echo "test.sh: kamailio not found; installing Debian package kamailio" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio
fi
if ! command -v kamailio >/dev/null 2>&1 && [ ! -x /usr/sbin/kamailio ]; then
    echo "test.sh: kamailio is still missing after installing it" >&2
    exit 1
fi
echo "test.sh: using $(command -v sipp) ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' || echo 'version unknown'))"

# The alert rules in deploy/prometheus/ are checked and unit-tested with promtool
# (crates/trunkgate/tests/prometheus_rules.rs fails without it). Debian's `prometheus`
# package ships it; its daemon is not started here (policy-rc.d or no systemd in CI).
if ! command -v promtool >/dev/null 2>&1; then
    echo "test.sh: promtool not found; installing Debian package prometheus" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "test.sh: promtool is still missing after installing prometheus" >&2
    exit 1
fi
echo "test.sh: using $(command -v promtool) ($(promtool --version 2>&1 | head -n1))"

# SIPp and Trunkgate each want a few thousand descriptors under load.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --workspace --all-targets

# Bounded: the suite takes a few minutes on a 2-core machine; 20 minutes means a hang.
timeout --kill-after=30s 1200s cargo test --workspace --no-fail-fast
