//! Connection-level admission (issue 15), end to end against the real binary on loopback:
//! a TCP flood from a source in no allow list is closed at accept without costing
//! descriptors while PBX calls over UDP and TCP complete; the per-source connection cap;
//! the header (slowloris) and idle timeouts; and the descriptor budget's media share
//! refusing the 51st anchored call with 503 while signaling keeps working.
//!
//! Address plan as in `common`: test `N` owns `127.0.N.0/24`; here the PBX also places calls
//! from `.5` (added to its allow list) so that its UDP and TCP SIPp runs do not share an
//! address, and carrier-a is reached over UDP whatever the call arrived on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Scenario, SippPeer, Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, poll, scratch_dir, test_policy, value};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The PBX's second address (its TCP call runs).
fn pbx_tcp_ip(net: Net) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net.n, 5))
}

/// `common::test_policy(net)` with the PBX also allowed from `.5`, carrier-a reached over
/// UDP, `sip` lines replacing keys of `[sip]` (`tcp_idle_timeout = "3s"`) and `extra`
/// appended (whole tables).
fn policy(net: Net, sip: &[&str], extra: &str) -> String {
    let pbx_allow = format!("allow = [\"{}/32\"]", net.pbx_ip());
    let mut out = String::new();
    for line in test_policy(net).lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if line.trim() == pbx_allow {
            out.push_str(&format!(
                "allow = [\"{}/32\", \"{}/32\"]\n",
                net.pbx_ip(),
                pbx_tcp_ip(net)
            ));
            continue;
        }
        if let Some(new) = sip
            .iter()
            .find(|l| l.split('=').next().unwrap_or("").trim() == key)
        {
            out.push_str(new);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "name = \"carrier-a\"" {
            out.push_str("transport = \"udp\"\n");
        }
        if line.trim() == "[sip]" {
            for l in sip {
                let k = l.split('=').next().unwrap_or("").trim();
                if !test_policy(net).contains(&format!("\n{k} ")) {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
    }
    assert!(out.contains(&pbx_tcp_ip(net).to_string()), "{out}");
    out.push_str(extra);
    out
}

fn start(dir: &Path, net: Net, sip: &[&str], extra: &str) -> Trunkgate {
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy(net, sip, extra)).expect("write policy");
    Trunkgate::check(&path);
    Trunkgate::start(dir, Some(&path), net.admin())
}

fn closed(m: &str, reason: &str) -> f64 {
    value(
        m,
        "trunkgate_tcp_connections_closed_total",
        &[("reason", reason)],
    )
}

/// Descriptors `pid` has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Raise this test process's soft open-files limit to its hard limit.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// A blocking TCP connection from `from` (port chosen by the kernel) to `to`.
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// How a connection ended when read with a deadline.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// EOF or reset by Trunkgate, after this long.
    Closed(Duration),
    /// Still open at the deadline.
    Open,
}

/// Read until Trunkgate closes the connection or `within` passes (bytes read are dropped).
fn wait_closed(stream: &mut TcpStream, since: Instant, within: Duration) -> Ending {
    let deadline = since + within;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ending::Open;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return Ending::Closed(since.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ending::Open;
            }
            Err(_) => return Ending::Closed(since.elapsed()), // reset
        }
    }
}

/// An RFC 5626 ping on `stream` is answered with a pong: the connection is open and served.
fn pongs(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"\r\n\r\n").is_err() {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).is_ok() && &buf == b"\r\n"
}

/// Send an OPTIONS addressed to Trunkgate itself over `stream`; its status code.
fn options_status(stream: &mut TcpStream, net: Net) -> Option<u16> {
    let local = stream.local_addr().ok()?;
    let msg = format!(
        "OPTIONS sip:{tg} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-conn-{port}\r\n\
         From: <sip:probe@{ip}>;tag=p{port}\r\nTo: <sip:{tg}>\r\nCall-ID: conn-{port}@{ip}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        tg = net.sip(),
        ip = local.ip(),
        port = local.port(),
    );
    stream.write_all(msg.as_bytes()).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Sample `pid`'s descriptors every 10 ms until stopped; the highest count seen.
fn fd_sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(open_fds(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    })
}

