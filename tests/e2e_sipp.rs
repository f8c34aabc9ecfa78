//! End-to-end tests: the real `trunkgate` binary between real SIP peers (SIPp) on loopback.
//!
//! Each test owns `127.0.N.0/24` (see `common::Net`) so the tests run in parallel; the
//! acceptance test alone runs the embedded default policy on `127.0.0.1:5060` / `:9091`.
//! A missing `sipp` fails these tests (it never skips them): `scripts/test.sh` installs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, garbage, scratch_dir, sum, test_policy};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Write the test policy for `net`, check it with `trunkgate check`, and start Trunkgate.
fn start_trunkgate(dir: &std::path::Path, net: Net) -> Trunkgate {
    let policy: PathBuf = dir.join("policy.toml");
    std::fs::write(&policy, test_policy(net)).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), net.admin())
}

/// `calls` calls at `rate` cps through Trunkgate; `inbound` = carrier → PBX.
fn call_run(test: &str, net: Net, transport: Transport, inbound: bool, rate: u32, calls: u32) {
    let dir = scratch_dir(test);
    let mut tg = start_trunkgate(&dir, net);
    let (caller, callee) = if inbound {
        (net.carrier_a_ip(), net.pbx_ip())
    } else {
        (net.pbx_ip(), net.carrier_a_ip())
    };
    let spec = UacSpec::new(caller, net.sip(), transport, rate, calls);
    let _uas = Uas::start(
        &dir,
        "uas",
        callee,
        transport,
        spec.budget() + Duration::from_secs(30),
    );
    let result = Uac::spawn(&dir, "uac", spec).wait();
    result.assert_all_succeeded(calls);
    assert!(tg.is_alive(), "trunkgate died during the run");
    tg.assert_dialogs_drain(Duration::from_secs(5));
    let metrics = tg.metrics();
    let invites: f64 = common::samples(&metrics, "trunkgate_sip_requests_total")
        .iter()
        .filter(|s| s.labels.contains("method=\"INVITE\""))
        .map(|s| s.value)
        .sum();
    assert!(
        invites >= f64::from(calls),
        "trunkgate_sip_requests_total{{method=\"INVITE\"}} = {invites}, expected >= {calls}"
    );
    tg.stop(STOP_WITHIN);
}

/// The harness itself: SIPp UAC straight to SIPp UAS, no Trunkgate. If this fails, the
/// machine (SIPp, loopback addresses) is the problem, not Trunkgate.
#[test]
fn harness_sipp_direct() {
    let net = Net::new(10);
    let dir = scratch_dir("harness_sipp_direct");
    let spec = UacSpec::new(
        net.pbx_ip(),
        SocketAddr::new(net.carrier_a_ip(), 5060),
        Transport::Udp,
        100,
        200,
    );
    let _uas = Uas::start(
        &dir,
        "uas",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(60),
    );
    Uac::spawn(&dir, "uac", spec)
        .wait()
        .assert_all_succeeded(200);
}

#[test]
fn outbound_udp() {
    call_run("outbound_udp", Net::new(11), Transport::Udp, false, 50, 500);
}

#[test]
fn outbound_tcp() {
    call_run("outbound_tcp", Net::new(12), Transport::Tcp, false, 50, 500);
}

#[test]
fn inbound_udp() {
    call_run("inbound_udp", Net::new(13), Transport::Udp, true, 50, 500);
}

#[test]
fn inbound_tcp() {
    call_run("inbound_tcp", Net::new(14), Transport::Tcp, true, 50, 500);
}

/// The acceptance figure at full size on the embedded default policy (no `--config`):
/// `sipp -sn uac 127.0.0.1:5060 -i 127.0.0.2 -p 5060 -s 1000 -r 100 -m 2000` against
/// `sipp -sn uas -i 127.0.0.3 -p 5060`, 0 failed calls.
#[test]
fn acceptance_default_policy_2000_calls() {
    let net = Net::new(0);
    let dir = scratch_dir("acceptance_default_policy_2000_calls");
    let mut tg = Trunkgate::start(&dir, None, net.admin());
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, 100, 2000);
    let _uas = Uas::start(
        &dir,
        "uas",
        net.carrier_a_ip(),
        Transport::Udp,
        spec.budget() + Duration::from_secs(30),
    );
    let result = Uac::spawn(&dir, "uac", spec).wait();
    result.assert_all_succeeded(2000);
    assert!(tg.is_alive(), "trunkgate died during the run");
    tg.assert_dialogs_drain(Duration::from_secs(5));
    // The embedded default's shutdown_grace is 30 s; nothing is in progress, so it should be
    // quick, but the contract is "within shutdown_grace".
    tg.stop(Duration::from_secs(35));
}

