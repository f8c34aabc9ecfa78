//! End-to-end tests of operator control (issue 9): failover drills during SIPp load
//! (`down`, `reject-503`, `cap=N`, `drain`, dry runs), hot reload without dropping calls
//! (`ctl reload`, a broken file, a removed trunk draining, SIGHUP), and the protected admin
//! API (`trunkgate ctl` without the token, a non-loopback listener without one), with the
//! real `trunkgate` binary between SIPp peers on loopback.
//!
//! Each test owns `127.0.N.0/24` for N from 180 up (see `common::Net`); the admin API listens
//! on port 9491 of that network. Every run is bounded (SIPp `-m`, hard deadlines), every
//! wait polls with a deadline, and every child process is killed on drop. What SIPp counts
//! (its own `-trace_stat` counters) is the verdict; Trunkgate's reports and metrics are
//! checked against it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::load::{LongCalls, column, stat_last_row, uas_calls};
use common::sipp::{Scenario, SippPeer, Transport, Uas};
use common::trunkgate::{BIN, Trunkgate, ctl, ctl_env};
use common::{Net, http_get, poll, samples, scratch_dir, test_policy};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);
const ADMIN_PORT: u16 = 9491;

fn admin(net: Net) -> SocketAddr {
    SocketAddr::new(net.trunkgate_ip(), ADMIN_PORT)
}

/// `common::test_policy` with the admin API on [`ADMIN_PORT`], carrier-a's `max_sessions`
/// set to `a_sessions` (when given), the route's trunks `route`, and `extra` appended.
fn policy(net: Net, a_sessions: Option<u32>, route: &[&str], extra: &str) -> String {
    let mut out = String::new();
    let mut trunk = String::new();
    for line in test_policy(net).lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("name = ") {
            name.trim_matches('"').clone_into(&mut trunk);
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if key == "trunks" {
            let names: Vec<String> = route.iter().map(|t| format!("{t:?}")).collect();
            out.push_str(&format!("trunks = [{}]\n", names.join(", ")));
            continue;
        }
        if key == "max_sessions" && trunk == "carrier-a" {
            if let Some(n) = a_sessions {
                out.push_str(&format!("max_sessions = {n}\n"));
                continue;
            }
        }
        out.push_str(&line.replace(
            &format!("{}:9091", net.trunkgate_ip()),
            &admin(net).to_string(),
        ));
        out.push('\n');
    }
    out.push_str(extra);
    assert!(
        out.contains(&admin(net).to_string()),
        "admin not moved:\n{out}"
    );
    out
}

