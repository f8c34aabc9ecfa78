//! End-to-end tests of admission control (issue 3): per-trunk session and call-rate limits
//! with overflow and 503, unknown sources (drop / 403), and a per-source flood ban, with the
//! real `trunkgate` binary between SIPp peers on loopback.
//!
//! Each test owns `127.0.N.0/24` for N from 40 up (see `common::Net`); the admin API listens
//! on port 9391 of that network, not the shipped 9091. Every run is bounded (SIPp `-m`, hard
//! deadlines) and every child process is killed on drop. After every test, the per-trunk
//! session and dialog gauges must be back to exactly 0 (asserted from `/metrics`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::load::{LongCalls, uas_calls};
use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, garbage, http_get, samples, scratch_dir, tail, test_policy};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The admin port these tests use (the shipped policy's 9091 is left alone).
const ADMIN_PORT: u16 = 9391;

fn admin(net: Net) -> SocketAddr {
    SocketAddr::new(net.trunkgate_ip(), ADMIN_PORT)
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// What a test changes in `common::test_policy`.
struct Limits {
    /// `max_sessions` of carrier-a (`None`: no limit).
    a_sessions: Option<u32>,
    /// `max_cps` of carrier-a (`None`: no limit).
    a_cps: Option<u32>,
    /// The default route's trunks, in order.
    route: &'static [&'static str],
    /// TOML appended at the end (whole tables, e.g. `[security]`).
    extra: &'static str,
}

impl Limits {
    /// No limit anywhere, route `["carrier-a", "carrier-b"]`.
    const OPEN: Limits = Limits {
        a_sessions: None,
        a_cps: None,
        route: &["carrier-a", "carrier-b"],
        extra: "",
    };
}

/// `common::test_policy(net)` with carrier-a's limits from `limits`, carrier-b unlimited, the
/// route's trunks replaced and the admin API on `ADMIN_PORT`.
fn admission_policy(net: Net, limits: &Limits) -> String {
    let base = test_policy(net);
    let mut out = String::with_capacity(base.len() + 256);
    let mut section = String::new();
    for line in base.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            trimmed.clone_into(&mut section);
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let in_trunk = section == "[[trunk]]";
        if in_trunk && matches!(key, "max_sessions" | "max_cps" | "cps_burst") {
            continue; // every trunk limit comes from `limits` below
        }
        if key == "trunks" {
            let names: Vec<String> = limits.route.iter().map(|t| format!("{t:?}")).collect();
            out.push_str(&format!("trunks = [{}]\n", names.join(", ")));
            continue;
        }
        out.push_str(&line.replace(
            &format!("{}:9091", net.trunkgate_ip()),
            &admin(net).to_string(),
        ));
        out.push('\n');
        if in_trunk && trimmed == "name = \"carrier-a\"" {
            if let Some(n) = limits.a_sessions {
                out.push_str(&format!("max_sessions = {n}\n"));
            }
            if let Some(n) = limits.a_cps {
                out.push_str(&format!("max_cps = {n}\n"));
            }
        }
    }
    out.push_str(limits.extra);
    assert!(
        out.contains(&format!("listen = \"{}\"", admin(net))),
        "admin listener not moved to {}:\n{out}",
        admin(net)
    );
    out
}

/// Write the policy, check it with `trunkgate check`, start Trunkgate on it.
fn start_trunkgate(dir: &Path, net: Net, limits: &Limits) -> Trunkgate {
    let policy: PathBuf = dir.join("policy.toml");
    std::fs::write(&policy, admission_policy(net, limits)).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), admin(net))
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

/// The sum of the samples of `name` whose labels contain every `label=value` in `labels`.
fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(exposition, name)
        .iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|s| s.value)
        .sum()
}

fn rejects(exposition: &str, trunk: &str, reason: &str) -> f64 {
    metric(
        exposition,
        "trunkgate_rejects_total",
        &[("trunk", trunk), ("reason", reason)],
    )
}

fn metric_lines(exposition: &str, prefixes: &[&str]) -> String {
    exposition
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `trunkgate_trunk_sessions` and `trunkgate_dialogs_active` sample is 0 within 5 s
/// (both must be exported).
fn assert_sessions_zero(tg: &Trunkgate) {
    let mut last = String::new();
    let zero = common::poll(Duration::from_secs(5), || {
        last = tg.metrics();
        let sessions = samples(&last, "trunkgate_trunk_sessions");
        let dialogs = samples(&last, "trunkgate_dialogs_active");
        (!sessions.is_empty()
            && !dialogs.is_empty()
            && sessions
                .iter()
                .chain(dialogs.iter())
                .all(|s| s.value == 0.0))
        .then_some(())
    });
    assert!(
        zero.is_some(),
        "session counters not back to 0 within 5 s:\n{}",
        metric_lines(
            &last,
            &["trunkgate_trunk_sessions", "trunkgate_dialogs_active"]
        )
    );
}

/// Polls `/metrics` every 100 ms in a thread and records the peak of one gauge sample.
struct PeakPoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(f64, u32)>>,
}

