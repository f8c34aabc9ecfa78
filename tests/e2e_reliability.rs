//! Overload and soak through the real binary (issue 11, the reliability suite). Both tests
//! run side by side (one binary, two nets): about a minute of wall time in all.
//!
//! - **Overload** (net 107): carrier-a limited to 20 calls/s (bucket 20), the only trunk of
//!   the route; the PBX's SIPp offers 60 calls/s (3×) for 60 s. Every call Trunkgate admits
//!   completes; every other one gets `503` with `Retry-After` — never a timeout — and is
//!   counted as a `cps` reject; RSS stays bounded. Setup times are printed (and kept in
//!   `docs/performance.md`), not asserted: timing belongs to benchmarks.
//! - **Soak** (net 108): `trunkgate-rtpgen` places 10 calls/s for 55 s (`TRUNKGATE_SOAK_SECS`
//!   − 5), each with 5 s of RTP
//!   both ways (about 50 calls up at once). RSS, open descriptors and media port pairs are
//!   sampled every 2 s: after a 15 s warm-up they stay flat (within bounds stated below),
//!   and at the end every gauge is back to zero. `benches/soak.sh` runs the same for 10 min.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, media_test_policy, poll, run_rtpgen, scratch_dir, test_policy, value};
use std::time::{Duration, Instant};

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn three_times_the_call_rate_gets_503_never_a_timeout() {
    const RATE: u32 = 60;
    const CALLS: u32 = 3600;
    let net = Net::new(107);
    let dir = scratch_dir("reliability_overload");
    let text = test_policy(net)
        .replacen("max_cps = 100000", "max_cps = 20", 1)
        .replacen(
            "trunks = [\"carrier-a\", \"carrier-b\"]",
            "trunks = [\"carrier-a\"]",
            1,
        );
    assert!(text.contains("max_cps = 20") && text.contains("trunks = [\"carrier-a\"]"));
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    Trunkgate::check(&policy);
    let _carrier = Uas::start(
        &dir,
        "carrier_a",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(150),
    );
    let mut tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let pid = tg.pid();
    // Unloaded first: the setup time to compare with.
    let calm = Uac::spawn(
        &dir,
        "pbx_calm",
        UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, 5, 20),
    )
    .wait();
    calm.assert_all_succeeded(20);
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let result = Uac::spawn(
        &dir,
        "pbx_overload",
        UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, RATE, CALLS),
    )
    .wait();
    let elapsed = started.elapsed();
    let rss_after = rss_kib(pid);
    let m = tg.metrics();
    let rejects = value(
        &m,
        "trunkgate_rejects_total",
        &[("trunk", "carrier-a"), ("reason", "cps")],
    );
    eprintln!(
        "overload: {} offered at {RATE}/s in {:.1} s: {} completed, {} refused, {rejects} cps \
         rejects counted; RSS {rss_before} → {rss_after} KiB",
        result.created,
        elapsed.as_secs_f64(),
        result.successful,
        result.failed
    );
    assert_eq!(
        result.successful + result.failed,
        u64::from(CALLS),
        "every call ended one way or the other\n{}",
        tg.log_tail()
    );
    assert_eq!(
        result.failed as f64, rejects,
        "every refused call is a counted 503 for the call rate (no timeout, no other error)"
    );
    // 20/s over the run plus the bucket: roughly a third admitted.
    let admitted = result.successful as f64;
    let expected = 20.0 * elapsed.as_secs_f64().min(f64::from(CALLS / RATE) + 5.0);
    assert!(
        admitted > 0.5 * expected && admitted < 1.5 * expected + 20.0,
        "{admitted} admitted, about {expected:.0} expected at 20/s"
    );
    // (That a call-rate 503 carries Retry-After is the core's unit test
    // `over_the_call_rate_a_call_overflows_then_gets_503`.)
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB under overload"
    );
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(Duration::from_secs(10));
}