/// 5,000 TCP connections from a source in no allow list: each is closed by Trunkgate within
/// 1 s, Trunkgate's descriptors stay under 200, and PBX calls over UDP and TCP all complete.
#[test]
fn unknown_source_connection_flood_is_closed_at_accept() {
    const FLOOD: usize = 5_000;
    const BATCH: usize = 100;
    raise_own_fd_limit();
    let net = Net::new(60);
    let dir = scratch_dir("connections_unknown_source_flood");
    let mut tg = start(&dir, net, &[], "");
    let pid = tg.pid();
    let _uas = Uas::start(
        &dir,
        "uas_a",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(60),
    );
    let mut udp = Uac::spawn(
        &dir,
        "uac_udp",
        UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, 20, 100),
    );
    let mut tcp = Uac::spawn(
        &dir,
        "uac_tcp",
        UacSpec::new(pbx_tcp_ip(net), net.sip(), Transport::Tcp, 20, 100),
    );
    let baseline = open_fds(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = fd_sampler(pid, stop.clone());
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut still_open = 0usize;
    let connect_errors = AtomicUsize::new(0);
    let mut done = 0;
    let mut reset_early = 0usize;
    while done < FLOOD {
        let mut batch = Vec::with_capacity(BATCH);
        for _ in 0..BATCH.min(FLOOD - done) {
            match connect_from(net.unknown_ip(), net.sip()) {
                Ok(s) => batch.push((s, Instant::now())),
                // Reset by Trunkgate before the client's connect() returned: closed at once.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => reset_early += 1,
                Err(e) => {
                    eprintln!("connect error: {e}");
                    connect_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            done += 1;
        }
        for (mut stream, since) in batch {
            match wait_closed(&mut stream, since, Duration::from_secs(1)) {
                Ending::Closed(after) => slowest = slowest.max(after),
                Ending::Open => still_open += 1,
            }
        }
    }
    let flood_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let most_fds = sampler.join().expect("fd sampler");
    let udp_running = udp.is_running();
    let tcp_running = tcp.is_running();
    let udp_result = udp.wait();
    let tcp_result = tcp.wait();

    let mut m = String::new();
    let counted = poll(Duration::from_secs(5), || {
        m = tg.metrics();
        let n = closed(&m, "unknown_source") + closed(&m, "banned");
        (n >= FLOOD as f64).then_some(n)
    });
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap_or_default();
    let refusal_lines = log
        .lines()
        .filter(|l| l.contains("TCP connection refused at accept"))
        .count();
    eprintln!(
        "flood: {FLOOD} connections in {flood_time:?} ({} connect errors, {reset_early} reset \
         before connect returned); slowest close {slowest:?}; \
         trunkgate fds baseline {baseline}, highest {most_fds}; closed unknown_source {} banned {}; \
         refusal log lines {refusal_lines}",
        connect_errors.load(Ordering::Relaxed),
        closed(&m, "unknown_source"),
        closed(&m, "banned"),
    );
    assert!(
        udp_running && tcp_running,
        "a PBX call run ended before the flood did (udp {udp_running}, tcp {tcp_running}): not concurrent"
    );
    udp_result.assert_all_succeeded(100);
    tcp_result.assert_all_succeeded(100);
    assert_eq!(
        connect_errors.load(Ordering::Relaxed),
        0,
        "connects refused by the kernel"
    );
    assert_eq!(
        still_open, 0,
        "connections Trunkgate left open for more than 1 s"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest close {slowest:?}"
    );
    assert!(
        most_fds < 200,
        "Trunkgate held {most_fds} descriptors during the flood"
    );
    assert!(
        counted.is_some(),
        "closed{{unknown_source}} + closed{{banned}} < {FLOOD}:\n{}",
        lines(&m, "trunkgate_tcp_connections_closed_total")
    );
    assert!(
        closed(&m, "banned") > 0.0,
        "connection attempts count against the flood limit: expected a ban"
    );
    assert_eq!(refusal_lines, 1, "one refusal line per source per minute");
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

fn lines(m: &str, prefix: &str) -> String {
    m.lines()
        .filter(|l| l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\n")
}

/// With `connections_per_source = 4`, an allowed source's 5th connection is refused and
/// counted, while the calls on its first connection (SIPp over TCP) all complete and the
/// other connections keep answering.
#[test]
fn per_source_cap_refuses_extra_connections() {
    let net = Net::new(61);
    let dir = scratch_dir("connections_per_source_cap");
    let tg = start(&dir, net, &[], "\n[limits]\nconnections_per_source = 4\n");
    let _uas = Uas::start(
        &dir,
        "uas_a",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(60),
    );
    let mut uac = Uac::spawn(
        &dir,
        "uac_tcp",
        UacSpec::new(pbx_tcp_ip(net), net.sip(), Transport::Tcp, 10, 50),
    );
    let connected = poll(Duration::from_secs(10), || {
        (value(&tg.metrics(), "trunkgate_tcp_connections_active", &[]) >= 1.0).then_some(())
    });
    assert!(connected.is_some(), "SIPp's TCP connection never showed up");

    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = connect_from(pbx_tcp_ip(net), net.sip()).expect("connect within the cap");
        assert!(
            pongs(&mut s),
            "connection {} within the cap is not served",
            i + 2
        );
        held.push(s);
    }
    let ending = match connect_from(pbx_tcp_ip(net), net.sip()) {
        Ok(mut extra) => wait_closed(&mut extra, Instant::now(), Duration::from_secs(1)),
        // Reset by Trunkgate before connect() returned.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ending::Closed(Duration::ZERO),
        Err(e) => panic!("connect: {e}"),
    };
    assert!(
        matches!(ending, Ending::Closed(_)),
        "the 5th connection from one source was not closed: {ending:?}"
    );
    // Another source is not affected by this one's cap.
    let mut other = connect_from(net.pbx_ip(), net.sip()).expect("connect from the PBX's .2");
    assert!(pongs(&mut other), "another allowed source was refused");
    assert!(
        uac.is_running(),
        "the call run ended before the cap was tried"
    );
    let result = uac.wait();
    result.assert_all_succeeded(50);
    for (i, s) in held.iter_mut().enumerate() {
        assert!(pongs(s), "held connection {} stopped answering", i + 2);
    }
    let m = tg.metrics();
    eprintln!(
        "per-source cap: 5th connection {ending:?}; {}",
        lines(
            &m,
            "trunkgate_tcp_connections_closed_total{reason=\"per_source_cap\""
        )
    );
    assert_eq!(closed(&m, "per_source_cap"), 1.0);
    tg.stop(STOP_WITHIN);
}

/// `tcp_header_timeout = "2s"`: half a request then a byte a second is closed at about 2 s
/// after its first byte; `tcp_idle_timeout = "3s"`: a silent connection at about 3 s.
#[test]
fn slow_and_silent_connections_are_cut() {
    let net = Net::new(62);
    let dir = scratch_dir("connections_slow_and_silent");
    let tg = start(
        &dir,
        net,
        &["tcp_idle_timeout = \"3s\"", "tcp_header_timeout = \"2s\""],
        "",
    );
    let mut silent = connect_from(net.pbx_ip(), net.sip()).expect("connect");
    let silent_since = Instant::now();
    let mut slow = connect_from(net.pbx_ip(), net.sip()).expect("connect");
    slow.write_all(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKslow\r\nX-Slow: ",
    )
    .expect("write half a request");
    let slow_since = Instant::now();
    let _ = slow.set_read_timeout(Some(Duration::from_millis(50)));
    let mut slow_end = None;
    let mut trickled = 0;
    while slow_since.elapsed() < Duration::from_secs(6) {
        // One byte a second (the connection is never idle), watching for the close.
        if slow_since.elapsed() >= Duration::from_secs(trickled + 1) {
            trickled += 1;
            if slow.write_all(b"x").is_err() {
                slow_end = Some(slow_since.elapsed());
                break;
            }
        }
        let mut b = [0u8; 64];
        match slow.read(&mut b) {
            Ok(0) => {
                slow_end = Some(slow_since.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                slow_end = Some(slow_since.elapsed());
                break;
            }
        }
    }
    let silent_end = match wait_closed(&mut silent, silent_since, Duration::from_secs(6)) {
        Ending::Closed(after) => Some(after),
        Ending::Open => None,
    };
    eprintln!(
        "header timeout 2 s: closed after {slow_end:?}; idle timeout 3 s: closed after {silent_end:?}"
    );
    let slow_end = slow_end.expect("the slow sender was not closed within 6 s");
    assert!(
        slow_end >= Duration::from_millis(1900) && slow_end < Duration::from_millis(3000),
        "slow sender closed after {slow_end:?}, expected about 2 s"
    );
    let silent_end = silent_end.expect("the silent connection was not closed within 6 s");
    assert!(
        silent_end >= Duration::from_millis(2900) && silent_end < Duration::from_millis(4500),
        "silent connection closed after {silent_end:?}, expected about 3 s"
    );
    let mut m = String::new();
    let counted = poll(Duration::from_secs(3), || {
        m = tg.metrics();
        (closed(&m, "header_timeout") == 1.0 && closed(&m, "idle") == 1.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "{}",
        lines(&m, "trunkgate_tcp_connections_closed_total")
    );
    tg.stop(STOP_WITHIN);
}

/// `media_calls = 50`: 50 calls held up, the 51st gets 503 with a log line naming the
/// budget, the budget metric shows the media share full, and signaling still works.
#[test]
fn media_budget_refuses_the_51st_call_with_503() {
    let net = Net::new(63);
    let dir = scratch_dir("connections_media_budget");
    let tg = start(&dir, net, &[], "\n[limits]\nmedia_calls = 50\n");
    let _uas = Uas::start(
        &dir,
        "uas_a",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(60),
    );
    let args: Vec<String> = ["-m", "51", "-r", "100", "-l", "60", "-d", "6000"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut uac = SippPeer::spawn(
        &dir,
        "uac",
        Scenario::Builtin("uac"),
        net.pbx_ip(),
        Some(net.sip()),
        &args,
        Duration::from_secs(40),
    );
    // The kernel fast path with sk_lookup (TRUNKGATE_MEDIA__FASTPATH=kernel, the suite's
    // second mode): anchored calls hold no socket, so the media share is not used and all 51
    // calls are anchored.
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap_or_default();
    if log.contains("anchored legs hold no socket of their own") {
        let result = uac.wait();
        let m = tg.metrics();
        assert_eq!(
            (result.successful, result.failed),
            (51, 0),
            "{}",
            uac.report()
        );
        assert_eq!(
            value(&m, "trunkgate_fd_budget_media_refusals_total", &[]),
            0.0
        );
        assert_eq!(
            value(
                &m,
                "trunkgate_fd_budget",
                &[("share", "media"), ("kind", "used")]
            ),
            0.0
        );
        tg.assert_dialogs_drain(Duration::from_secs(10));
        tg.stop(STOP_WITHIN);
        return;
    }
    let mut m = String::new();
    let full = poll(Duration::from_secs(10), || {
        m = tg.metrics();
        let used = value(
            &m,
            "trunkgate_fd_budget",
            &[("share", "media"), ("kind", "used")],
        );
        let refused = value(&m, "trunkgate_fd_budget_media_refusals_total", &[]);
        (used == 200.0 && refused == 1.0).then_some(())
    });
    assert!(
        full.is_some(),
        "media share not full with one refusal:\n{}\n{}",
        lines(&m, "trunkgate_fd_budget"),
        lines(&m, "trunkgate_media_sessions")
    );
    assert_eq!(
        value(
            &m,
            "trunkgate_fd_budget",
            &[("share", "media"), ("kind", "limit")]
        ),
        200.0
    );
    // Signaling keeps working with the media share full: a new TCP connection is accepted
    // and its OPTIONS answered.
    let mut s = connect_from(net.pbx_ip(), net.sip()).expect("connect while media is full");
    let status = options_status(&mut s, net);
    assert_eq!(
        status,
        Some(200),
        "OPTIONS over TCP while the media share is full"
    );
    let sip_used = value(
        &tg.metrics(),
        "trunkgate_fd_budget",
        &[("share", "sip"), ("kind", "used")],
    );
    assert!(uac.is_running(), "calls ended before the check");
    let result = uac.wait();
    // Distinct calls answered 503 (SIPp's built-in uac aborts such a call without an ACK,
    // so Trunkgate retransmits the 503).
    let mut refused: Vec<String> = uac
        .messages()
        .iter()
        .filter(|msg| !msg.sent && msg.is_response(503, "INVITE"))
        .filter_map(|msg| msg.header("Call-ID").map(str::to_owned))
        .collect();
    refused.dedup();
    let refused_503 = refused.len();
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap_or_default();
    let budget_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("descriptor budget") && l.contains("budget=\"media\""))
        .collect();
    eprintln!(
        "media budget: {} successful, {} failed, {refused_503} INVITE 503; sip share used {sip_used}; log: {}",
        result.successful,
        result.failed,
        budget_lines.first().unwrap_or(&"<none>")
    );
    assert_eq!(
        (result.successful, result.failed),
        (50, 1),
        "{}",
        uac.report()
    );
    assert_eq!(refused_503, 1, "calls answered 503: {refused:?}");
    assert_eq!(budget_lines.len(), 1, "one log line naming the budget");
    assert!(
        sip_used >= 1.0,
        "the OPTIONS connection counted in the SIP share"
    );
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
}