/// Write `text` as the policy, check it, start Trunkgate on it.
fn start(dir: &Path, net: Net, text: &str) -> (Trunkgate, PathBuf) {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("write policy");
    Trunkgate::check(&path);
    (Trunkgate::start(dir, Some(&path), admin(net)), path)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ctl ARGS --json`: must exit 0 and print JSON.
fn ctl_json(policy: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ctl(policy, &all);
    assert_eq!(out.status.code(), Some(0), "ctl {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ctl {args:?} --json is not JSON ({e}): {}", text(&out)))
}

fn metric(tg: &Trunkgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    common::value(&tg.metrics(), name, labels)
}

fn uas(dir: &Path, name: &str, ip: std::net::IpAddr) -> Uas {
    Uas::start(dir, name, ip, Transport::Udp, Duration::from_secs(120))
}

/// A UAS whose `CurrentCall` is exactly its calls in progress (SIPp's built-in `uas`
/// keeps each call 4 s after its BYE).
fn uas_without_timewait(dir: &Path, name: &str, ip: std::net::IpAddr) -> SippPeer {
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/control/uas_no_timewait.xml");
    let mut peer = SippPeer::spawn(
        dir,
        name,
        Scenario::File(&scenario),
        ip,
        None,
        &[],
        Duration::from_secs(120),
    );
    // SIPp writes its statistics file once it has set up (its first row within a second).
    let stat = dir.join(format!("{name}_stat.csv"));
    wait_for(
        "the SIPp UAS writes its statistics",
        Duration::from_secs(10),
        || stat.exists(),
    );
    peer.assert_running();
    peer
}

/// Calls a UAS has received so far (its stat file, dumped every second; 0 before the first).
fn received(dir: &Path, name: &str) -> u64 {
    stat_last_row(&dir.join(format!("{name}_stat.csv")))
        .map_or(0, |(row, _)| column(&row, "IncomingCall(C)"))
}

/// Calls a UAS has received, from a stat row written at least a second from now (SIPp dumps
/// its counters every second, so the last row may be a second old).
fn received_fresh(dir: &Path, name: &str) -> u64 {
    let path = dir.join(format!("{name}_stat.csv"));
    let rows = stat_last_row(&path).map_or(0, |(_, n)| n);
    let mut calls = 0;
    wait_for(
        "two fresh SIPp stat rows",
        Duration::from_secs(5),
        || match stat_last_row(&path) {
            Some((row, n)) if n >= rows + 2 => {
                calls = column(&row, "IncomingCall(C)");
                true
            }
            _ => false,
        },
    );
    calls
}

/// Every `CurrentCall` sample a UAS's stat file holds.
fn concurrency_samples(dir: &Path, name: &str) -> Vec<u64> {
    let path = dir.join(format!("{name}_stat.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let Some(i) = header.split(';').position(|h| h == "CurrentCall") else {
        return Vec::new();
    };
    lines
        .filter_map(|l| l.split(';').nth(i).and_then(|v| v.trim().parse().ok()))
        .collect()
}

/// Wait until `f` holds (polled every 100 ms), or fail naming `what`.
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    assert!(
        poll(timeout, || f().then_some(())).is_some(),
        "{what}: not within {timeout:?}"
    );
}

/// The report of the latest drill (`ctl drill report --json`).
fn latest_report(policy: &Path) -> Value {
    ctl_json(policy, &["drill", "report"])["report"].clone()
}

/// Wait until drill `id` has ended (expired or stopped); its report.
fn wait_drill_end(policy: &Path, id: u64, timeout: Duration) -> Value {
    let mut report = Value::Null;
    wait_for("the drill ends", timeout, || {
        report = ctl_json(policy, &["drill", "report", &id.to_string()])["report"].clone();
        report["end"] != "running"
    });
    report
}

fn start_drill(policy: &Path, args: &[&str]) -> u64 {
    let mut all = vec!["drill", "start"];
    all.extend_from_slice(args);
    let v = ctl_json(policy, &all);
    v["drill"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no drill id in {v}"))
}

/// Wait for a `LongCalls` run: SIPp exited 0 with `calls` successful and none failed.
fn all_succeeded(run: LongCalls, calls: u64, what: &str) {
    let (c, log) = run.wait();
    assert!(
        c.exit_code == Some(0) && c.failed == 0 && c.successful == calls,
        "{what}: SIPp {c:?}, expected {calls} successful and 0 failed\n{log}"
    );
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Drills
// ---------------------------------------------------------------------------------------

/// 20 calls/s of 2 s calls; `drill start carrier-a --mode down --for 20s` mid-run: no call
/// fails, carrier-b carries the drill's calls, carrier-a carries alone again after expiry,
/// and the report's re-routed calls match carrier-b's own SIPp count within 2.
#[test]
fn drill_down_reroutes_and_expires() {
    let net = Net::new(180);
    let dir = scratch_dir("control_drill_down_reroutes_and_expires");
    let (mut tg, policy) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-a", "carrier-b"], ""),
    );
    let _a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let uac = LongCalls::spawn_at(&dir, "uac", net, 5060, 20, 700, 200, Duration::from_secs(2));
    wait_for("carrier-a carries calls", Duration::from_secs(15), || {
        received(&dir, "uas_a") >= 40
    });
    let id = start_drill(&policy, &["carrier-a", "--mode", "down", "--for", "20s"]);
    let status = ctl_json(&policy, &["status"]);
    assert_eq!(status["drills"][0]["mode"], "down", "status: {status}");
    let trunks = ctl_json(&policy, &["trunks"]);
    assert_eq!(trunks["trunks"][0]["drill"], "down", "{trunks}");
    assert_eq!(
        metric(&tg, "trunkgate_trunk_up", &[("trunk", "carrier-a")]),
        0.0,
        "a down drill counts the trunk as failed"
    );
    assert!(tg.log_tail().contains("drill started"), "no start log line");
    assert_eq!(
        metric(
            &tg,
            "trunkgate_drill_active",
            &[("trunk", "carrier-a"), ("mode", "down")]
        ),
        1.0
    );
    let report = wait_drill_end(&policy, id, Duration::from_secs(30));
    assert_eq!(report["end"], "expired", "{report}");
    assert_eq!(metric(&tg, "trunkgate_drill_active", &[]), 0.0);
    assert_eq!(
        metric(&tg, "trunkgate_trunk_up", &[("trunk", "carrier-a")]),
        1.0
    );
    // After expiry: carrier-b gets no new call (the ones up finish). SIPp dumps its counters
    // every second: read rows written after the expiry.
    let b_at_expiry = received_fresh(&dir, "uas_b");
    let a_at_expiry = received(&dir, "uas_a");
    all_succeeded(uac, 700, "PBX side");
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    assert_eq!(on_a + on_b, 700, "calls received by (carrier-a, carrier-b)");
    assert!(
        on_b <= b_at_expiry + 2,
        "carrier-b got {} calls after the drill expired (at expiry {b_at_expiry}, end {on_b})",
        on_b - b_at_expiry
    );
    assert!(
        on_a > a_at_expiry + 20,
        "carrier-a carried nothing after expiry ({a_at_expiry} -> {on_a})"
    );
    let rerouted = n(&report["rerouted"]);
    assert!(
        rerouted.abs_diff(on_b) <= 2,
        "report re-routed {rerouted}, carrier-b's SIPp counted {on_b}: {report}"
    );
    assert!(n(&report["calls_attempted"]) >= 350, "{report}");
    assert_eq!(n(&report["failed"]), 0, "{report}");
    assert!(
        tg.log_tail().contains("drill expired"),
        "no expiry log line"
    );
    eprintln!("drill down: carrier-a {on_a}, carrier-b {on_b}, report {report}");
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// `--mode reject-503` during a run: every call completes via carrier-b and
/// `trunkgate_failovers_total` rises by the number of calls tried on carrier-a.
#[test]
fn drill_reject_503_runs_the_failover_path() {
    let net = Net::new(181);
    let dir = scratch_dir("control_drill_reject_503_runs_the_failover_path");
    let (mut tg, policy) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-a", "carrier-b"], ""),
    );
    let _a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let uac = LongCalls::spawn_at(&dir, "uac", net, 5060, 20, 400, 200, Duration::from_secs(2));
    wait_for("carrier-a carries calls", Duration::from_secs(15), || {
        received(&dir, "uas_a") >= 20
    });
    let before = metric(&tg, "trunkgate_failovers_total", &[]);
    let attempts_before = metric(
        &tg,
        "trunkgate_trunk_attempts_total",
        &[("trunk", "carrier-a")],
    );
    let id = start_drill(
        &policy,
        &["carrier-a", "--mode", "reject-503", "--for", "8s"],
    );
    let report = wait_drill_end(&policy, id, Duration::from_secs(20));
    // The breaker took carrier-a down during the drill; its end put it back as it was.
    let trunks = ctl_json(&policy, &["trunks"]);
    assert_eq!(trunks["trunks"][0]["state"], "up", "{trunks}");
    assert_eq!(
        metric(&tg, "trunkgate_trunk_up", &[("trunk", "carrier-a")]),
        1.0
    );
    let during = metric(&tg, "trunkgate_failovers_total", &[]) - before;
    let attempts = metric(
        &tg,
        "trunkgate_trunk_attempts_total",
        &[("trunk", "carrier-a")],
    ) - attempts_before;
    all_succeeded(uac, 400, "PBX side");
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    assert_eq!(on_a + on_b, 400);
    let failovers = n(&report["failovers"]);
    // Each call of the drill tried carrier-a first, got 503 from Trunkgate itself and
    // failed over: the calls tried on carrier-a that carrier-a never saw are exactly the
    // failovers. (After `breaker_failures` of them the breaker takes carrier-a down, as a
    // real run of 503s would, and the rest of the drill's calls skip it.)
    let m = tg.metrics();
    let tried_on_a = common::value(
        &m,
        "trunkgate_trunk_attempts_total",
        &[("trunk", "carrier-a")],
    ) as u64;
    let failovers_total = common::value(&m, "trunkgate_failovers_total", &[]) as u64;
    assert!(failovers >= 1, "{report}");
    assert_eq!(
        tried_on_a - on_a,
        failovers_total,
        "calls tried on carrier-a ({tried_on_a}) minus those carrier-a's SIPp received ({on_a})"
    );
    assert_eq!(failovers_total, failovers, "{report}");
    assert_eq!(
        during as u64, failovers,
        "trunkgate_failovers_total rose by {during}"
    );
    assert!(
        attempts as u64 >= failovers,
        "attempts on carrier-a {attempts}"
    );
    let rerouted = n(&report["rerouted"]);
    assert!(rerouted >= 100, "{report}");
    assert!(
        on_b.abs_diff(rerouted) <= 2,
        "carrier-b's SIPp counted {on_b}, the report re-routed {rerouted}"
    );
    assert_eq!(n(&report["failed"]), 0, "{report}");
    eprintln!(
        "drill reject-503: carrier-a {on_a}, carrier-b {on_b}, failovers {failovers} ({during} in metrics)"
    );
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// `--mode cap=5`: carrier-a's SIPp never has more than 5 calls at once (its own
/// `CurrentCall` samples, from a UAS scenario without the built-in one's 4 s timewait);
/// the excess goes to carrier-b.
#[test]
fn drill_cap_limits_carrier_a() {
    let net = Net::new(182);
    let dir = scratch_dir("control_drill_cap_limits_carrier_a");
    let (mut tg, policy) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-a", "carrier-b"], ""),
    );
    let mut a = uas_without_timewait(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let id = start_drill(&policy, &["carrier-a", "--mode", "cap=5", "--for", "60s"]);
    let uac = LongCalls::spawn_at(&dir, "uac", net, 5060, 20, 240, 200, Duration::from_secs(2));
    let peak = std::thread::spawn({
        let admin = admin(net);
        move || {
            let deadline = Instant::now() + Duration::from_secs(16);
            let mut peak = 0.0_f64;
            while Instant::now() < deadline {
                if let Ok((200, body)) = http_get(admin, "/metrics") {
                    peak = peak.max(common::value(
                        &body,
                        "trunkgate_trunk_sessions",
                        &[("trunk", "carrier-a")],
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        }
    });
    all_succeeded(uac, 240, "PBX side");
    let peak = peak.join().unwrap();
    a.assert_running();
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    let samples_a = concurrency_samples(&dir, "uas_a");
    let max_a = samples_a.iter().copied().max().unwrap_or(0);
    assert!(
        samples_a.len() >= 10,
        "too few carrier-a samples: {samples_a:?}"
    );
    assert!(
        max_a <= 5,
        "carrier-a's SIPp saw {max_a} concurrent calls: {samples_a:?}"
    );
    assert!(
        peak <= 5.0,
        "trunkgate_trunk_sessions{{carrier-a}} peaked at {peak}"
    );
    assert!(
        on_a >= 10 && on_b >= 150,
        "calls (carrier-a, carrier-b) = ({on_a}, {on_b})"
    );
    assert_eq!(on_a + on_b, 240);
    ctl_json(&policy, &["drill", "stop", "carrier-a"]);
    let report = wait_drill_end(&policy, id, Duration::from_secs(5));
    assert_eq!(report["end"], "stopped");
    assert_eq!(n(&report["carried_by"]["carrier-b"]), on_b, "{report}");
    eprintln!(
        "drill cap=5: carrier-a {on_a} (max {max_a} at once, gauge peak {peak}), carrier-b {on_b}"
    );
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// `--mode drain` with 20 long calls up on carrier-a: none is cut; 40 new calls go to
/// carrier-b.
#[test]
fn drill_drain_keeps_established_calls() {
    let net = Net::new(183);
    let dir = scratch_dir("control_drill_drain_keeps_established_calls");
    let (mut tg, policy) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-a", "carrier-b"], ""),
    );
    let _a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let long = LongCalls::spawn_at(&dir, "long", net, 5060, 20, 20, 20, Duration::from_secs(12));
    wait_for("20 calls up on carrier-a", Duration::from_secs(10), || {
        metric(&tg, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]) == 20.0
    });
    let id = start_drill(&policy, &["carrier-a", "--mode", "drain", "--for", "30s"]);
    let short = LongCalls::spawn_at(&dir, "short", net, 5062, 20, 40, 40, Duration::from_secs(1));
    all_succeeded(short, 40, "new calls during the drain");
    all_succeeded(long, 20, "long calls on carrier-a during the drain");
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    assert_eq!(
        (on_a, on_b),
        (20, 40),
        "calls received by (carrier-a, carrier-b)"
    );
    ctl_json(&policy, &["drill", "stop", "--all"]);
    let report = wait_drill_end(&policy, id, Duration::from_secs(5));
    assert_eq!(n(&report["carried_by"]["carrier-b"]), 40, "{report}");
    assert!(tg.log_tail().contains("drill stopped"), "no stop log line");
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// A dry run of `down` on the only trunk of a route exits 1 and names the route; with
/// another trunk left it exits 0 and starts nothing.
#[test]
fn drill_dry_run_names_a_route_left_empty() {
    let net = Net::new(184);
    let dir = scratch_dir("control_drill_dry_run_names_a_route_left_empty");
    let extra = "\n[[route]]\nname = \"emergency\"\nmatch = { to_prefix = [\"911\"] }\ntrunks = [\"carrier-b\"]\n";
    let (mut tg, policy) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-a", "carrier-b"], extra),
    );
    let out = ctl(
        &policy,
        &[
            "drill",
            "start",
            "carrier-b",
            "--mode",
            "down",
            "--for",
            "20s",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("emergency"), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("route left EMPTY"), "{}", text(&out));
    let out = ctl(
        &policy,
        &[
            "drill",
            "start",
            "carrier-a",
            "--mode",
            "down",
            "--for",
            "20s",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["dry_run"]["routes"][0]["trunks_left"][0], "carrier-b",
        "{v}"
    );
    assert_eq!(
        ctl_json(&policy, &["drill", "status"])["drills"],
        Value::Array(vec![])
    );
    // Beyond drill.max_duration (30 min): refused.
    let out = ctl(
        &policy,
        &[
            "drill",
            "start",
            "carrier-a",
            "--mode",
            "down",
            "--for",
            "2h",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

// ---------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------

/// carrier-a `max_sessions = 5` under 4-second calls at 20/s: a reload to 60 drops nothing
/// and the next calls use the new limit; a broken file is refused with file:line:col and
/// the limit stays 60.
#[test]
fn reload_raises_a_limit_and_refuses_a_broken_file() {
    let net = Net::new(185);
    let dir = scratch_dir("control_reload_raises_a_limit_and_refuses_a_broken_file");
    let route = ["carrier-a", "carrier-b"];
    let (mut tg, policy_path) = start(&dir, net, &policy(net, Some(5), &route, ""));
    let _a = uas_without_timewait(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let uac = LongCalls::spawn_at(&dir, "uac", net, 5060, 20, 300, 200, Duration::from_secs(4));
    wait_for("carrier-a full at 5", Duration::from_secs(10), || {
        metric(&tg, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]) == 5.0
            && metric(&tg, "trunkgate_trunk_sessions", &[("trunk", "carrier-b")]) > 5.0
    });
    std::fs::write(&policy_path, policy(net, Some(60), &route, "")).unwrap();
    let out = ctl(&policy_path, &["reload", "--diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("trunk carrier-a: max_sessions"),
        "{}",
        text(&out)
    );
    wait_for(
        "carrier-a above the old limit",
        Duration::from_secs(8),
        || metric(&tg, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]) > 5.0,
    );
    // A broken file: refused, file:line:col on stderr, the running limit stays.
    let good = std::fs::read_to_string(&policy_path).unwrap();
    std::fs::write(
        &policy_path,
        good.replace("max_sessions = 60", "max_sessions = \"lots\""),
    )
    .unwrap();
    let out = ctl(&policy_path, &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let origin = format!("{}:", policy_path.display());
    assert!(
        stderr.lines().any(|l| l.contains(&origin)
            && l.split(':').filter(|p| p.parse::<u32>().is_ok()).count() >= 2),
        "no file:line:col on stderr: {}",
        text(&out)
    );
    assert_eq!(
        metric(
            &tg,
            "trunkgate_trunk_sessions_limit",
            &[("trunk", "carrier-a")]
        ),
        60.0
    );
    let trunks = ctl_json(&policy_path, &["trunks"]);
    assert_eq!(trunks["trunks"][0]["max_sessions"], 60, "{trunks}");
    all_succeeded(uac, 300, "PBX side");
    let samples_a = concurrency_samples(&dir, "uas_a");
    let max_a = samples_a.iter().copied().max().unwrap_or(0);
    assert!(
        (6..=60).contains(&max_a),
        "carrier-a's concurrency after the reload: {samples_a:?}"
    );
    let m = tg.metrics();
    assert_eq!(
        common::value(
            &m,
            "trunkgate_policy_reloads_total",
            &[("result", "applied")]
        ),
        1.0
    );
    assert_eq!(
        common::value(
            &m,
            "trunkgate_policy_reloads_total",
            &[("result", "refused")]
        ),
        1.0
    );
    assert_eq!(samples(&m, "trunkgate_policy_info").len(), 1);
    eprintln!("reload: carrier-a peaked at {max_a} calls after 5 -> 60");
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// carrier-b (first in the route) removed by SIGHUP while 10 long calls are up on it, and
/// carrier-c added in its place: the long calls finish, no new call goes to carrier-b, the
/// new calls go to carrier-c (counted under its own name), and carrier-b leaves the metrics
/// once drained.
#[test]
fn sighup_removes_a_trunk_that_drains_and_adds_one() {
    let net = Net::new(186);
    let dir = scratch_dir("control_sighup_removes_a_trunk_that_drains_and_adds_one");
    let (mut tg, policy_path) = start(
        &dir,
        net,
        &policy(net, None, &["carrier-b", "carrier-a"], ""),
    );
    let _a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _b = uas(&dir, "uas_b", net.carrier_b_ip());
    let long = LongCalls::spawn_at(&dir, "long", net, 5060, 10, 10, 10, Duration::from_secs(8));
    wait_for("10 calls up on carrier-b", Duration::from_secs(10), || {
        metric(&tg, "trunkgate_trunk_sessions", &[("trunk", "carrier-b")]) == 10.0
    });
    // The policy without carrier-b.
    let text_now = std::fs::read_to_string(&policy_path).unwrap();
    let start_b = text_now
        .find("[[trunk]]\nname = \"carrier-b\"")
        .expect("carrier-b block");
    let end_b = text_now[start_b..]
        .find("[[route]]")
        .map(|i| start_b + i)
        .unwrap();
    let carrier_c = format!(
        "[[trunk]]\nname = \"carrier-c\"\naddress = \"127.0.{n}.5:5060\"\nallow = [\"127.0.{n}.5/32\"]\n\n",
        n = net.n
    );
    let without_b = format!("{}{carrier_c}{}", &text_now[..start_b], &text_now[end_b..]).replace(
        "trunks = [\"carrier-b\", \"carrier-a\"]",
        "trunks = [\"carrier-c\", \"carrier-a\"]",
    );
    let carrier_c_ip = std::net::IpAddr::from([127, 0, net.n, 5]);
    let _c = uas(&dir, "uas_c", carrier_c_ip);
    std::fs::write(&policy_path, without_b).unwrap();
    let pid = tg.pid();
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for("the SIGHUP reload", Duration::from_secs(5), || {
        metric(
            &tg,
            "trunkgate_policy_reloads_total",
            &[("result", "applied")],
        ) == 1.0
    });
    let status = ctl_json(&policy_path, &["status"]);
    assert_eq!(status["policy"]["draining"][0], "carrier-b", "{status}");
    let short = LongCalls::spawn_at(&dir, "short", net, 5062, 10, 20, 20, Duration::from_secs(1));
    all_succeeded(short, 20, "new calls after the reload");
    all_succeeded(long, 10, "calls up on the removed trunk");
    let [on_a, on_b, on_c] = uas_calls(&dir, ["uas_a", "uas_b", "uas_c"]);
    assert_eq!(
        (on_a, on_b, on_c),
        (0, 10, 20),
        "calls received by (carrier-a, carrier-b, carrier-c)"
    );
    let m = tg.metrics();
    assert_eq!(
        common::value(
            &m,
            "trunkgate_trunk_attempts_total",
            &[("trunk", "carrier-c")]
        ),
        20.0
    );
    // The media relay's per-trunk series follow the reload too (anchored calls, no RTP).
    let media_c = samples(&m, "trunkgate_media_packets_total")
        .iter()
        .filter(|s| s.labels.contains("trunk=\"carrier-c\""))
        .count();
    assert!(media_c >= 1, "no media series for carrier-c");
    wait_for(
        "carrier-b gone from /metrics",
        Duration::from_secs(5),
        || {
            samples(&tg.metrics(), "trunkgate_trunk_sessions")
                .iter()
                .all(|s| !s.labels.contains("carrier-b"))
        },
    );
    let status = ctl_json(&policy_path, &["status"]);
    assert_eq!(
        status["policy"]["draining"],
        Value::Array(vec![]),
        "{status}"
    );
    assert!(tg.log_tail().contains("SIGHUP"), "no reload log line");
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

// ---------------------------------------------------------------------------------------
// The protected admin API and ctl's output
// ---------------------------------------------------------------------------------------

/// With `[admin] token_file`: reads pass, a state-changing call without the token gets 401
/// (ctl exit 1, counted), with it 200. A non-loopback admin listener without a token stops
/// the start. Tables are readable, every --json parses, an unreachable daemon is exit 2.
#[test]
fn admin_token_tables_and_exit_codes() {
    let net = Net::new(187);
    let dir = scratch_dir("control_admin_token_tables_and_exit_codes");
    let token = dir.join("admin.token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let extra_admin = format!("token_file = {:?}\n", token.display().to_string());
    let text_policy = policy(net, None, &["carrier-a", "carrier-b"], "").replacen(
        &format!("listen = \"{}\"\n", admin(net)),
        &format!("listen = \"{}\"\n{extra_admin}", admin(net)),
        1,
    );
    let (tg, policy_path) = start(&dir, net, &text_policy);
    // Without a token (an empty token file overrides the policy's): 401, exit 1.
    let empty = dir.join("empty.token");
    std::fs::write(&empty, "").unwrap();
    let out = ctl(
        &policy_path,
        &["reload", "--token-file", empty.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        text(&out)
    );
    let out = ctl_env(
        &policy_path,
        &[
            "--token-file",
            empty.to_str().unwrap(),
            "drill",
            "start",
            "carrier-a",
            "--mode",
            "down",
            "--for",
            "5s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(metric(&tg, "trunkgate_admin_unauthorized_total", &[]), 2.0);
    assert!(
        !tg.log_tail().contains("s3cret-token"),
        "the token reached the log"
    );
    // Reads need no token; the policy's token_file gives the token.
    let status = ctl_json(&policy_path, &["status"]);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let out = ctl(&policy_path, &["reload", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // TRUNKGATE_ADMIN_TOKEN works when no file is named (the embedded default names none).
    let bare = dir.join("bare.toml");
    std::fs::write(&bare, policy(net, None, &["carrier-a", "carrier-b"], "")).unwrap();
    let out = ctl_env(
        &bare,
        &["reload", "--dry-run"],
        &[("TRUNKGATE_ADMIN_TOKEN", "s3cret-token")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Human tables.
    let out = ctl(&policy_path, &["trunks"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.starts_with("TRUNK "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("carrier-a ") && l.contains("up")),
        "{table}"
    );
    let out = ctl(&policy_path, &["status"]);
    let status_text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        status_text.contains("policy") && status_text.contains("hash"),
        "{status_text}"
    );
    assert!(!status_text.contains("s3cret"), "{status_text}");
    // Every --json parses (ctl_json asserts it).
    let id = start_drill(
        &policy_path,
        &["carrier-a", "--mode", "probe-fail", "--for", "30s"],
    );
    for args in [
        &["status"][..],
        &["trunks"],
        &["calls"],
        &["calls", "--trunk", "carrier-a"],
        &["reload", "--dry-run"],
        &["reload", "--diff", "--dry-run"],
        &["drill", "status"],
        &["drill", "report"],
        &["drill", "stop", "carrier-a"],
        &["drill", "report", &id.to_string()],
    ] {
        ctl_json(&policy_path, args);
    }
    assert_eq!(latest_report(&policy_path)["mode"], "probe-fail");
    tg.stop(STOP_WITHIN);
    // The daemon is gone: exit 2, naming the address tried.
    let out = ctl(&policy_path, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&admin(net).to_string()),
        "{}",
        text(&out)
    );
    // A non-loopback admin listener without a token: the start is refused.
    let open = policy(net, None, &["carrier-a", "carrier-b"], "")
        .replace(&admin(net).to_string(), "0.0.0.0:9491");
    let open_path = dir.join("open.toml");
    std::fs::write(&open_path, open).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&open_path)
        .env_remove("TRUNKGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a loopback address and no admin token"),
        "{}",
        text(&out)
    );
}