/// 10,000 malformed datagrams over ~5 s, half from the PBX's address (allowed) and half from
/// an unknown one, while 500 calls run: no call fails, the process lives, `/health` stays
/// 200, and the parse errors are counted.
#[test]
fn udp_garbage_during_calls() {
    let net = Net::new(15);
    let dir = scratch_dir("udp_garbage_during_calls");
    let mut tg = start_trunkgate(&dir, net);
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, 50, 500);
    let _uas = Uas::start(
        &dir,
        "uas",
        net.carrier_a_ip(),
        Transport::Udp,
        spec.budget() + Duration::from_secs(30),
    );
    let mut uac = Uac::spawn(&dir, "uac", spec);
    std::thread::sleep(Duration::from_secs(1));

    let sockets = [
        UdpSocket::bind(SocketAddr::new(net.pbx_ip(), 0)).expect("bind on the PBX address"),
        UdpSocket::bind(SocketAddr::new(net.unknown_ip(), 0)).expect("bind on an unknown address"),
    ];
    let seed = std::env::var("GARBAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    eprintln!("udp_garbage_during_calls: GARBAGE_SEED={seed}");
    let started = Instant::now();
    let sent = garbage::flood(seed, &sockets, net.sip(), 10_000, Duration::from_secs(5));
    eprintln!(
        "udp_garbage_during_calls: {sent:?} in {:?}",
        started.elapsed()
    );
    assert!(
        uac.is_running(),
        "the call run ended before the garbage did: not a test under load"
    );
    assert!(
        sent.datagrams >= 9_000,
        "only {} of 10,000 garbage datagrams sent: {sent:?}",
        sent.datagrams
    );
    assert!(
        tg.is_alive(),
        "trunkgate died under garbage; log:\n{}",
        tg.log_tail()
    );
    assert_eq!(
        tg.health(),
        Some(200),
        "/health not 200 right after the garbage"
    );

    let result = uac.wait();
    result.assert_all_succeeded(500);
    assert!(tg.is_alive(), "trunkgate died during the run");
    assert_eq!(tg.health(), Some(200), "/health not 200 after the run");
    let metrics = tg.metrics();
    let parse_errors = sum(&metrics, "trunkgate_sip_parse_errors_total");
    let unknown = sum(&metrics, "trunkgate_sip_unknown_source_total");
    eprintln!("udp_garbage_during_calls: parse errors {parse_errors}, unknown source {unknown}");
    assert!(
        parse_errors > 0.0,
        "trunkgate_sip_parse_errors_total = {parse_errors}, expected > 0"
    );
    // Half the garbage came from 127.0.N.9, in no allow list: dropped, and counted.
    assert!(
        unknown > 0.0,
        "trunkgate_sip_unknown_source_total = {unknown}, expected > 0"
    );
    tg.stop(STOP_WITHIN);
}

/// Connect to Trunkgate's TCP listener from `source_ip`, send `frame`, and report whether
/// Trunkgate closes the connection within `within` (any reply before the close is fine).
fn closed_after(
    source_ip: std::net::IpAddr,
    target: SocketAddr,
    frame: &[u8],
    within: Duration,
) -> Result<(), String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(&SocketAddr::new(source_ip, 0).into())
        .map_err(|e| format!("bind {source_ip}: {e}"))?;
    socket
        .connect_timeout(&target.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect {target}: {e}"))?;
    let mut stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(within)).ok();
    match stream.write_all(frame) {
        Ok(()) => {}
        // Closed (reset) while we were still writing an oversized frame: that is a close.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
            return Ok(());
        }
        Err(e) => return Err(format!("write: {e}")),
    }
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    let mut replies = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "connection still open after {within:?}; received: {:?}",
                String::from_utf8_lossy(&replies)
            ));
        }
        stream.set_read_timeout(Some(left)).ok();
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => replies.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Bogus frames on their own TCP connections (from the PBX's address) get those connections
/// closed, while calls over another TCP connection go on unaffected.
#[test]
fn tcp_garbage_closes_connection() {
    let net = Net::new(16);
    let dir = scratch_dir("tcp_garbage_closes_connection");
    let mut tg = start_trunkgate(&dir, net);
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Tcp, 20, 200);
    let _uas = Uas::start(
        &dir,
        "uas",
        net.carrier_a_ip(),
        Transport::Tcp,
        spec.budget() + Duration::from_secs(30),
    );
    let uac = Uac::spawn(&dir, "uac", spec);
    std::thread::sleep(Duration::from_secs(1));

    let source = SocketAddr::new(net.pbx_ip(), 0);
    let mut oversized = b"INVITE sip:1000@x SIP/2.0\r\nX-Big: ".to_vec();
    oversized.resize(70 * 1024, b'a'); // over max_message_size, and no end of headers
    let invite = garbage::valid_invite(source, net.sip(), "TCP", 1);
    let huge_length = String::from_utf8_lossy(&invite)
        .replacen("Content-Length: ", "Content-Length: 99999999", 1)
        .into_bytes();
    let frames: [(&str, Vec<u8>); 3] = [
        (
            "not SIP, header without colon",
            b"THIS IS NOT SIP\r\nno colon here\r\n\r\n".to_vec(),
        ),
        ("70 KB frame without end of headers", oversized),
        ("Content-Length beyond max_message_size", huge_length),
    ];
    let mut failures = Vec::new();
    for (what, frame) in &frames {
        if let Err(e) = closed_after(source.ip(), net.sip(), frame, Duration::from_secs(10)) {
            failures.push(format!("{what}: {e}"));
        }
    }

    let result = uac.wait();
    result.assert_all_succeeded(200);
    let framing_errors = sum(&tg.metrics(), "trunkgate_tcp_framing_errors_total");
    assert!(
        failures.is_empty(),
        "bogus TCP frames did not get their connection closed \
         (trunkgate_tcp_framing_errors_total = {framing_errors}):\n{}",
        failures.join("\n")
    );
    assert!(tg.is_alive(), "trunkgate died");
    assert_eq!(tg.health(), Some(200));
    tg.stop(STOP_WITHIN);
}
