#!/usr/bin/env bash
# The one test command (`.ci/run` calls exactly this): install the SIP peers the end-to-end
# tests need, build every target of the workspace, run every test.
#
# The end-to-end tests (tests/e2e_sipp.rs) drive the real `trunkgate` binary with SIPp on
# loopback addresses 127.0.N.x. They FAIL when SIPp is missing (they never skip), so this
# script installs it first (Debian package `sip-tester`); likewise promtool (Debian package
# `prometheus`) for the alert rules' tests, and Chromium (Debian package `chromium`) for the
# status page's.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# `need COMMAND|/FILE PACKAGE`: install Debian's PACKAGE when COMMAND (or the file at the
# absolute path FILE, e.g. a Kamailio module) is missing (one
# `apt-get update` per run, before the first install); still missing afterwards is a failure.
# The tests that use these peers FAIL, never skip, without them.
apt_updated=no
need() {
    local cmd=$1 pkg=$2
    # A path (a module file) is needed as a file; a name as a command.
    if [ "${cmd#/}" != "$cmd" ]; then
        present() { [ -e "$cmd" ]; }
    else
        present() { command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; }
    fi
    if present; then
        return 0
    fi
    echo "test.sh: $cmd not found; installing Debian package $pkg" >&2
    if [ "$apt_updated" = no ]; then
        as_root apt-get update
        apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg"
    if ! present; then
        echo "test.sh: $cmd is still missing after installing $pkg" >&2
        exit 1
    fi
}

# SIPp as PBX and trunks (tests/e2e_*.rs).
need sipp sip-tester
echo "test.sh: using $(command -v sipp) ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' || echo 'version unknown'))"
# Kamailio as a provider's registrar and challenging proxy (tests/e2e_kamailio.rs).
need kamailio kamailio
# Kamailio's TLS module: carrier-a's TLS edge in front of SIPp (tests/e2e_tls.rs).
need /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so kamailio-tls-modules
# promtool checks and unit-tests deploy/prometheus/ (crates/trunkgate/tests/prometheus_rules.rs);
# Debian's `prometheus` ships it; its daemon is not started here.
need promtool prometheus
# dnsmasq serves a provider's SRV and A records on loopback (tests/e2e_dns.rs).
need dnsmasq dnsmasq-base
echo "test.sh: using $(command -v promtool) ($(promtool --version 2>&1 | head -n1))"
# systemd-analyze verifies deploy/systemd/trunkgate.service (crates/trunkgate/tests/deploy_files.rs).
need systemd-analyze systemd
# Headless Chromium renders the status page and screenshots it (tests/e2e_status.rs).
need chromium chromium
echo "test.sh: using $(command -v chromium) ($(chromium --version 2>/dev/null | head -n1))"

# The media relay's kernel fast path: crates/trunkgate-media/build.rs compiles
# bpf/fastpath.bpf.c with clang (Debian `clang`), against bpf/bpf_helpers.h (Debian
# `libbpf-dev`) and linux/bpf.h (`linux-libc-dev`, pulled in by libbpf-dev); bpftool
# (Debian `bpftool`) shows what is attached (`bpftool net show dev lo`). TRUNKGATE_REQUIRE_BPF
# makes a missing or failing clang a build error here instead of a userspace-only build.
need clang clang
need bpftool bpftool
need /usr/include/bpf/bpf_helpers.h libbpf-dev
export TRUNKGATE_REQUIRE_BPF=1

# SIPp and Trunkgate each want a few thousand descriptors under load.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --workspace --all-targets

# Bounded: the suite takes a few minutes on a 2-core machine; 20 minutes means a hang.
# cargo-nextest (part of the machine's Rust toolchain) runs the tests of all binaries side by
# side (.config/nextest.toml: 4 at a time, the loads alone); without it, `cargo test` runs
# the same tests one binary after another (slower, same verdict).
#
# The media relay runs in two modes (media.fastpath): the suite runs with the default,
# "auto" — the kernel fast path where the machine allows it (root, Linux >= 6.6), as here —
# and the relay crate's own tests in userspace mode (their default); then the media tests run
# once more in the other mode: the end-to-end media tests (tests/e2e_media.rs: SIPp audio
# both ways, DSCP, loss/jitter, dead calls, re-INVITE/hold, latching) with the relay in
# userspace, and the relay crate's tests with the kernel path.
SECOND_PASS_E2E=(-E 'binary(e2e_media)')
SECOND_PASS_CRATE=(-p trunkgate-media)
if cargo nextest --version >/dev/null 2>&1; then
    timeout --kill-after=30s 1200s cargo nextest run --workspace --no-fail-fast
    echo "test.sh: media tests, second mode: e2e_media with media.fastpath = userspace, trunkgate-media with the kernel path" >&2
    TRUNKGATE_MEDIA__FASTPATH=userspace timeout --kill-after=30s 300s \
        cargo nextest run -p trunkgate --no-fail-fast "${SECOND_PASS_E2E[@]}"
    TRUNKGATE_MEDIA_FASTPATH=kernel timeout --kill-after=30s 300s \
        cargo nextest run "${SECOND_PASS_CRATE[@]}" --no-fail-fast
    # nextest does not run doc tests.
    timeout --kill-after=30s 300s cargo test --workspace --doc
else
    echo "test.sh: cargo-nextest not found; running the suite with cargo test (one binary at a time)" >&2
    timeout --kill-after=30s 1200s cargo test --workspace --no-fail-fast
    TRUNKGATE_MEDIA__FASTPATH=userspace timeout --kill-after=30s 300s \
        cargo test -p trunkgate --test e2e_media --no-fail-fast
    TRUNKGATE_MEDIA_FASTPATH=kernel timeout --kill-after=30s 300s \
        cargo test "${SECOND_PASS_CRATE[@]}" --no-fail-fast
fi