impl PeakPoller {
    fn start(
        admin: SocketAddr,
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> PeakPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut peak, mut polls) = (0.0_f64, 0_u32);
            while !flag.load(Ordering::Relaxed) {
                if let Ok((200, body)) = http_get(admin, "/metrics") {
                    peak = peak.max(metric(&body, name, labels));
                    polls += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (peak, polls)
        });
        PeakPoller {
            stop,
            thread: Some(thread),
        }
    }

    /// (peak, number of successful polls).
    fn finish(mut self) -> (f64, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("poller thread")
            .join()
            .expect("poller thread panicked")
    }
}

impl Drop for PeakPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------

fn uas(dir: &Path, name: &str, ip: IpAddr) -> Uas {
    Uas::start(dir, name, ip, Transport::Udp, Duration::from_secs(90))
}

// ---------------------------------------------------------------------------------------
// Hand-made SIP over a UDP socket
// ---------------------------------------------------------------------------------------

fn options(source: SocketAddr, target: SocketAddr, i: u64) -> Vec<u8> {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {source};branch=z9hG4bK-opt-{i}\r\n\
         From: <sip:probe@{source}>;tag=o{i}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: options-{i}@{ip}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        ip = source.ip()
    )
    .into_bytes()
}

/// The ACK for a non-2xx final response to `garbage::valid_invite(source, target, "UDP", i)`.
fn ack_for(source: SocketAddr, target: SocketAddr, i: u64, response: &str) -> Vec<u8> {
    let to = header(response, "To").unwrap_or_else(|| format!("sut <sip:1000@{target}>"));
    format!(
        "ACK sip:1000@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {source};branch=z9hG4bK-garbage-{i}\r\n\
         From: sipp <sip:sipp@{source}>;tag=g{i}\r\n\
         To: {to}\r\n\
         Call-ID: garbage-{i}@{ip}\r\n\
         CSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        ip = source.ip()
    )
    .into_bytes()
}