#[test]
fn a_soak_of_calls_with_media_leaves_nothing_behind() {
    // 60 s in the suite; `benches/soak.sh` sets TRUNKGATE_SOAK_SECS=600.
    let secs: u64 = std::env::var("TRUNKGATE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
        .max(30);
    let net = Net::new(108);
    let dir = scratch_dir("reliability_soak");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, media_test_policy(net, &[], &[])).unwrap();
    Trunkgate::check(&policy);
    let mut tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let pid = tg.pid();
    // Rounds of 50 calls (set up at 25/s, 3 s of RTP both ways at 50 packets/s, torn down)
    // until the time is up: calls start and end all the time, with media.
    let args = common::rtpgen_sip_args(
        net,
        &[
            "--calls",
            "50",
            "--cps",
            "25",
            "--duration",
            "3",
            "--pps",
            "50",
        ],
    );
    let start = Instant::now();
    // (elapsed s, RSS KiB, open descriptors, port pairs in use) after each round.
    let mut samples: Vec<(f64, u64, usize, f64)> = Vec::new();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(secs.saturating_sub(6)) {
        round += 1;
        let run = run_rtpgen(
            &dir,
            &format!("rtpgen{round}"),
            &args,
            Duration::from_secs(60),
        );
        assert_eq!(
            run.report["calls_failed"], 0,
            "round {round}: {}\n{}",
            run.report, run.log
        );
        assert_eq!(run.report["calls"], 50, "round {round}: {}", run.report);
        // The round's calls are over: sessions and port pairs back to zero.
        let pairs = poll(Duration::from_secs(5), || {
            let m = tg.metrics();
            let pairs = value(&m, "trunkgate_media_port_pairs_in_use", &[]);
            (pairs == 0.0).then_some(pairs)
        })
        .unwrap_or_else(|| value(&tg.metrics(), "trunkgate_media_port_pairs_in_use", &[]));
        samples.push((
            start.elapsed().as_secs_f64(),
            rss_kib(pid),
            open_fds(pid),
            pairs,
        ));
    }
    for (t, rss, fds, pairs) in &samples {
        eprintln!("soak: t={t:5.1}s rss={rss} KiB fds={fds} port_pairs={pairs}");
    }
    // After the warm-up (the first two rounds), between rounds: flat.
    let steady: Vec<_> = samples.iter().skip(2).collect();
    assert!(steady.len() >= 3, "too few rounds: {samples:?}");
    let (rss_min, rss_max) = steady
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s.1), hi.max(s.1)));
    let (fd_min, fd_max) = steady
        .iter()
        .fold((usize::MAX, 0), |(lo, hi), s| (lo.min(s.2), hi.max(s.2)));
    // RSS within 8 MiB (allocator arenas breathe), descriptors back to the same few (the
    // 4 of each call closed), no port pair left in use.
    assert!(rss_max - rss_min < 8 * 1024, "RSS {rss_min}..{rss_max} KiB");
    assert!(
        fd_max - fd_min <= 8,
        "descriptors {fd_min}..{fd_max} between rounds"
    );
    assert!(
        steady.iter().all(|s| s.3 == 0.0),
        "port pairs left: {steady:?}"
    );
    // Every gauge back to zero: transactions once Timer J/K and the INVITEs' 64×T1 (32 s)
    // have run out after the last BYE.
    let drained = poll(Duration::from_secs(40), || {
        let m = tg.metrics();
        let zero = |name: &str| value(&m, name, &[]) == 0.0;
        (zero("trunkgate_media_sessions")
            && zero("trunkgate_media_port_pairs_in_use")
            && zero("trunkgate_dialogs_active")
            && zero("trunkgate_sip_transactions_active")
            && value(&m, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]) == 0.0)
            .then_some(())
    });
    assert!(drained.is_some(), "not back to zero: {}", {
        let m = tg.metrics();
        [
            "trunkgate_media_sessions",
            "trunkgate_media_port_pairs_in_use",
            "trunkgate_dialogs_active",
            "trunkgate_sip_transactions_active",
            "trunkgate_trunk_sessions",
        ]
        .map(|n| format!("{n} {}", value(&m, n, &[])))
        .join(", ")
    });
    tg.stop(Duration::from_secs(10));
}
