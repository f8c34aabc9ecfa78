//! End-to-end tests of call quality (issue 17): one-way audio and "no media" flags, and the
//! estimated MOS per leg, through the real `trunkgate` binary with SIPp playing G.711 from a
//! pcap and `trunkgate-rtpgen` (its lossy forwarder, and a trunk side that falls silent).
//!
//! Net numbers 70–76 (see `common::Net`): Trunkgate on `127.0.N.1`, the PBX on `.2`,
//! carrier-a on `.3`. Every Trunkgate here runs `media.one_way_after = "2s"` and
//! `media.quality_interval = "2s"`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Scenario, SippPeer};
use common::trunkgate::Trunkgate;
use common::{Net, RtpgenRun, calls_list, media_test_policy, poll, run_rtpgen, scratch_dir, value};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ONE_WAY_AFTER: Duration = Duration::from_secs(2);
const QUALITY: [&str; 2] = ["one_way_after = \"2s\"", "quality_interval = \"2s\""];
const STOP_WITHIN: Duration = Duration::from_secs(10);
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
const PBX_MEDIA_PORT: u16 = 16000;
const TRUNK_MEDIA_PORT: u16 = 17000;
const DIRECTIONS: [&str; 3] = ["pbx_to_trunk", "trunk_to_pbx", "both"];

fn scenario(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/media")
        .join(name);
    assert!(path.is_file(), "scenario {} missing", path.display());
    path
}

fn start_trunkgate(dir: &Path, net: Net) -> Trunkgate {
    start_trunkgate_with(dir, net, &[])
}

/// With more `[media]` lines beside [`QUALITY`].
fn start_trunkgate_with(dir: &Path, net: Net, media: &[&str]) -> Trunkgate {
    let policy = dir.join("policy.toml");
    let lines: Vec<&str> = QUALITY.iter().chain(media).copied().collect();
    std::fs::write(&policy, media_test_policy(net, &[], &lines)).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), net.admin())
}

/// `trunkgate_media_one_way_total{trunk="carrier-a"}` by direction.
fn one_way_counts(metrics: &str) -> [f64; 3] {
    DIRECTIONS.map(|d| {
        value(
            metrics,
            "trunkgate_media_one_way_total",
            &[("trunk", "carrier-a"), ("direction", d)],
        )
    })
}