/// The value of the first header `name` (case-insensitive) of a SIP message.
fn header(message: &str, name: &str) -> Option<String> {
    message
        .split("\r\n\r\n")
        .next()?
        .lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

fn status(message: &str) -> Option<u16> {
    message
        .strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every datagram `socket` receives within `window`.
fn receive_for(socket: &UdpSocket, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        socket
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

/// The first final (≥ 200) response `socket` receives within `within`.
fn final_response(socket: &UdpSocket, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status(&text).is_some_and(|s| s >= 200) {
                return Some(text);
            }
        }
    }
}

/// VmRSS of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------
// Session limits
// ---------------------------------------------------------------------------------------

/// carrier-a `max_sessions = 10`, carrier-b unlimited in the same route; 30 concurrent
/// 5-second calls from the PBX: exactly 10 on carrier-a at peak, 20 overflow to carrier-b,
/// none fails.
#[test]
fn sessions_overflow_to_carrier_b() {
    let net = Net::new(40);
    let dir = scratch_dir("admission_sessions_overflow_to_carrier_b");
    let limits = Limits {
        a_sessions: Some(10),
        ..Limits::OPEN
    };
    let mut tg = start_trunkgate(&dir, net, &limits);
    let m = tg.metrics();
    assert_eq!(
        metric(
            &m,
            "trunkgate_trunk_sessions_limit",
            &[("trunk", "carrier-a")]
        ),
        10.0,
        "trunkgate_trunk_sessions_limit{{trunk=\"carrier-a\"}}:\n{}",
        metric_lines(&m, &["trunkgate_trunk_sessions_limit"])
    );
    let _uas_a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _uas_b = uas(&dir, "uas_b", net.carrier_b_ip());

    let peak = PeakPoller::start(
        admin(net),
        "trunkgate_trunk_sessions",
        &[("trunk", "carrier-a")],
    );
    let uac = LongCalls::spawn(&dir, "uac", net, 30, 30, Duration::from_secs(5));
    let (counters, report) = uac.wait();
    let (peak, polls) = peak.finish();

    assert!(
        counters.exit_code == Some(0)
            && counters.created == 30
            && counters.successful == 30
            && counters.failed == 0,
        "PBX side: {counters:?}, expected 30 successful and 0 failed\n{report}"
    );
    assert!(polls >= 20, "only {polls} /metrics polls during the run");
    assert_eq!(
        peak, 10.0,
        "peak of trunkgate_trunk_sessions{{trunk=\"carrier-a\"}} over {polls} polls"
    );
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    assert_eq!(
        (on_a, on_b),
        (10, 20),
        "calls received by (carrier-a, carrier-b)"
    );
    let m = tg.metrics();
    assert_eq!(
        rejects(&m, "carrier-a", "sessions"),
        20.0,
        "trunkgate_rejects_total:\n{}",
        metric_lines(&m, &["trunkgate_rejects_total"])
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}

/// Route with carrier-a alone (`max_sessions = 10`): 10 calls complete, the 20 excess get
/// `503` with `Retry-After`.
#[test]
fn sessions_limit_without_overflow_gives_503() {
    let net = Net::new(41);
    let dir = scratch_dir("admission_sessions_limit_without_overflow_gives_503");
    let limits = Limits {
        a_sessions: Some(10),
        route: &["carrier-a"],
        ..Limits::OPEN
    };
    let mut tg = start_trunkgate(&dir, net, &limits);
    let _uas_a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _uas_b = uas(&dir, "uas_b", net.carrier_b_ip());

    let peak = PeakPoller::start(
        admin(net),
        "trunkgate_trunk_sessions",
        &[("trunk", "carrier-a")],
    );
    let uac = LongCalls::spawn(&dir, "uac", net, 30, 30, Duration::from_secs(5));

    // While the 10 calls are up, one more INVITE by hand: the 503 must carry Retry-After.
    std::thread::sleep(Duration::from_secs(2));
    let socket = UdpSocket::bind(SocketAddr::new(net.pbx_ip(), 0)).expect("bind on the PBX ip");
    let source = socket.local_addr().expect("local_addr");
    socket
        .send_to(
            &garbage::valid_invite(source, net.sip(), "UDP", 1),
            net.sip(),
        )
        .expect("send INVITE");
    let response = final_response(&socket, Duration::from_secs(3));
    if let Some(r) = &response {
        socket
            .send_to(&ack_for(source, net.sip(), 1, r), net.sip())
            .expect("send ACK");
    }

    let (counters, report) = uac.wait();
    let (peak, polls) = peak.finish();

    let response = response.expect("no final response to an INVITE while carrier-a is full");
    assert_eq!(
        status(&response),
        Some(503),
        "INVITE while carrier-a is at max_sessions:\n{response}"
    );
    let retry_after = header(&response, "Retry-After");
    assert!(
        retry_after
            .as_deref()
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s > 0)),
        "503 without a positive Retry-After:\n{response}"
    );
    assert!(
        counters.exit_code == Some(1)
            && counters.created == 30
            && counters.successful == 10
            && counters.failed == 20,
        "PBX side: {counters:?}, expected 10 successful and 20 failed (503)\n{report}"
    );
    assert!(polls >= 20, "only {polls} /metrics polls during the run");
    assert_eq!(
        peak, 10.0,
        "peak of trunkgate_trunk_sessions{{trunk=\"carrier-a\"}} over {polls} polls"
    );
    // SIPp logs each call it aborts with the message that aborted it: 20 times a 503.
    let errors = std::fs::read_to_string(dir.join("uac_errors.log")).unwrap_or_default();
    let refusals = errors
        .split("Aborting call")
        .skip(1)
        .filter(|e| e.contains("SIP/2.0 503") && e.contains("Retry-After:"))
        .count();
    assert_eq!(
        refusals,
        20,
        "calls SIPp aborted on a 503 with Retry-After (uac_errors.log):\n{}",
        tail(&dir.join("uac_errors.log"), 1500)
    );
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    assert_eq!(
        (on_a, on_b),
        (10, 0),
        "calls received by (carrier-a, carrier-b)"
    );
    let m = tg.metrics();
    assert_eq!(
        rejects(&m, "carrier-a", "sessions"),
        21.0,
        "20 from SIPp + 1 by hand; trunkgate_rejects_total:\n{}",
        metric_lines(&m, &["trunkgate_rejects_total"])
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}

// ---------------------------------------------------------------------------------------
// Call-rate limit
// ---------------------------------------------------------------------------------------

/// carrier-a `max_cps = 5` (burst 5); 20 calls/s for 10 s from the PBX.
fn call_rate_run(test: &str, net: Net, route: &'static [&'static str]) {
    const RATE: u32 = 20;
    const CALLS: u32 = 200;
    let dir = scratch_dir(test);
    let limits = Limits {
        a_cps: Some(5),
        route,
        ..Limits::OPEN
    };
    let mut tg = start_trunkgate(&dir, net, &limits);
    let _uas_a = uas(&dir, "uas_a", net.carrier_a_ip());
    let _uas_b = uas(&dir, "uas_b", net.carrier_b_ip());
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, RATE, CALLS);
    let result = Uac::spawn(&dir, "uac", spec).wait();
    let [on_a, on_b] = uas_calls(&dir, ["uas_a", "uas_b"]);
    let m = tg.metrics();
    let cps_rejects = rejects(&m, "carrier-a", "cps");
    eprintln!(
        "{test}: PBX {} ok / {} failed in {:?}; carrier-a {on_a}, carrier-b {on_b}; \
         rejects{{carrier-a,cps}} {cps_rejects}",
        result.successful, result.failed, result.elapsed
    );
    // 5 in the bucket at the start, then 5/s over the run (10 s, unless a loaded machine
    // stretched SIPp's schedule: the bound follows the measured run time); +1 for timing.
    let most = 5 + (5.0 * result.elapsed.as_secs_f64()).floor() as u64 + 1;
    assert!(
        (40..=most.max(56)).contains(&on_a),
        "carrier-a received {on_a} calls at max_cps = 5 over a {:?} run, expected 40..={}",
        result.elapsed,
        most.max(56)
    );
    if route.contains(&"carrier-b") {
        result.assert_all_succeeded(CALLS);
        assert_eq!(
            on_a + on_b,
            u64::from(CALLS),
            "carrier-a {on_a} + carrier-b {on_b} calls"
        );
    } else {
        assert_eq!(on_b, 0, "carrier-b is not in the route but got calls");
        assert_eq!(
            (result.successful, result.failed),
            (on_a, u64::from(CALLS) - on_a),
            "PBX (successful, failed): every call carrier-a did not take must fail (503)"
        );
    }
    assert_eq!(
        cps_rejects,
        (u64::from(CALLS) - on_a) as f64,
        "trunkgate_rejects_total{{trunk=\"carrier-a\",reason=\"cps\"}}:\n{}",
        metric_lines(&m, &["trunkgate_rejects_total"])
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}

