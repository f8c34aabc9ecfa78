//! End-to-end tests of failover (issue 5): the real `trunkgate` binary between a SIPp PBX and
//! two carriers on loopback. carrier-a misbehaves; every call must still complete on
//! carrier-b, and the PBX must never see carrier-a's failure.
//!
//! 1. carrier-a answers every INVITE `503` (`tests/failover/uas_503.xml`);
//! 2. carrier-a answers `503` with `Retry-After: 20` (`tests/failover/uas_503_retry_after.xml`);
//! 3. carrier-a's SIPp is stopped (SIGSTOP) in the middle of a run with OPTIONS probes every
//!    second, then continued (SIGCONT); `/trunks` and `trunkgate_trunk_up` follow it;
//! 4. carrier-a is a black hole (a socket of the test that never answers) with no probe: each
//!    call fails over after `try_timeout`, and the passive breaker takes carrier-a out;
//! 5. carrier-a is a TCP trunk whose port is closed: the refused connect fails over at once;
//! 6. the first OPTIONS probe after start counts as answered when carrier-a answers it.
//!
//! Net numbers 70–75 (see `common::Net`): Trunkgate on `127.0.N.1` (admin API on port 9491,
//! not the shipped 9091), the PBX on `.2`, carrier-a on `.3`, carrier-b on `.4`; the test's
//! own readiness probes come from `.9`. The evidence is SIPp's: its counters, and its message
//! logs (`-trace_msg`: which INVITE reached which carrier and when, every response the PBX
//! got). Everything is bounded (SIPp `-m` and `-timeout`, hard kill deadlines, polls with
//! deadlines); scratch files stay under `target/tmp/e2e/<test>/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{LoggedMessage, Scenario, SippPeer, stamp_seconds};
use common::trunkgate::Trunkgate;
use common::{Net, http_get, poll, samples, scratch_dir, tail, test_policy, value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// The admin port of these tests.
const ADMIN_PORT: u16 = 9491;
/// How long a carrier SIPp may live (killed on drop long before).
const CARRIER_LIFETIME: Duration = Duration::from_secs(150);

/// `{route, trunk, reason}`: a branch that ended and moved the call to the next trunk.
const FAILOVERS: &str = "trunkgate_failovers_total";
/// `{trunk}`: 0 while the trunk is down, 1 while up or half-open.
const TRUNK_UP: &str = "trunkgate_trunk_up";
/// `{trunk}`: up → down, down → half-open, … transitions.
const STATE_CHANGES: &str = "trunkgate_trunk_state_changes_total";
/// `{trunk}`: INVITE branches sent to the trunk, and those it answered (2xx).
const ATTEMPTS: &str = "trunkgate_trunk_attempts_total";
const ANSWERED: &str = "trunkgate_trunk_answered_total";
/// `{trunk, result="ok"|"failed"}`: OPTIONS probes by result.
const PROBES: &str = "trunkgate_trunk_probes_total";

fn admin(net: Net) -> SocketAddr {
    SocketAddr::new(net.trunkgate_ip(), ADMIN_PORT)
}

fn scenario(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/failover")
        .join(name);
    assert!(path.is_file(), "scenario {} missing", path.display());
    path
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// What a test changes in `common::test_policy`: lines for carrier-a's `[[trunk]]` and the
/// `default` route (a key written here replaces the shipped line of that key), and the lines
/// of a `[health]` table (none: no table).
#[derive(Default)]
struct Edits<'a> {
    carrier_a: &'a [&'a str],
    route: &'a [&'a str],
    health: &'a [&'a str],
}

/// The key of a TOML line (`None` for blank lines, comments and table headers).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    Some(t.split('=').next().unwrap_or("").trim())
}