fn rtpgen_args(net: Net, calls: usize, duration: u32, extra: &[&str]) -> Vec<String> {
    let sock = |ip, port| SocketAddr::new(ip, port).to_string();
    let mut args: Vec<String> = [
        "sip",
        "--sbc",
        &net.sip().to_string(),
        "--pbx",
        &sock(net.pbx_ip(), 5060),
        "--trunk",
        &sock(net.carrier_a_ip(), 5060),
        "--media-ip",
        &net.pbx_ip().to_string(),
        "--trunk-media-ip",
        &net.carrier_a_ip().to_string(),
        "--calls",
        &calls.to_string(),
        "--cps",
        "40",
        "--duration",
        &duration.to_string(),
        "--pps",
        "50",
        "--threads",
        "1",
        "--seed",
        "1717",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn assert_tool_ok(test: &str, tool: &RtpgenRun) {
    assert!(
        tool.exit_code == Some(0) && tool.report["calls_failed"] == 0,
        "{test}: rtpgen exit {:?}, report {}:\n{}",
        tool.exit_code,
        tool.report,
        tool.log
    );
}

/// Per call: when leg b's `rx_packets` last grew, its value, and when (and which) one-way
/// flag appeared.
type Tracked = (Instant, u64, Option<(Instant, Value)>);

fn rx(c: &Value, side: &str) -> u64 {
    c["streams"][0][side]["rx_packets"].as_u64().unwrap_or(0)
}

/// Test 1: the carrier side stops sending after 3 s while the PBX keeps talking: every call
/// is flagged one-way, missing `trunk_to_pbx`, within `one_way_after` + 1 s of the trunk's
/// last packet (as `/calls`, polled every 100 ms, saw it), counted once per call, and logged.
#[test]
fn carrier_falling_silent_is_flagged_one_way_trunk_to_pbx() {
    const TEST: &str = "carrier_falling_silent_is_flagged_one_way_trunk_to_pbx";
    const CALLS: usize = 2;
    let net = Net::new(100);
    let dir = scratch_dir(TEST);
    let tg = start_trunkgate(&dir, net);
    let args = rtpgen_args(net, CALLS, 9, &["--uas-stop-after", "3"]);
    let (tool, seen) = std::thread::scope(|s| {
        let tool = s.spawn(|| run_rtpgen(&dir, "rtpgen", &args, Duration::from_secs(60)));
        // Per call id: (last time leg b's rx grew, its count, when the flag appeared, flag).
        let mut track: std::collections::BTreeMap<u64, Tracked> = Default::default();
        let mut last = Vec::new();
        let done = poll(Duration::from_secs(30), || {
            let now = Instant::now();
            last = calls_list(net.admin());
            for c in &last {
                let id = c["id"].as_u64().expect("call id");
                let b = rx(c, "b");
                let e = track.entry(id).or_insert((now, b, None));
                if b != e.1 {
                    (e.0, e.1) = (now, b);
                }
                let flag = &c["quality"]["one_way"];
                if e.2.is_none() && !flag.is_null() {
                    e.2 = Some((now, flag.clone()));
                }
            }
            (track.len() == CALLS && track.values().all(|t| t.2.is_some())).then_some(())
        });
        assert!(
            done.is_some(),
            "{TEST}: not every call was flagged within 30 s; tracked {track:?}; last /calls \
             {last:#?}"
        );
        let tool = tool.join().expect("rtpgen thread");
        (tool, track)
    });
    assert_tool_ok(TEST, &tool);
    for (id, (silent_from, b_packets, flag)) in &seen {
        let (at, flag) = flag.as_ref().expect("flag recorded");
        let latency = at.saturating_duration_since(*silent_from);
        eprintln!(
            "{TEST}: call {id}: trunk sent {b_packets} packets, flagged {:.2} s after its last \
             one: {flag}",
            latency.as_secs_f64()
        );
        assert_eq!(flag["missing"], "trunk_to_pbx", "call {id}: {flag}");
        assert_eq!(flag["reason"], "one_way", "call {id}: {flag}");
        assert!(
            (100..=200).contains(b_packets),
            "call {id}: the trunk sent {b_packets} packets, expected ~150 in 3 s"
        );
        assert!(
            latency <= ONE_WAY_AFTER + Duration::from_secs(1),
            "call {id}: flagged {latency:?} after the trunk's last packet, expected within \
             one_way_after ({ONE_WAY_AFTER:?}) + 1 s"
        );
        assert!(
            latency + Duration::from_millis(300) >= ONE_WAY_AFTER,
            "call {id}: flagged after {latency:?}, before one_way_after ({ONE_WAY_AFTER:?})"
        );
    }
    let metrics = tg.metrics();
    assert_eq!(
        one_way_counts(&metrics),
        [0.0, CALLS as f64, 0.0],
        "trunkgate_media_one_way_total{{carrier-a}} by {DIRECTIONS:?}"
    );
    assert_eq!(
        value(
            &metrics,
            "trunkgate_media_answered_total",
            &[("trunk", "carrier-a")]
        ),
        CALLS as f64,
        "trunkgate_media_answered_total{{carrier-a}}"
    );
    let log = tg.log_tail();
    assert!(
        log.contains("one-way audio") && log.contains("trunk_to_pbx") && log.contains("carrier-a"),
        "no one-way audio log line with trunk and direction:\n{log}"
    );
    tg.stop(STOP_WITHIN);
}

/// What `/calls` showed while a SIPp call ran.
struct Watched {
    /// The call was listed.
    seen: bool,
    /// It was listed on hold.
    held: bool,
    /// It had a live MOS.
    mos: bool,
    /// Every listing with a one-way flag.
    flags: Vec<Value>,
}

/// Polls `/calls` every 100 ms while `uac` runs.
fn watch_flags(net: Net, uac: &mut SippPeer, within: Duration) -> Watched {
    let mut w = Watched {
        seen: false,
        held: false,
        mos: false,
        flags: Vec::new(),
    };
    let deadline = Instant::now() + within;
    while uac.is_running() && Instant::now() < deadline {
        for c in calls_list(net.admin()) {
            w.seen = true;
            w.held |= c["on_hold"] == true;
            w.mos |= c["quality"]["mos"].is_f64();
            if !c["quality"]["one_way"].is_null() {
                w.flags.push(c.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    w
}

/// SIPp's built-in `uas`, or `uas_answer_hold.xml`, echoing RTP, as carrier-a for one call.
fn carrier(dir: &Path, net: Net, scenario_file: Option<&Path>) -> SippPeer {
    let args: Vec<String> = [
        "-m",
        "1",
        "-rtp_echo",
        "-mi",
        &net.carrier_a_ip().to_string(),
        "-mp",
        &TRUNK_MEDIA_PORT.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let spec = match scenario_file {
        Some(p) => Scenario::File(p),
        None => Scenario::Builtin("uas"),
    };
    SippPeer::spawn(
        dir,
        "uas",
        spec,
        net.carrier_a_ip(),
        None,
        &args,
        Duration::from_secs(40),
    )
}

fn pcap_call(test: &str, net: Net, uac_file: &str, uas_file: Option<&str>, hold: bool) {
    assert!(
        Path::new(PCAP).is_file(),
        "{PCAP} missing: install Debian's sip-tester (scripts/test.sh does)"
    );
    let dir = scratch_dir(test);
    let tg = start_trunkgate(&dir, net);
    let uas_path = uas_file.map(scenario);
    let mut uas = carrier(&dir, net, uas_path.as_deref());
    let uac_path = scenario(uac_file);
    // The UAS is ready when its socket is bound: retransmissions (500 ms) cover a UAC that
    // starts first, so no readiness sleep is needed.
    let mut uac = SippPeer::spawn(
        &dir,
        "uac",
        Scenario::File(&uac_path),
        net.pbx_ip(),
        Some(net.sip()),
        &[
            "-m".into(),
            "1".into(),
            "-mi".into(),
            net.pbx_ip().to_string(),
            "-mp".into(),
            PBX_MEDIA_PORT.to_string(),
        ],
        Duration::from_secs(40),
    );
    let watched = watch_flags(net, &mut uac, Duration::from_secs(40));
    let result = uac.wait();
    assert!(
        result.successful == 1 && result.failed == 0,
        "{test}: the SIPp call did not succeed: {result:?}\n{}\n{}",
        uac.report(),
        uas.report()
    );
    let _ = uas.wait();
    assert!(watched.seen, "{test}: the call never showed in /calls");
    assert_eq!(watched.held, hold, "{test}: /calls on_hold seen");
    assert!(watched.mos, "{test}: /calls never showed a live MOS");
    assert!(
        watched.flags.is_empty(),
        "{test}: flagged one-way: {:#?}",
        watched.flags
    );
    let metrics = tg.metrics();
    assert_eq!(
        one_way_counts(&metrics),
        [0.0; 3],
        "{test}: one-way counted"
    );
    let mos_count = value(
        &metrics,
        "trunkgate_media_mos_count",
        &[("trunk", "carrier-a")],
    );
    assert!(
        mos_count >= 2.0,
        "{test}: trunkgate_media_mos_count{{carrier-a}} = {mos_count}: expected an estimate \
         per direction per 2 s interval of the 7 s of audio"
    );
    tg.stop(STOP_WITHIN);
}

/// Test 2: a normal call (7 s of G.711 from the pcap, echoed by the carrier) is not flagged.
#[test]
fn normal_pcap_call_is_not_flagged() {
    pcap_call(
        "normal_pcap_call_is_not_flagged",
        Net::new(101),
        "uac_pcap_echo.xml",
        None,
        false,
    );
}

/// Test 3: the same call put on hold (re-INVITE, a=sendonly / a=recvonly) and kept silent
/// for 6 s (3 × one_way_after) is not flagged.
#[test]
fn held_call_is_not_flagged() {
    pcap_call(
        "held_call_is_not_flagged",
        Net::new(102),
        "uac_pcap_hold.xml",
        Some("uas_answer_hold.xml"),
        true,
    );
}

/// Test 3b: a call whose media never starts is flagged "no media" (missing both ways)
/// `one_way_after` after the answer, before `media.timeout` (6 s here) ends it with BYE.
#[test]
fn call_without_media_is_flagged_no_media_before_the_timeout() {
    const TEST: &str = "call_without_media_is_flagged_no_media_before_the_timeout";
    let net = Net::new(106);
    let dir = scratch_dir(TEST);
    let tg = start_trunkgate_with(&dir, net, &["timeout = \"6s\""]);
    let mut uas = carrier(&dir, net, None);
    let uac_path = scenario("uac_no_media_wait_bye.xml");
    let mut uac = SippPeer::spawn(
        &dir,
        "uac",
        Scenario::File(&uac_path),
        net.pbx_ip(),
        Some(net.sip()),
        &[
            "-m".into(),
            "1".into(),
            "-mi".into(),
            net.pbx_ip().to_string(),
            "-mp".into(),
            PBX_MEDIA_PORT.to_string(),
        ],
        Duration::from_secs(40),
    );
    let (mut first_seen, mut flagged) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while uac.is_running() && Instant::now() < deadline {
        for c in calls_list(net.admin()) {
            let now = Instant::now();
            first_seen.get_or_insert(now);
            let flag = &c["quality"]["one_way"];
            if flagged.is_none() && !flag.is_null() {
                flagged = Some((now, flag.clone()));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = uac.wait();
    assert!(
        result.successful == 1,
        "{TEST}: the caller did not get Trunkgate's BYE: {result:?}\n{}",
        uac.report()
    );
    let _ = uas.wait();
    let seen = first_seen.expect("the call showed in /calls");
    let (at, flag) = flagged.expect("the call was flagged while it was up");
    let after = at.duration_since(seen);
    eprintln!(
        "{TEST}: flagged {:.2} s after the call appeared: {flag}",
        after.as_secs_f64()
    );
    assert_eq!(flag["reason"], "no_media", "{flag}");
    assert_eq!(flag["missing"], "both", "{flag}");
    assert!(
        after <= ONE_WAY_AFTER + Duration::from_millis(1500),
        "flagged {after:?} after the call appeared (answer at once), expected about \
         one_way_after ({ONE_WAY_AFTER:?})"
    );
    assert_eq!(one_way_counts(&tg.metrics()), [0.0, 0.0, 1.0]);
    tg.stop(STOP_WITHIN);
}

const MOS_CALLS: usize = 10;

fn mos_lines(metrics: &str) -> String {
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("trunkgate_media_mos"))
        .collect();
    lines.join("\n")
}

/// Mean over the calls of `mos_call` per leg after >= 6 s of audio, and the metrics after.
fn mos_run(test: &str, net: Net, drop: &str) -> ((f64, f64), String) {
    let dir = scratch_dir(test);
    let tg = start_trunkgate(&dir, net);
    let args = rtpgen_args(net, MOS_CALLS, 9, &["--drop", drop]);
    let (tool, mos) = std::thread::scope(|s| {
        let tool = s.spawn(|| run_rtpgen(&dir, "rtpgen", &args, Duration::from_secs(60)));
        let mut last = Vec::new();
        let mos = poll(Duration::from_secs(25), || {
            last = calls_list(net.admin());
            let ready = last.len() == MOS_CALLS
                && last.iter().all(|c| rx(c, "b") >= 300)
                && last.iter().all(|c| {
                    ["a", "b"]
                        .iter()
                        .all(|l| c["streams"][0][l]["mos_call"].is_f64())
                });
            ready.then(|| {
                let mean = |l: &str| {
                    last.iter()
                        .map(|c| c["streams"][0][l]["mos_call"].as_f64().unwrap_or(0.0))
                        .sum::<f64>()
                        / MOS_CALLS as f64
                };
                (mean("a"), mean("b"))
            })
        });
        let tool = tool.join().expect("rtpgen thread");
        let mos = mos.unwrap_or_else(|| {
            panic!(
                "{test}: /calls never showed {MOS_CALLS} calls with >= 6 s of audio and a MOS \
                 on both legs; last {last:#?}\nrtpgen: {}",
                tool.log
            )
        });
        (tool, mos)
    });
    assert_tool_ok(test, &tool);
    let metrics = poll(Duration::from_secs(5), || {
        let m = tg.metrics();
        (value(&m, "trunkgate_media_sessions", &[]) == 0.0).then_some(m)
    })
    .expect("media sessions back to 0 after the calls");
    tg.stop(STOP_WITHIN);
    (mos, metrics)
}

/// Test 4: G.711 with 0 %, 2 % and 5 % of the PBX's packets dropped before Trunkgate: the
/// PBX leg's estimated MOS falls in the bands the documented formula gives for G.711 (random
/// loss, no jitter, 40 ms assumed delay: 4.37 / 4.18 / 3.85; bands for measured loss within
/// ±0.5 / ±1 point), in that order, while the clean trunk leg stays at ~4.37; the per-trunk
/// MOS histogram is filled, and no call is flagged one-way.
#[test]
fn estimated_mos_falls_with_injected_loss() {
    let runs = std::thread::scope(|s| {
        let at = |name: &'static str, n: u8, drop: &'static str| {
            s.spawn(move || mos_run(name, Net::new(n), drop))
        };
        let h = [
            at("estimated_mos_falls_with_injected_loss_0", 103, "0"),
            at("estimated_mos_falls_with_injected_loss_2", 104, "0.02"),
            at("estimated_mos_falls_with_injected_loss_5", 105, "0.05"),
        ];
        h.map(|h| h.join().expect("mos run thread"))
    });
    let [((a0, b0), m0), ((a2, b2), m2), ((a5, b5), m5)] = &runs;
    eprintln!(
        "MOS (leg a = from the PBX, impaired / leg b = from the trunk): 0 % {a0:.3} / {b0:.3}, \
         2 % {a2:.3} / {b2:.3}, 5 % {a5:.3} / {b5:.3}"
    );
    assert!(
        *a0 >= 4.30,
        "0 % loss: MOS {a0:.3}, expected >= 4.30 (formula: 4.37)"
    );
    assert!(
        (4.12..=4.24).contains(a2),
        "2 % loss: MOS {a2:.3}, expected 4.12–4.24 (formula: 4.18)"
    );
    assert!(
        (3.74..=3.97).contains(a5),
        "5 % loss: MOS {a5:.3}, expected 3.74–3.97 (formula: 3.85)"
    );
    assert!(
        a0 > a2 && a2 > a5,
        "MOS not falling with loss: {a0} {a2} {a5}"
    );
    for b in [b0, b2, b5] {
        assert!(
            *b >= 4.30,
            "the unimpaired trunk leg's MOS is {b:.3}, expected >= 4.30"
        );
    }
    for m in [m0, m2, m5] {
        let count = value(m, "trunkgate_media_mos_count", &[("trunk", "carrier-a")]);
        assert!(
            count >= (2 * MOS_CALLS * 3) as f64,
            "trunkgate_media_mos_count{{carrier-a}} = {count}: expected >= 3 intervals per \
             direction per call"
        );
        assert_eq!(
            one_way_counts(m),
            [0.0; 3],
            "calls with audio both ways flagged"
        );
    }
    // The 5 % run's histogram has its mass lower than the clean run's.
    let below_4 = |m: &str| {
        value(
            m,
            "trunkgate_media_mos_bucket",
            &[("trunk", "carrier-a"), ("le", "4")],
        )
    };
    assert!(
        below_4(m5) > below_4(m0),
        "mos_bucket{{le=\"4\"}}: 5 % run {} vs clean run {}:\n{}\n{}",
        below_4(m5),
        below_4(m0),
        mos_lines(m5),
        mos_lines(m0)
    );
}
