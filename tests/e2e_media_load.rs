//! 1,000 concurrent anchored calls through the real `trunkgate` binary (issue 4, "done
//! when"): 2,000 RTP streams at 50 packets/s (100,000 packets/s relayed) for 10 s, set up
//! over SIP and driven by `trunkgate-rtpgen`. Its own test binary so that it runs alone.
//!
//! Net 58 (see `common::Net`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::trunkgate::Trunkgate;
use common::{Net, media_test_policy, poll, run_rtpgen, scratch_dir, value};
use std::time::Duration;

const CALLS: usize = 1000;
/// Loss bound: < 0.01 %.
const MAX_LOSS: f64 = 0.0001;

#[test]
fn thousand_concurrent_calls_relay_without_loss() {
    let net = Net::new(58);
    let dir = scratch_dir("thousand_concurrent_calls_relay_without_loss");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, media_test_policy(net, &[], &[])).expect("write policy");
    Trunkgate::check(&policy);
    let mut tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let pid = tg.pid();

    let pid_text = pid.to_string();
    let args = common::rtpgen_sip_args(
        net,
        &[
            "--calls",
            &CALLS.to_string(),
            "--cps",
            "250",
            "--duration",
            "10",
            "--pps",
            "50",
            "--cpu-pid",
            &pid_text,
        ],
    );

    let (run, peak) = std::thread::scope(|s| {
        let run = s.spawn(|| run_rtpgen(&dir, "rtpgen", &args, Duration::from_secs(90)));
        // While the RTP runs: every call anchored (sessions and streams at 1,000).
        let peak = poll(Duration::from_secs(30), || {
            let m = tg.metrics();
            let sessions = value(&m, "trunkgate_media_sessions", &[]);
            (sessions >= CALLS as f64).then(|| {
                (
                    sessions,
                    value(&m, "trunkgate_media_streams", &[]),
                    value(&m, "trunkgate_media_port_pairs_in_use", &[]),
                )
            })
        });
        (run.join().expect("rtpgen thread"), peak)
    });
    let report = &run.report;
    eprintln!(
        "load: rtpgen exit {:?} after {:.1} s; peak (sessions, streams, port pairs) {peak:?}; \
         report {report}",
        run.exit_code,
        run.elapsed.as_secs_f64()
    );
    assert!(
        run.exit_code.is_some() && report.is_object(),
        "rtpgen did not finish with a report (exit {:?}):\n{}",
        run.exit_code,
        run.log
    );
    assert_eq!(
        report["calls_failed"], 0,
        "calls failed to set up or end: {report}\n{}",
        run.log
    );
    assert_eq!(report["calls"], CALLS, "{report}");
    let (sessions, streams, pairs) = peak.unwrap_or_else(|| {
        panic!("trunkgate_media_sessions never reached {CALLS} while the calls were up")
    });
    assert_eq!(sessions, CALLS as f64);
    assert_eq!(streams, CALLS as f64, "one audio stream per call");
    assert_eq!(
        pairs,
        (2 * CALLS) as f64,
        "two port pairs (legs) per stream"
    );

    let sent = report["sent"].as_f64().expect("sent");
    let lost = report["lost"].as_f64().expect("lost");
    let tool_loss = report["loss_ratio"].as_f64().expect("loss_ratio");
    assert!(
        sent >= (2 * CALLS * 50 * 9) as f64,
        "rtpgen sent only {sent} packets: not 2,000 streams × 50 pps × 10 s"
    );

    // Trunkgate's view: sequence gaps on the way in, and datagrams it could not relay.
    let metrics = poll(Duration::from_secs(15), || {
        let m = tg.metrics();
        (value(&m, "trunkgate_media_sessions", &[]) == 0.0
            && value(&m, "trunkgate_media_streams", &[]) == 0.0
            && value(&m, "trunkgate_media_port_pairs_in_use", &[]) == 0.0
            && value(&m, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]) == 0.0)
            .then_some(m)
    })
    .unwrap_or_else(|| {
        let m = tg.metrics();
        let lines: Vec<&str> = m
            .lines()
            .filter(|l| {
                (l.starts_with("trunkgate_media_") || l.starts_with("trunkgate_trunk_sessions"))
                    && !l.contains("_bucket")
            })
            .collect();
        panic!(
            "sessions, streams, port pairs and trunk sessions not back to 0 within 15 s of \
             the end:\n{}",
            lines.join("\n")
        )
    });
    let relayed = value(
        &metrics,
        "trunkgate_media_packets_total",
        &[("trunk", "carrier-a")],
    );
    let tg_lost = value(
        &metrics,
        "trunkgate_media_lost_packets_total",
        &[("trunk", "carrier-a")],
    );
    let tg_dropped = value(&metrics, "trunkgate_media_dropped_packets_total", &[]);
    let tg_loss = (tg_lost + tg_dropped) / (relayed + tg_lost).max(1.0);
    eprintln!(
        "load: rtpgen sent {sent}, lost {lost} ({:.5} %), latency {}, relay CPU {} µs/packet; \
         Trunkgate relayed {relayed}, lost {tg_lost}, dropped {tg_dropped} ({:.5} %)",
        tool_loss * 100.0,
        report["latency_us"],
        report["cpu_us_per_packet"],
        tg_loss * 100.0
    );
    assert!(
        tool_loss < MAX_LOSS,
        "rtpgen lost {lost} of {sent} packets ({:.5} %), bound {:.2} %: {report}",
        tool_loss * 100.0,
        MAX_LOSS * 100.0
    );
    assert!(
        tg_loss < MAX_LOSS,
        "Trunkgate counted {tg_lost} lost and {tg_dropped} dropped of {relayed} relayed \
         ({:.5} %), bound {:.2} %",
        tg_loss * 100.0,
        MAX_LOSS * 100.0
    );
    assert!(
        relayed >= sent - lost,
        "Trunkgate counted {relayed} packets relayed, the tool received {}",
        sent - lost
    );
    assert!(tg.is_alive(), "trunkgate died under load");
    tg.stop(Duration::from_secs(10));
}