#[test]
fn call_rate_limit() {
    call_rate_run(
        "admission_call_rate_limit",
        Net::new(42),
        &["carrier-a", "carrier-b"],
    );
}

#[test]
fn call_rate_limit_without_overflow_gives_503() {
    call_rate_run(
        "admission_call_rate_limit_without_overflow_gives_503",
        Net::new(43),
        &["carrier-a"],
    );
}

// ---------------------------------------------------------------------------------------
// Unknown sources
// ---------------------------------------------------------------------------------------

/// From an address in no allow list, an OPTIONS and an INVITE; returns every datagram
/// received within `window`, and asserts that no transaction or dialog exists right after
/// and that both requests were counted as `unknown_source`.
fn unknown_source_probe(tg: &Trunkgate, net: Net, window: Duration) -> Vec<String> {
    let socket =
        UdpSocket::bind(SocketAddr::new(net.unknown_ip(), 0)).expect("bind on the unknown ip");
    let source = socket.local_addr().expect("local_addr");
    socket
        .send_to(&options(source, net.sip(), 1), net.sip())
        .expect("send OPTIONS");
    socket
        .send_to(
            &garbage::valid_invite(source, net.sip(), "UDP", 2),
            net.sip(),
        )
        .expect("send INVITE");
    let got = receive_for(&socket, window);
    let m = tg.metrics();
    let state = metric_lines(
        &m,
        &[
            "trunkgate_sip_transactions_active",
            "trunkgate_dialogs_active",
            "trunkgate_rejects_total{trunk=\"none\"",
        ],
    );
    assert_eq!(
        metric(&m, "trunkgate_sip_transactions_active", &[]),
        0.0,
        "transactions after requests from an unknown source:\n{state}"
    );
    let dialogs = samples(&m, "trunkgate_dialogs_active");
    assert!(
        !dialogs.is_empty() && dialogs.iter().all(|s| s.value == 0.0),
        "dialogs after requests from an unknown source:\n{state}"
    );
    assert_eq!(
        rejects(&m, "none", "unknown_source"),
        2.0,
        "rejects{{trunk=\"none\",reason=\"unknown_source\"}} after 2 requests:\n{state}"
    );
    got
}