/// Append one table (`lines[0]` is its header, or the preamble has none) to `out`, with
/// `extra` written at its end and the shipped lines of the same keys left out.
fn push_table(out: &mut String, lines: &[String], extra: &[&str]) {
    let replaced: HashSet<&str> = extra.iter().filter_map(|l| key_of(l)).collect();
    for line in lines {
        if key_of(line).is_some_and(|k| replaced.contains(k)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for line in extra {
        out.push_str(line);
        out.push('\n');
    }
}

/// `common::test_policy(net)` with `edits` applied and the admin API on `ADMIN_PORT`.
fn failover_policy(net: Net, edits: &Edits<'_>) -> String {
    let base = test_policy(net).replace(
        &format!("{}:9091", net.trunkgate_ip()),
        &admin(net).to_string(),
    );
    // Split into tables: each starts at a header line.
    let mut tables: Vec<Vec<String>> = vec![Vec::new()];
    for line in base.lines() {
        if line.trim_start().starts_with('[') {
            tables.push(Vec::new());
        }
        tables.last_mut().expect("a table").push(line.to_owned());
    }
    let mut out = String::with_capacity(base.len() + 512);
    let (mut saw_a, mut saw_route) = (false, false);
    for lines in &tables {
        let header = lines.first().map(|l| l.trim()).unwrap_or("");
        let name = lines
            .iter()
            .find(|l| key_of(l) == Some("name"))
            .and_then(|l| l.split_once('='))
            .map(|(_, v)| v.trim().trim_matches('"'));
        let extra = match (header, name) {
            ("[[trunk]]", Some("carrier-a")) => {
                saw_a = true;
                edits.carrier_a
            }
            ("[[route]]", Some("default")) => {
                saw_route = true;
                edits.route
            }
            _ => &[],
        };
        push_table(&mut out, lines, extra);
    }
    assert!(
        saw_a && saw_route,
        "the test policy has no carrier-a trunk or no \"default\" route; the shipped \
         config/trunkgate.toml changed, update tests/e2e_failover.rs:\n{base}"
    );
    if !edits.health.is_empty() {
        out.push_str("\n[health]\n");
        for line in edits.health {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains(&format!("listen = \"{}\"", admin(net))),
        "admin listener not moved to {}:\n{out}",
        admin(net)
    );
    out
}

/// Write the policy, check it with `trunkgate check`, start Trunkgate on it.
fn start_trunkgate(dir: &Path, net: Net, edits: &Edits<'_>) -> Trunkgate {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, failover_policy(net, edits)).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), admin(net))
}

// ---------------------------------------------------------------------------------------
// Metrics and /trunks
// ---------------------------------------------------------------------------------------

fn metric(tg: &Trunkgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&tg.metrics(), name, labels)
}

/// Every sample line of the metrics named by `prefixes`, for failure messages.
fn metric_lines(exposition: &str, prefixes: &[&str]) -> String {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The failover-related metrics, for failure messages.
fn failover_metrics(tg: &Trunkgate) -> String {
    metric_lines(
        &tg.metrics(),
        &[
            FAILOVERS,
            TRUNK_UP,
            STATE_CHANGES,
            "trunkgate_trunk_",
            "trunkgate_sip_responses_total",
            "trunkgate_tcp_connect_failures",
        ],
    )
}

/// `GET /trunks`: the trunks array (the body is that array, or an object with a `trunks`
/// array); panics unless it answers 200 with JSON.
fn trunks(net: Net) -> Vec<Value> {
    let (status, body) =
        http_get(admin(net), "/trunks").unwrap_or_else(|e| panic!("GET /trunks: {e}"));
    assert_eq!(status, 200, "GET /trunks answered {status}:\n{body}");
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /trunks is not JSON ({e}):\n{body}"));
    v.as_array()
        .or_else(|| v["trunks"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("GET /trunks has no trunks array:\n{body}"))
}

/// `name`'s entry of `GET /trunks`.
fn trunk(net: Net, name: &str) -> Value {
    let all = trunks(net);
    all.iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("GET /trunks has no trunk {name:?}: {all:#?}"))
}

fn text<'a>(t: &'a Value, key: &str) -> &'a str {
    t[key]
        .as_str()
        .unwrap_or_else(|| panic!("/trunks entry without a string {key:?}: {t}"))
}

/// `/trunks` and `trunkgate_trunk_up` agree for every trunk: 0 exactly while `down` (1 while
/// up or half-open).
fn assert_trunks_match_metrics(tg: &Trunkgate, net: Net) {
    let list = trunks(net);
    let exposition = tg.metrics();
    for t in &list {
        let name = text(t, "name");
        let state = text(t, "state");
        let up = samples(&exposition, TRUNK_UP)
            .into_iter()
            .find(|s| {
                s.labels
                    .split(',')
                    .any(|l| l == format!("trunk=\"{name}\""))
            })
            .map(|s| s.value)
            .unwrap_or_else(|| {
                panic!(
                    "{TRUNK_UP} has no sample for trunk {name}:\n{}",
                    metric_lines(&exposition, &[TRUNK_UP])
                )
            });
        assert_eq!(
            up,
            if state == "down" { 0.0 } else { 1.0 },
            "GET /trunks says {name} is {state:?} but {TRUNK_UP}{{trunk=\"{name}\"}} is {up}: \
             {t}"
        );
    }
}

/// Probe figures of one trunk read together: its `/trunks` entry and
/// `trunkgate_trunk_probes_total{trunk, result="ok"|"failed"}` from scrapes just before and
/// just after it that agree (no probe ended in between; retried for up to 3 s).
struct ProbeView {
    entry: Value,
    ok: f64,
    failed: f64,
}

fn probe_view(tg: &Trunkgate, net: Net, trunk_name: &str) -> ProbeView {
    let counts = |tg: &Trunkgate| {
        let e = tg.metrics();
        (
            value(&e, PROBES, &[("trunk", trunk_name), ("result", "ok")]),
            value(&e, PROBES, &[("trunk", trunk_name), ("result", "failed")]),
        )
    };
    poll(Duration::from_secs(3), || {
        let before = counts(tg);
        let entry = trunk(net, trunk_name);
        (counts(tg) == before).then_some(ProbeView {
            entry,
            ok: before.0,
            failed: before.1,
        })
    })
    .unwrap_or_else(|| panic!("probe counters of {trunk_name} never stood still for a scrape"))
}

fn count(t: &Value, key: &str) -> u64 {
    t[key]
        .as_u64()
        .unwrap_or_else(|| panic!("/trunks entry without a count {key:?}: {t}"))
}

/// Poll `trunkgate_trunk_up{trunk}` until it is `want`; the time it took.
fn wait_trunk_up(tg: &Trunkgate, net: Net, trunk: &str, want: f64, within: Duration) -> Duration {
    let started = Instant::now();
    poll(within, || {
        (metric(tg, TRUNK_UP, &[("trunk", trunk)]) == want).then_some(())
    })
    .unwrap_or_else(|| {
        let listing = http_get(admin(net), "/trunks").map_or_else(|e| e.to_string(), |r| r.1);
        panic!(
            "{TRUNK_UP}{{trunk=\"{trunk}\"}} not {want} within {within:?}; /trunks: {listing}\n{}",
            failover_metrics(tg)
        )
    });
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// SIPp peers and their logs
// ---------------------------------------------------------------------------------------

/// A carrier SIPp on `ip:5060` playing `scenario`, answering when this returns.
fn carrier(dir: &Path, net: Net, name: &str, scenario: Scenario<'_>, ip: IpAddr) -> SippPeer {
    common::peers::carrier(dir, net, name, scenario, ip, CARRIER_LIFETIME)
}

/// The PBX: SIPp's built-in `uac` placing `calls` calls at `rate` per second (at most
/// `limit` at a time) to Trunkgate; SIPp's own `-timeout` is `timeout`.
fn pbx(
    dir: &Path,
    net: Net,
    calls: u32,
    rate: u32,
    limit: Option<u32>,
    timeout: Duration,
) -> SippPeer {
    let mut args: Vec<String> = ["-s", "1000", "-r", &rate.to_string()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(["-m".to_owned(), calls.to_string()]);
    if let Some(l) = limit {
        args.extend(["-l".to_owned(), l.to_string()]);
    }
    SippPeer::spawn(
        dir,
        "pbx",
        Scenario::Builtin("uac"),
        net.pbx_ip(),
        Some(net.sip()),
        &args,
        timeout,
    )
}

fn call_id(m: &LoggedMessage) -> Option<&str> {
    m.header("Call-ID").or_else(|| m.header("i"))
}

/// The distinct INVITEs a peer received, in arrival order: (Call-ID, time of the first copy).
fn invites_received(log: &[LoggedMessage]) -> Vec<(String, f64)> {
    let mut seen = HashSet::new();
    log.iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .filter_map(|m| {
            let id = call_id(m)?.to_owned();
            seen.insert(id.clone()).then_some((id, m.time))
        })
        .collect()
}

/// Poll `peer`'s message log until it has received `want` distinct INVITEs (or 5 s pass);
/// returns what it has then.
fn settled_invites(peer: &SippPeer, want: usize) -> Vec<(String, f64)> {
    let mut last = Vec::new();
    let _ = poll(Duration::from_secs(5), || {
        last = invites_received(&peer.messages());
        (last.len() >= want).then_some(())
    });
    // A moment more: nothing beyond `want` may arrive either.
    std::thread::sleep(Duration::from_millis(300));
    invites_received(&peer.messages())
}

/// One call the PBX placed: when its first INVITE left, and how long until the 200 OK.
#[derive(Debug, Clone)]
struct PbxCall {
    call_id: String,
    start: f64,
    /// Seconds from the INVITE to the 200; `None`: no 200 came.
    setup: Option<f64>,
}

/// Every call in the PBX's message log, ordered by start.
fn pbx_calls(log: &[LoggedMessage]) -> Vec<PbxCall> {
    let mut calls: Vec<PbxCall> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for m in log {
        let Some(id) = call_id(m) else { continue };
        if m.sent && m.is_request("INVITE") && !index.contains_key(id) {
            index.insert(id.to_owned(), calls.len());
            calls.push(PbxCall {
                call_id: id.to_owned(),
                start: m.time,
                setup: None,
            });
        } else if !m.sent && m.is_response(200, "INVITE") {
            if let Some(c) = index.get(id).and_then(|&i| calls.get_mut(i)) {
                c.setup.get_or_insert(m.time - c.start);
            }
        }
    }
    calls.sort_by(|a, b| a.start.total_cmp(&b.start));
    calls
}

/// Final responses ≥ 300 the PBX received (start line and Call-ID).
fn pbx_failures(log: &[LoggedMessage]) -> Vec<String> {
    log.iter()
        .filter(|m| !m.sent && m.start_line().starts_with("SIP/2.0 "))
        .filter(|m| {
            m.start_line()
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| c >= 300)
        })
        .map(|m| format!("{} (Call-ID {:?})", m.start_line(), call_id(m)))
        .collect()
}

/// The largest setup time of `calls` and the call it belongs to.
fn slowest(calls: &[&PbxCall]) -> Option<(f64, String)> {
    calls
        .iter()
        .filter_map(|c| c.setup.map(|s| (s, c.call_id.clone())))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The clock of SIPp's message-log time stamps (its local time, on the naive calendar of
/// [`stamp_seconds`]), tied to the Unix clock by the `StartTime` of a `-trace_stat` file,
/// which holds both (`2026-12-01<TAB>21:27:32.197902<TAB>1796160452.197902`).
struct SippClock {
    offset: f64,
}

impl SippClock {
    fn from_stat(path: &Path) -> SippClock {
        let offset = poll(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(path).ok()?;
            let row = text.lines().nth(1)?;
            let start = row.split(';').next()?;
            let mut parts = start.split_whitespace();
            let (date, time, unix) = (parts.next()?, parts.next()?, parts.next()?);
            let local = stamp_seconds(&format!("{date} {time}"))?;
            Some(local - unix.parse::<f64>().ok()?)
        })
        .unwrap_or_else(|| {
            panic!(
                "no StartTime in SIPp's statistics {}:\n{}",
                path.display(),
                tail(path, 2000)
            )
        });
        SippClock { offset }
    }

    fn now(&self) -> f64 {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        unix + self.offset
    }
}

/// A cumulative column of the last row of a SIPp `-trace_stat` file.
fn stat_counter(path: &Path, column: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let i = header.iter().position(|h| *h == column)?;
    last.get(i)?.trim().parse().ok()
}

/// Send `signal` to a running SIPp.
fn signal(peer: &SippPeer, sig: Signal) {
    let pid = peer.pid().expect("SIPp still running");
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    kill(pid, sig).unwrap_or_else(|e| panic!("kill -{sig:?} {pid}: {e}"));
}

// ---------------------------------------------------------------------------------------
// A carrier that swallows everything
// ---------------------------------------------------------------------------------------

/// One datagram the black hole got.
#[derive(Debug, Clone)]
struct Swallowed {
    method: String,
    call_id: String,
}

/// A UDP socket on a carrier's address that reads everything and answers nothing.
struct BlackHole {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Swallowed>>>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    /// Bound when this returns.
    fn bind(addr: SocketAddr) -> BlackHole {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set_read_timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (flag, sink) = (Arc::clone(&stop), Arc::clone(&got));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, _)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]);
                let method = text.split_whitespace().next().unwrap_or("").to_owned();
                let call_id = text
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .find_map(|l| {
                        let (name, v) = l.split_once(':')?;
                        let name = name.trim();
                        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                sink.lock()
                    .expect("black hole lock")
                    .push(Swallowed { method, call_id });
            }
        });
        BlackHole {
            stop,
            got,
            thread: Some(thread),
        }
    }

    fn got(&self) -> Vec<Swallowed> {
        self.got.lock().expect("black hole lock").clone()
    }

    /// Distinct Call-IDs of the INVITEs it got, in order.
    fn invites(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.got()
            .into_iter()
            .filter(|d| d.method == "INVITE")
            .filter(|d| seen.insert(d.call_id.clone()))
            .map(|d| d.call_id)
            .collect()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Every INVITE answered 503
// ---------------------------------------------------------------------------------------

/// carrier-a answers every INVITE 503: 500 calls from the PBX at 20 calls/s all complete
/// through carrier-b, the PBX's SIPp counts 0 failed calls and never sees the 503, and
/// `trunkgate_failovers_total` counts them. The breaker is set as high as it goes (100
/// failures within 1 s) so that every call really tries carrier-a first.
#[test]
fn every_503_fails_over_to_carrier_b() {
    const CALLS: u32 = 500;
    const RATE: u32 = 20;
    let started = Instant::now();
    let net = Net::new(70);
    let dir = scratch_dir("every_503_fails_over_to_carrier_b");
    let scenario_503 = scenario("uas_503.xml");
    let a = carrier(
        &dir,
        net,
        "carrier_a",
        Scenario::File(&scenario_503),
        net.carrier_a_ip(),
    );
    let b = carrier(
        &dir,
        net,
        "carrier_b",
        Scenario::Builtin("uas"),
        net.carrier_b_ip(),
    );
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            health: &["breaker_failures = 100", "breaker_window = \"1s\""],
            ..Edits::default()
        },
    );

    let mut uac = pbx(&dir, net, CALLS, RATE, None, Duration::from_secs(60));
    let result = uac.wait();
    let pbx_log = uac.messages();
    let failures = pbx_failures(&pbx_log);
    assert!(
        failures.is_empty(),
        "the PBX received {} final failure responses; it must never see carrier-a's 503 \
         (first ones: {:?})\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        failover_metrics(&tg)
    );
    result.assert_all_succeeded(CALLS);

    let a_invites = settled_invites(&a, CALLS as usize);
    let b_invites = settled_invites(&b, CALLS as usize);
    assert_eq!(
        a_invites.len(),
        CALLS as usize,
        "carrier-a (503 to everything) received {} distinct INVITEs, expected one per call",
        a_invites.len()
    );
    assert_eq!(
        b_invites.len(),
        CALLS as usize,
        "carrier-b received {} distinct INVITEs, expected every call",
        b_invites.len()
    );
    let a_stat = dir.join("carrier_a_stat.csv");
    let a_counted = poll(Duration::from_secs(3), || {
        stat_counter(&a_stat, "SuccessfulCall(C)").filter(|&n| n == u64::from(CALLS))
    });
    assert_eq!(
        a_counted,
        Some(u64::from(CALLS)),
        "carrier-a's SIPp counters (SuccessfulCall(C): INVITE, 503, ACK) do not show {CALLS} calls:\n{}",
        tail(&a_stat, 1500)
    );

    let exposition = tg.metrics();
    let lines = metric_lines(&exposition, &[FAILOVERS, TRUNK_UP, STATE_CHANGES]);
    let a_failovers = value(&exposition, FAILOVERS, &[("trunk", "carrier-a")]);
    let a_code = value(
        &exposition,
        FAILOVERS,
        &[
            ("trunk", "carrier-a"),
            ("reason", "code"),
            ("route", "default"),
        ],
    );
    assert_eq!(
        (a_failovers, a_code),
        (f64::from(CALLS), f64::from(CALLS)),
        "{FAILOVERS}{{trunk=\"carrier-a\"}} (all reasons, and reason=\"code\", \
         route=\"default\") should both be {CALLS}:\n{lines}"
    );
    assert_eq!(
        value(&exposition, FAILOVERS, &[("trunk", "carrier-b")]),
        0.0,
        "no call failed over from carrier-b:\n{lines}"
    );
    let per_trunk = |name: &str, trunk: &str| value(&exposition, name, &[("trunk", trunk)]);
    assert_eq!(
        [
            per_trunk(ATTEMPTS, "carrier-a"),
            per_trunk(ANSWERED, "carrier-a"),
            per_trunk(ATTEMPTS, "carrier-b"),
            per_trunk(ANSWERED, "carrier-b"),
        ],
        [f64::from(CALLS), 0.0, f64::from(CALLS), f64::from(CALLS)],
        "[attempts, answered] of carrier-a, then carrier-b:\n{}",
        metric_lines(&exposition, &[ATTEMPTS, ANSWERED])
    );
    assert_eq!(
        value(&exposition, TRUNK_UP, &[("trunk", "carrier-a")]),
        1.0,
        "the breaker (100 failures within 1 s) must not have taken carrier-a down:\n{lines}"
    );
    assert_trunks_match_metrics(&tg, net);
    tg.assert_dialogs_drain(Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
    eprintln!(
        "every_503: {CALLS} calls, {a_failovers} failovers, PBX run {:.1} s, test {:.1} s",
        result.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 2. 503 with Retry-After
// ---------------------------------------------------------------------------------------

/// carrier-a answers 503 with `Retry-After: 20`: after the first one, carrier-a receives no
/// INVITE for 20 s (asserted from its SIPp log and counters), then gets traffic again. The
/// PBX places 10 calls/s for 25 s; all complete on carrier-b.
#[test]
fn retry_after_keeps_calls_off_carrier_a() {
    const CALLS: u32 = 250;
    const RATE: u32 = 10;
    const RETRY_AFTER: f64 = 20.0;
    let started = Instant::now();
    let net = Net::new(71);
    let dir = scratch_dir("retry_after_keeps_calls_off_carrier_a");
    let scenario_ra = scenario("uas_503_retry_after.xml");
    let a = carrier(
        &dir,
        net,
        "carrier_a",
        Scenario::File(&scenario_ra),
        net.carrier_a_ip(),
    );
    let b = carrier(
        &dir,
        net,
        "carrier_b",
        Scenario::Builtin("uas"),
        net.carrier_b_ip(),
    );
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            health: &["breaker_failures = 100", "retry_after_max = \"60s\""],
            ..Edits::default()
        },
    );

    let mut uac = pbx(&dir, net, CALLS, RATE, None, Duration::from_secs(60));
    // While carrier-a cools down: it is still up (Retry-After is not a state change).
    let first = poll(Duration::from_secs(10), || {
        invites_received(&a.messages()).into_iter().next()
    })
    .unwrap_or_else(|| panic!("carrier-a got no INVITE within 10 s:\n{}", a.report()));
    std::thread::sleep(Duration::from_secs(2));
    let cooling = trunk(net, "carrier-a");
    assert_eq!(
        text(&cooling, "state"),
        "up",
        "a 503 with Retry-After is not a state change: {cooling}"
    );
    assert!(
        cooling["cooling_ms"]
            .as_u64()
            .is_some_and(|ms| (1..=20_000).contains(&ms)),
        "GET /trunks should show carrier-a cooling (Retry-After time left, at most 20 s) 2 s \
         after its 503: {cooling}"
    );

    let result = uac.wait();
    let pbx_log = uac.messages();
    let failures = pbx_failures(&pbx_log);
    assert!(
        failures.is_empty(),
        "the PBX received {} final failure responses (first ones: {:?})",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    result.assert_all_succeeded(CALLS);

    let a_invites = settled_invites(&a, 2);
    let times: Vec<f64> = a_invites.iter().map(|(_, t)| t - first.1).collect();
    assert_eq!(
        a_invites.len(),
        2,
        "carrier-a should get exactly 2 INVITEs in 25 s (the first call, then one once the \
         20 s of Retry-After are over); it got {} at {times:.2?} s after the first\n{}",
        a_invites.len(),
        failover_metrics(&tg)
    );
    let gap = times[1];
    assert!(
        (RETRY_AFTER - 0.5..=RETRY_AFTER + 2.5).contains(&gap),
        "carrier-a's second INVITE came {gap:.2} s after the first; expected no INVITE for \
         {RETRY_AFTER} s (Retry-After), then traffic again at once (10 calls/s)"
    );
    let calls = pbx_calls(&pbx_log);
    let during = calls
        .iter()
        .filter(|c| c.start > first.1 + 0.5 && c.start < first.1 + gap - 0.5)
        .count();
    assert!(
        during >= 150,
        "only {during} PBX calls started while carrier-a was cooling down; expected ~190"
    );
    let a_stat = dir.join("carrier_a_stat.csv");
    let counted = poll(Duration::from_secs(3), || {
        stat_counter(&a_stat, "SuccessfulCall(C)").filter(|&n| n == 2)
    });
    assert_eq!(
        counted,
        Some(2),
        "carrier-a's SIPp counters (SuccessfulCall(C): INVITE, 503, ACK) do not show 2 calls:\n{}",
        tail(&a_stat, 1500)
    );
    let b_invites = settled_invites(&b, CALLS as usize);
    assert_eq!(b_invites.len(), CALLS as usize, "carrier-b took every call");

    let exposition = tg.metrics();
    let lines = metric_lines(&exposition, &[FAILOVERS, TRUNK_UP, STATE_CHANGES]);
    assert_eq!(
        value(
            &exposition,
            FAILOVERS,
            &[("trunk", "carrier-a"), ("reason", "retry-after")]
        ),
        2.0,
        "both 503s with Retry-After count as reason=\"retry-after\":\n{lines}"
    );
    assert_eq!(
        value(&exposition, STATE_CHANGES, &[("trunk", "carrier-a")]),
        0.0,
        "Retry-After is not a state change:\n{lines}"
    );
    tg.assert_dialogs_drain(Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
    eprintln!(
        "retry_after: carrier-a INVITEs at {times:.2?} s, {during} calls in between on \
         carrier-b, test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 3. carrier-a stopped and continued, with probes
// ---------------------------------------------------------------------------------------

/// carrier-a's process is stopped in the middle of a 20 calls/s run with probes every 1 s:
/// 0 failed calls at the PBX for the whole run; within `down_after` probes new calls go
/// straight to carrier-b (setup time back to normal); carrier-a continued gets traffic back
/// after `up_after` probes; `trunkgate_trunk_up{trunk="carrier-a"}` follows, and so does
/// `GET /trunks` (state, why, last probe).
#[test]
fn stopped_carrier_is_probed_down_and_back_up() {
    const CALLS: u32 = 600;
    const RATE: u32 = 20;
    /// `try_timeout` of the route: a call to the stopped carrier-a fails over after this.
    const TRY_TIMEOUT: f64 = 1.0;
    /// Setup time of a call that went straight to an answering carrier, at most.
    const NORMAL_SETUP: f64 = 0.5;
    let started = Instant::now();
    let net = Net::new(72);
    let dir = scratch_dir("stopped_carrier_is_probed_down_and_back_up");
    let a = carrier(
        &dir,
        net,
        "carrier_a",
        Scenario::Builtin("uas"),
        net.carrier_a_ip(),
    );
    let _b = carrier(
        &dir,
        net,
        "carrier_b",
        Scenario::Builtin("uas"),
        net.carrier_b_ip(),
    );
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            carrier_a: &[
                "probe = { interval = \"1s\", timeout = \"500ms\", down_after = 2, up_after = 2 }",
            ],
            route: &["try_timeout = \"1s\""],
            health: &["breaker_failures = 100", "breaker_window = \"1s\""],
        },
    );

    // Probes answered before any call.
    let probed = poll(Duration::from_secs(5), || {
        let t = trunk(net, "carrier-a");
        (t["last_probe"] == "reply 200").then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "GET /trunks shows no answered probe of carrier-a within 5 s: {:#?}",
            trunks(net)
        )
    });
    assert_eq!(text(&probed, "state"), "up", "{probed}");
    assert_trunks_match_metrics(&tg, net);

    let mut uac = pbx(&dir, net, CALLS, RATE, None, Duration::from_secs(75));
    let clock = SippClock::from_stat(&dir.join("pbx_stat.csv"));
    poll(Duration::from_secs(10), || {
        (invites_received(&a.messages()).len() >= 40).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "carrier-a did not get 40 calls within 10 s:\n{}",
            failover_metrics(&tg)
        )
    });

    // Stop carrier-a: within down_after (2) probes of 1 s (+ 500 ms timeout) it is down.
    let failovers_before = metric(&tg, FAILOVERS, &[("trunk", "carrier-a")]);
    let at_stop = probe_view(&tg, net, "carrier-a");
    let (t_stop, s_stop) = (Instant::now(), clock.now());
    signal(&a, Signal::SIGSTOP);
    let down_after = wait_trunk_up(&tg, net, "carrier-a", 0.0, Duration::from_secs(6));
    let s_down = s_stop + down_after.as_secs_f64();
    let down = trunk(net, "carrier-a");
    assert_eq!(text(&down, "state"), "down", "{down}");
    assert!(
        text(&down, "why").contains("probe"),
        "carrier-a should be down by its probes (the breaker is out of reach): {down}"
    );
    assert_eq!(
        down["last_probe"], "timeout",
        "the last probe of a stopped carrier times out: {down}"
    );
    assert_trunks_match_metrics(&tg, net);
    // The probes that failed since the stop are the consecutive failures /trunks shows (at
    // least down_after). (Counted from the stop: see `first_probe_after_start_is_answered`
    // for the probe counted failed at start.)
    let at_down = probe_view(&tg, net, "carrier-a");
    let failures = count(&at_down.entry, "probe_failures");
    assert!(
        failures >= 2
            && at_down.failed - at_stop.failed == failures as f64
            && at_down.ok >= at_stop.ok,
        "/trunks says {failures} consecutive probe failures (>= down_after = 2 expected); \
         {PROBES} went from ok {} / failed {} before the stop to ok {} / failed {}: {}",
        at_stop.ok,
        at_stop.failed,
        at_down.ok,
        at_down.failed,
        at_down.entry
    );
    assert!(
        count(&at_down.entry, "last_probe_age_ms") < 2500,
        "the last probe of carrier-a is older than the 1 s interval allows: {}",
        at_down.entry
    );
    assert!(
        down_after <= Duration::from_millis(4000),
        "carrier-a marked down {down_after:?} after it stopped; 2 probes 1 s apart with a \
         500 ms timeout take at most 2.5 s"
    );

    // While it is down, no new call tries it: failovers stop growing once the calls that
    // were already on their way to it (at most try_timeout) have moved on.
    std::thread::sleep(Duration::from_millis(1500));
    let f1 = metric(&tg, FAILOVERS, &[("trunk", "carrier-a")]);
    std::thread::sleep(Duration::from_secs(3));
    let f2 = metric(&tg, FAILOVERS, &[("trunk", "carrier-a")]);
    assert!(
        f1 > failovers_before,
        "calls sent to the stopped carrier-a before it was marked down must have failed over \
         ({FAILOVERS}{{trunk=\"carrier-a\"}} {failovers_before} before the stop, {f1} after)"
    );
    assert_eq!(
        f1,
        f2,
        "{FAILOVERS}{{trunk=\"carrier-a\"}} grew from {f1} to {f2} while carrier-a was down: \
         new calls still tried it\n{}",
        failover_metrics(&tg)
    );
    let still_down = trunk(net, "carrier-a");
    assert_eq!(text(&still_down, "state"), "down", "{still_down}");
    assert_eq!(still_down["last_probe"], "timeout", "{still_down}");
    assert_trunks_match_metrics(&tg, net);

    // Continue it: up_after (2) answered probes bring it back, and calls go to it again.
    let s_cont = clock.now();
    signal(&a, Signal::SIGCONT);
    let stopped_for = t_stop.elapsed();
    let up_after = wait_trunk_up(&tg, net, "carrier-a", 1.0, Duration::from_secs(5));
    let s_up = s_cont + up_after.as_secs_f64();
    let up = trunk(net, "carrier-a");
    assert_eq!(text(&up, "state"), "up", "{up}");
    assert!(text(&up, "why").contains("probe"), "{up}");
    assert_eq!(up["last_probe"], "reply 200", "{up}");
    assert_trunks_match_metrics(&tg, net);
    let at_up = probe_view(&tg, net, "carrier-a");
    let successes = count(&at_up.entry, "probe_successes");
    assert!(
        successes >= 2
            && count(&at_up.entry, "probe_failures") == 0
            && at_up.ok - at_down.ok >= successes as f64
            && at_up.failed > at_down.failed,
        "up again: /trunks says {successes} consecutive probe successes (>= up_after = 2 \
         expected) and no failure; {PROBES} went from ok {} / failed {} at the down mark to ok \
         {} / failed {}: {}",
        at_down.ok,
        at_down.failed,
        at_up.ok,
        at_up.failed,
        at_up.entry
    );
    let a_at_up = invites_received(&a.messages()).len();
    poll(Duration::from_secs(5), || {
        (invites_received(&a.messages()).len() >= a_at_up + 10).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "carrier-a, up again, got fewer than 10 new calls within 5 s (had {a_at_up}):\n{}",
            failover_metrics(&tg)
        )
    });

    let result = uac.wait();
    let pbx_log = uac.messages();
    let failures = pbx_failures(&pbx_log);
    assert!(
        failures.is_empty(),
        "the PBX received {} final failure responses (first ones: {:?})",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    result.assert_all_succeeded(CALLS);

    // Setup times from the PBX's log.
    let calls = pbx_calls(&pbx_log);
    let in_window = |from: f64, to: f64| -> Vec<&PbxCall> {
        calls
            .iter()
            .filter(|c| c.start >= from && c.start < to)
            .collect()
    };
    let before = in_window(f64::MIN, s_stop - 0.1);
    let stopping = in_window(s_stop + 0.1, s_down - 0.3);
    let while_down = in_window(s_down + 0.3, s_cont - 0.1);
    let after_up = in_window(s_up + 0.5, f64::MAX);
    let (slow_stopping, _) = slowest(&stopping).unwrap_or((0.0, String::new()));
    assert!(
        slow_stopping >= TRY_TIMEOUT * 0.95,
        "no call placed between the stop and the down mark took try_timeout ({TRY_TIMEOUT} \
         s) to set up; slowest {slow_stopping:.3} s of {}",
        stopping.len()
    );
    assert!(
        while_down.len() >= 40,
        "only {} calls started while carrier-a was down",
        while_down.len()
    );
    for (phase, group) in [
        ("before the stop", &before),
        ("while carrier-a was down", &while_down),
        ("after carrier-a came back", &after_up),
    ] {
        if let Some((worst, id)) = slowest(group) {
            assert!(
                worst < NORMAL_SETUP,
                "a call placed {phase} took {worst:.3} s to set up (Call-ID {id}); expected \
                 under {NORMAL_SETUP} s: straight to an answering carrier"
            );
        }
    }
    let exposition = tg.metrics();
    let lines = metric_lines(&exposition, &[FAILOVERS, TRUNK_UP, STATE_CHANGES]);
    assert_eq!(
        value(&exposition, STATE_CHANGES, &[("trunk", "carrier-a")]),
        2.0,
        "carrier-a went down once and up once:\n{lines}"
    );
    assert_eq!(
        value(&exposition, FAILOVERS, &[("trunk", "carrier-a")]),
        value(
            &exposition,
            FAILOVERS,
            &[("trunk", "carrier-a"), ("reason", "timeout")]
        ),
        "every failover from the stopped carrier-a is a timeout:\n{lines}"
    );
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
    eprintln!(
        "stopped_carrier: down {down_after:?} after SIGSTOP, stopped {stopped_for:?}, up \
         {up_after:?} after SIGCONT; {} failovers; slowest setup {:?} before / {:?} stopping / \
         {:?} down / {:?} after up; test {:.1} s",
        f2,
        slowest(&before).map(|s| s.0),
        slow_stopping,
        slowest(&while_down).map(|s| s.0),
        slowest(&after_up).map(|s| s.0),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 4. A black hole and the passive breaker
// ---------------------------------------------------------------------------------------

/// carrier-a swallows every INVITE without answering: each call fails over after
/// `try_timeout`, the PBX sees 0 failures, and with no probe configured the passive breaker
/// takes carrier-a out after `breaker_failures` (3) failures: the black hole sees exactly 3
/// calls, `/trunks` shows carrier-a down by the breaker. One call at a time, so that each
/// failure is counted before the next call is routed.
#[test]
fn black_hole_trips_the_breaker() {
    const CALLS: u32 = 10;
    const BREAKER: usize = 3;
    const TRY_TIMEOUT: f64 = 1.0;
    let started = Instant::now();
    let net = Net::new(73);
    let dir = scratch_dir("black_hole_trips_the_breaker");
    let hole = BlackHole::bind(SocketAddr::new(net.carrier_a_ip(), 5060));
    let b = carrier(
        &dir,
        net,
        "carrier_b",
        Scenario::Builtin("uas"),
        net.carrier_b_ip(),
    );
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            route: &["try_timeout = \"1s\""],
            health: &[
                "breaker_failures = 3",
                "breaker_window = \"60s\"",
                "breaker_cooldown = \"120s\"",
            ],
            ..Edits::default()
        },
    );

    let mut uac = pbx(&dir, net, CALLS, 5, Some(1), Duration::from_secs(40));
    let result = uac.wait();
    let pbx_log = uac.messages();
    let calls = pbx_calls(&pbx_log);
    let setups: Vec<Option<f64>> = calls.iter().map(|c| c.setup).collect();
    let failures = pbx_failures(&pbx_log);
    assert!(
        failures.is_empty(),
        "the PBX received {} final failure responses (first ones: {:?}); setups {setups:.3?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    result.assert_all_succeeded(CALLS);

    let swallowed = hole.invites();
    assert_eq!(
        swallowed.len(),
        BREAKER,
        "the black hole got {} distinct INVITEs; the breaker (3 failures) should have taken \
         carrier-a out after 3. Setup times {setups:.3?}\n{}",
        swallowed.len(),
        failover_metrics(&tg)
    );
    let other: Vec<String> = hole
        .got()
        .iter()
        .filter(|d| d.method != "INVITE")
        .map(|d| format!("{} {}", d.method, d.call_id))
        .collect();
    assert!(
        other.iter().all(|m| !m.starts_with("OPTIONS")),
        "carrier-a has no probe, yet it got OPTIONS: {other:?}"
    );
    for (i, call) in calls.iter().enumerate() {
        let setup = call.setup.expect("every call answered");
        if i < BREAKER {
            assert!(
                (TRY_TIMEOUT * 0.95..TRY_TIMEOUT + 1.5).contains(&setup),
                "call {} ({}) went to the black hole first and should have failed over after \
                 try_timeout ({TRY_TIMEOUT} s); its setup took {setup:.3} s. All: {setups:.3?}",
                i + 1,
                call.call_id
            );
        } else {
            assert!(
                setup < 0.5,
                "call {} ({}) came after the breaker tripped and should have gone straight to \
                 carrier-b; its setup took {setup:.3} s. All: {setups:.3?}",
                i + 1,
                call.call_id
            );
        }
    }
    let b_invites = settled_invites(&b, CALLS as usize);
    assert_eq!(b_invites.len(), CALLS as usize, "carrier-b took every call");

    let a = trunk(net, "carrier-a");
    assert_eq!(text(&a, "state"), "down", "{a}");
    assert!(
        text(&a, "why").contains("breaker"),
        "carrier-a should be down by the breaker: {a}"
    );
    assert_trunks_match_metrics(&tg, net);
    let exposition = tg.metrics();
    let lines = metric_lines(&exposition, &[FAILOVERS, TRUNK_UP, STATE_CHANGES]);
    assert_eq!(
        value(
            &exposition,
            FAILOVERS,
            &[("trunk", "carrier-a"), ("reason", "timeout")]
        ),
        BREAKER as f64,
        "each black-holed call is a failover with reason=\"timeout\":\n{lines}"
    );
    assert_eq!(
        value(&exposition, STATE_CHANGES, &[("trunk", "carrier-a")]),
        1.0,
        "carrier-a went down once:\n{lines}"
    );
    tg.assert_dialogs_drain(Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
    eprintln!(
        "black_hole: setups {setups:.3?}, test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 5. A TCP trunk whose port is closed
// ---------------------------------------------------------------------------------------

/// A TCP trunk whose port is closed: the call is on carrier-b within 1 s, not 32 s. The
/// route's `try_timeout` is off, so only the refused connect can end the branch early
/// (otherwise Timer B, 32 s).
#[test]
fn refused_tcp_connect_fails_over_at_once() {
    const CALLS: u32 = 3;
    /// Shorter than Timer B (32 s): a branch left to time out fails the test.
    const UAC_TIMEOUT: Duration = Duration::from_secs(25);
    let started = Instant::now();
    let net = Net::new(74);
    let dir = scratch_dir("refused_tcp_connect_fails_over_at_once");
    let closed = SocketAddr::new(net.carrier_a_ip(), 5070);
    match TcpStream::connect_timeout(&closed, Duration::from_secs(1)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => panic!("{closed} should refuse TCP connections, got {other:?}"),
    }
    let b = carrier(
        &dir,
        net,
        "carrier_b",
        Scenario::Builtin("uas"),
        net.carrier_b_ip(),
    );
    let address = format!("address = \"{closed}\"");
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            carrier_a: &[&address, "transport = \"tcp\""],
            route: &["try_timeout = \"0s\""],
            health: &["breaker_failures = 100"],
        },
    );

    let mut uac = pbx(&dir, net, CALLS, 2, Some(1), UAC_TIMEOUT);
    let result = uac.wait();
    let calls = pbx_calls(&uac.messages());
    let setups: Vec<Option<f64>> = calls.iter().map(|c| c.setup).collect();
    let exposition = tg.metrics();
    let lines = metric_lines(
        &exposition,
        &[FAILOVERS, TRUNK_UP, "trunkgate_tcp_connect_failures"],
    );
    for call in &calls {
        assert!(
            call.setup.is_some_and(|s| s < 1.0),
            "call {} to the closed TCP port of carrier-a: {}, expected on carrier-b within 1 s \
             (the refused connect must end the branch, not Timer B). All setups: \
             {setups:.3?}\n{lines}",
            call.call_id,
            call.setup.map_or_else(
                || format!(
                    "no 200 OK before SIPp's {} s timeout",
                    UAC_TIMEOUT.as_secs()
                ),
                |s| format!("set up in {s:.3} s")
            )
        );
    }
    result.assert_all_succeeded(CALLS);
    let b_invites = settled_invites(&b, CALLS as usize);
    assert_eq!(b_invites.len(), CALLS as usize, "carrier-b took every call");
    assert_eq!(
        value(
            &exposition,
            FAILOVERS,
            &[("trunk", "carrier-a"), ("reason", "transport")]
        ),
        f64::from(CALLS),
        "each call is a failover with reason=\"transport\":\n{lines}"
    );
    tg.assert_dialogs_drain(Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
    eprintln!(
        "refused_tcp: setups {setups:.3?}, test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 6. The first probe after start
// ---------------------------------------------------------------------------------------

/// Every probe carrier-a answers counts as answered, the first one after start included:
/// with `timeout = "500ms"` (= T1, so a retransmission cannot save a probe whose first send
/// was lost) and `down_after = 1`, carrier-a must stay up from the start, with no failed
/// probe and no UDP datagram dropped by Trunkgate. No calls.
#[test]
fn first_probe_after_start_is_answered() {
    let started = Instant::now();
    let net = Net::new(75);
    let dir = scratch_dir("first_probe_after_start_is_answered");
    let a = carrier(
        &dir,
        net,
        "carrier_a",
        Scenario::Builtin("uas"),
        net.carrier_a_ip(),
    );
    let tg = start_trunkgate(
        &dir,
        net,
        &Edits {
            carrier_a: &[
                "probe = { interval = \"1s\", timeout = \"500ms\", down_after = 1, up_after = 1 }",
            ],
            ..Edits::default()
        },
    );
    // Three probe intervals.
    let view = poll(Duration::from_secs(6), || {
        let v = probe_view(&tg, net, "carrier-a");
        (v.ok + v.failed >= 3.0).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than 3 probes of carrier-a in 6 s:\n{}",
            failover_metrics(&tg)
        )
    });
    let exposition = tg.metrics();
    let probes_seen: Vec<String> = a
        .messages()
        .iter()
        .filter(|m| !m.sent && m.is_request("OPTIONS"))
        .filter_map(|m| call_id(m).map(str::to_owned))
        .filter(|id| !id.starts_with("ready-"))
        .collect();
    let lines = metric_lines(
        &exposition,
        &[
            PROBES,
            STATE_CHANGES,
            TRUNK_UP,
            "trunkgate_udp_send_drops",
            "trunkgate_sip_retransmissions",
        ],
    );
    assert!(
        view.failed == 0.0
            && value(&exposition, STATE_CHANGES, &[("trunk", "carrier-a")]) == 0.0
            && value(&exposition, "trunkgate_udp_send_drops_total", &[]) == 0.0,
        "carrier-a answered every probe (OPTIONS it received, first copies and \
         retransmissions: {probes_seen:?}), yet: {}\n{lines}\n---- trunkgate log ----\n{}",
        view.entry,
        tg.log_tail()
    );
    tg.stop(STOP_WITHIN);
    eprintln!(
        "first_probe: ok {} failed {}, test {:.1} s",
        view.ok,
        view.failed,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Inbound: two PBX nodes, the first probed down
// ---------------------------------------------------------------------------------------

/// A second PBX site (`[[pbx.node]]`): with the first node dead and probed down, calls from
/// carrier-a go straight to the second, and `/trunks` and `trunkgate_pbx_up` say why.
#[test]
fn inbound_calls_go_to_the_second_pbx_node_when_the_first_is_probed_down() {
    const CALLS: u32 = 20;
    let net = Net::new(76);
    let dir = scratch_dir("inbound_calls_go_to_the_second_pbx_node");
    let site_b = SocketAddr::new(IpAddr::from([127, 0, 76, 6]), 5060);
    // Nothing listens on the first node (127.0.76.2): its probes time out.
    let b = carrier(&dir, net, "pbx_b", Scenario::Builtin("uas"), site_b.ip());
    let mut policy = failover_policy(net, &Edits::default());
    let pbx_allow = format!("allow = [\"{}/32\"]", net.pbx_ip());
    assert!(
        policy.contains(&pbx_allow),
        "[pbx] allow line not found:\n{policy}"
    );
    policy = policy.replacen(
        &pbx_allow,
        &format!(
            "{pbx_allow}\nprobe = {{ interval = \"500ms\", timeout = \"300ms\", down_after = 1, up_after = 1 }}"
        ),
        1,
    );
    policy.push_str(&format!(
        "\n[[pbx.node]]\nname = \"site-b\"\naddress = \"{site_b}\"\nallow = [\"{}/32\"]\n",
        site_b.ip()
    ));
    let path = dir.join("policy.toml");
    std::fs::write(&path, &policy).expect("write policy");
    Trunkgate::check(&path);
    let tg = Trunkgate::start(&dir, Some(&path), admin(net));

    poll(Duration::from_secs(10), || {
        (metric(&tg, "trunkgate_pbx_up", &[("node", "pbx")]) == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("the first PBX node was not probed down\n{}", tg.metrics()));
    let listing = http_get(admin(net), "/trunks").expect("GET /trunks").1;
    let json: Value = serde_json::from_str(&listing).expect("/trunks JSON");
    let nodes = json["pbx"].as_array().expect("a pbx array");
    assert_eq!(nodes.len(), 2, "{listing}");
    assert_eq!(text(&nodes[0], "state"), "down", "{listing}");
    assert!(text(&nodes[0], "why").contains("probe"), "{listing}");
    assert_eq!(text(&nodes[1], "state"), "up", "{listing}");

    let mut uac = SippPeer::spawn(
        &dir,
        "carrier_a",
        Scenario::Builtin("uac"),
        net.carrier_a_ip(),
        Some(net.sip()),
        &["-s", "100", "-r", "10", "-m", &CALLS.to_string()].map(str::to_owned),
        Duration::from_secs(30),
    );
    let result = uac.wait();
    result.assert_all_succeeded(CALLS);
    // None went to the dead node first: no failover, and site-b answered them all.
    assert_eq!(metric(&tg, "trunkgate_pbx_up", &[("node", "site-b")]), 1.0);
    let failovers: f64 = samples(&tg.metrics(), FAILOVERS)
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(failovers, 0.0, "{}", failover_metrics(&tg));
    drop(b);
    tg.assert_dialogs_drain(Duration::from_secs(10));
}