#[test]
fn unknown_source_drop_and_reject() {
    // Default: drop. Nothing comes back.
    let net = Net::new(44);
    let dir = scratch_dir("admission_unknown_source_drop");
    let mut tg = start_trunkgate(&dir, net, &Limits::OPEN);
    let got = unknown_source_probe(&tg, net, Duration::from_secs(1));
    assert!(
        got.is_empty(),
        "unknown_source = \"drop\", yet an unknown source got an answer:\n{}",
        got.join("\n----\n")
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);

    // reject: 403 to both.
    let net = Net::new(45);
    let dir = scratch_dir("admission_unknown_source_reject");
    let limits = Limits {
        extra: "\n[security]\nunknown_source = \"reject\"\n",
        ..Limits::OPEN
    };
    let mut tg = start_trunkgate(&dir, net, &limits);
    let got = unknown_source_probe(&tg, net, Duration::from_secs(1));
    let answer = |method: &str| -> Option<u16> {
        got.iter()
            .filter(|r| {
                header(r, "CSeq").is_some_and(|c| c.ends_with(method))
                    && status(r).is_some_and(|s| s >= 200)
            })
            .find_map(|r| status(r))
    };
    assert_eq!(
        (answer("OPTIONS"), answer("INVITE")),
        (Some(403), Some(403)),
        "unknown_source = \"reject\": final answers to (OPTIONS, INVITE); received:\n{}",
        got.join("\n----\n")
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}

// ---------------------------------------------------------------------------------------
// Flood
// ---------------------------------------------------------------------------------------

/// `total` OPTIONS from `socket` to `target` in batches of 5 every millisecond.
fn options_flood(socket: &UdpSocket, target: SocketAddr, total: u64) -> u64 {
    let source = socket.local_addr().expect("local_addr");
    let started = Instant::now();
    let mut sent = 0;
    for batch in 0..total.div_ceil(5) {
        let due = started + Duration::from_millis(batch);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for k in 0..5 {
            let i = batch * 5 + k;
            if i < total && socket.send_to(&options(source, target, i), target).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

/// An unlisted source floods 5,000 OPTIONS/s for 5 s while the PBX places 100 calls at
/// 10 calls/s: the flooder is banned once, every PBX call completes, RSS stays flat.
#[test]
fn flood_is_banned_while_pbx_calls_complete() {
    let net = Net::new(46);
    let dir = scratch_dir("admission_flood_is_banned_while_pbx_calls_complete");
    let mut tg = start_trunkgate(&dir, net, &Limits::OPEN);
    let pid = tg.pid();
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, 10, 100);
    let _uas_a = uas(&dir, "uas_a", net.carrier_a_ip());
    let mut uac = Uac::spawn(&dir, "uac", spec);
    std::thread::sleep(Duration::from_secs(2));

    let socket =
        UdpSocket::bind(SocketAddr::new(net.unknown_ip(), 0)).expect("bind on the unknown ip");
    let rss_before = rss(pid);
    let started = Instant::now();
    let sent = options_flood(&socket, net.sip(), 25_000);
    let flood_time = started.elapsed();
    let rss_after = rss(pid);
    assert!(
        uac.is_running(),
        "the PBX's call run ended before the flood did: not a test under load"
    );
    let result = uac.wait();

    let m = tg.metrics();
    let flood_rejects = rejects(&m, "none", "flood");
    let banned = metric(&m, "trunkgate_banned_sources", &[]);
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).expect("read trunkgate.log");
    let ban_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("source banned"))
        .collect();
    eprintln!(
        "flood: {sent} OPTIONS in {flood_time:?}; rejects{{none,flood}} {flood_rejects}, \
         banned {banned}; RSS {} kB -> {} kB",
        rss_before / 1024,
        rss_after / 1024
    );
    result.assert_all_succeeded(100);
    assert!(sent >= 24_000, "only {sent} of 25,000 OPTIONS sent");
    assert!(
        flood_rejects > 0.0,
        "trunkgate_rejects_total{{trunk=\"none\",reason=\"flood\"}} = {flood_rejects}:\n{}",
        metric_lines(&m, &["trunkgate_rejects_total", "trunkgate_banned_sources"])
    );
    assert_eq!(banned, 1.0, "trunkgate_banned_sources");
    let flooder = net.unknown_ip().to_string();
    assert!(
        ban_lines.len() == 1 && ban_lines[0].contains(&flooder),
        "expected exactly one \"source banned\" line, for {flooder}; got {}:\n{}",
        ban_lines.len(),
        ban_lines
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        rss_after < rss_before + 20 * 1024 * 1024,
        "RSS grew from {} kB to {} kB during the flood (limit: +20 MB)",
        rss_before / 1024,
        rss_after / 1024
    );
    assert_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}
