//! Conformance end to end (issue 11): every case of the table in `tests/common/conformance.rs`
//! sent to the real binary, over UDP and over TCP, from an allowed peer (the PBX's address)
//! and from a source in no allow list, while SIPp carries a call run through the same
//! Trunkgate.
//!
//! Case by case it asserts the exact answer the allowed peer gets (status code and reason
//! phrase, `Unsupported` for a 420), that accepted requests reach the trunk, that the
//! stranger gets nothing at all (UDP: no datagram back; TCP: reset at accept, no byte), and
//! at the end that the process is up, `/health` answers 200 and the call run had 0 failed
//! calls.
//!
//! Ordering, not sleeping: after each case the sender sends a *barrier* (an OPTIONS that
//! Trunkgate forwards to the test trunk, which answers it at once). Trunkgate handles one
//! message after the other, and the test trunk answers in arrival order, so when the
//! barrier's answer is back, every answer to the case has arrived and the trunk has seen
//! whatever was forwarded.
//!
//! Network `127.0.90.0/24`: Trunkgate `.1`, the PBX `.2` (SIPp UAC on :5060, the test
//! sender on an ephemeral port), carrier-a `.3` (SIPp UAS), carrier-b `.4` (the test trunk
//! below: Request-URI users starting with `77` are routed there), stranger `.9`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::conformance::{CARRIER_REASON, CASES, Case, Expect, Vars, check, render, status};
use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, poll, scratch_dir, sum, test_policy, value};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NET: Net = Net::new(90);
/// How long one answer (or the barrier's) may take on a busy 2-core machine.
const WITHIN: Duration = Duration::from_secs(10);

// ---- the test trunk (carrier-b) ----------------------------------------------------------

/// A UAS on carrier-b's address, UDP and TCP: records every request and answers it at once
/// (`486 Test Carrier` to an INVITE, `200 Test Carrier` to anything else but ACK).
struct TestTrunk {
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl TestTrunk {
    fn start(ip: IpAddr) -> TestTrunk {
        let addr = SocketAddr::new(ip, 5060);
        let udp = UdpSocket::bind(addr).expect("bind the test trunk's UDP socket");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tcp = TcpListener::bind(addr).expect("bind the test trunk's TCP listener");
        tcp.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let msg = buf[..n].to_vec();
                    if let Some(answer) = carrier_answer(&msg) {
                        let _ = udp.send_to(&answer, from);
                    }
                    seen.lock().unwrap().push(msg);
                }
            }));
        }
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((s, _)) = tcp.accept() {
                        s.set_nonblocking(true).unwrap();
                        conns.push((s, Vec::new()));
                    }
                    let mut idle = true;
                    for (s, buf) in &mut conns {
                        let mut chunk = [0u8; 16_384];
                        match s.read(&mut chunk) {
                            Ok(n) if n > 0 => {
                                idle = false;
                                buf.extend_from_slice(&chunk[..n]);
                                while let Some(msg) = take_frame(buf) {
                                    if let Some(answer) = carrier_answer(&msg) {
                                        let _ = s.write_all(&answer);
                                    }
                                    seen.lock().unwrap().push(msg);
                                }
                            }
                            _ => {}
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }));
        }
        TestTrunk {
            seen,
            stop,
            threads,
        }
    }

    fn saw(&self, id: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|m| contains(m, id))
    }
}

impl Drop for TestTrunk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Cut one whole message (head + Content-Length body) off a TCP receive buffer.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    buf.drain(..skip);
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).into_owned();
    let len = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            let n = n.trim();
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l")
        })
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head + len).then(|| buf.drain(..head + len).collect())
}

/// The test trunk's answer to a request (copies Via, From, To + tag, Call-ID and CSeq, raw
/// lines with their folds; compact names too), `None` for ACK and responses.
fn carrier_answer(request: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(request);
    let (head, _) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/2.0 ") || start.starts_with("ACK ") {
        return None;
    }
    let code = if start.starts_with("INVITE ") {
        486
    } else {
        200
    };
    // Header fields with their continuation lines.
    let mut fields: Vec<String> = Vec::new();
    for line in lines {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push_str("\r\n");
                last.push_str(line);
            }
            _ => fields.push(line.to_owned()),
        }
    }
    let mut out = format!("SIP/2.0 {code} {CARRIER_REASON}\r\n");
    for field in &fields {
        let name = field
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(field);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(field);
                if !field.contains("tag") {
                    out.push_str(";tag=carrier");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

// ---- senders -----------------------------------------------------------------------------

/// The barrier request for sending number `n`: forwarded to the test trunk, answered 200.
fn barrier(n: &str, src: SocketAddr, transport: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:77999@{tg} SIP/2.0\r\nVia: SIP/2.0/{transport} {src};branch=z9hG4bK-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:barrier@{src}>;tag={n}\r\nTo: <sip:77999@{tg}>\r\n\
         Call-ID: {n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        tg = NET.sip()
    )
    .into_bytes()
}

fn vars(id: String, src: SocketAddr, transport: &'static str, i: usize) -> Vars {
    Vars {
        id,
        tg: NET.sip().to_string(),
        src: src.to_string(),
        ip: src.ip().to_string(),
        transport,
        user: format!("77{i}"),
    }
}

/// Final answers (1xx left out) in `received` that carry `id`.
fn answers_for(received: &[Vec<u8>], id: &str) -> Vec<Vec<u8>> {
    received
        .iter()
        .filter(|m| contains(m, id))
        .filter(|m| status(m).is_none_or(|(code, _)| code >= 200))
        .cloned()
        .collect()
}

/// Wait for a message carrying `barrier_id` with status 200 in what `recv` yields; return
/// everything received before it.
fn until_barrier(
    mut recv: impl FnMut(Duration) -> Option<Vec<u8>>,
    barrier_id: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let deadline = Instant::now() + WITHIN;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the barrier {barrier_id} got no answer within {WITHIN:?}"
            ));
        }
        if let Some(msg) = recv(left.min(Duration::from_millis(200))) {
            if contains(&msg, barrier_id) && status(&msg).is_some_and(|(c, _)| c == 200) {
                return Ok(got);
            }
            got.push(msg);
        }
    }
}

fn run_udp(trunk: &TestTrunk, failures: &mut Vec<String>) -> usize {
    let sock = UdpSocket::bind(SocketAddr::new(NET.pbx_ip(), 0)).expect("bind on the PBX address");
    let src = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut checked = 0;
    for (i, case) in CASES.iter().enumerate() {
        let expect = case.expect(false);
        let id = format!("c{i}u");
        sock.send_to(&render(case, &vars(id.clone(), src, "UDP", i)), NET.sip())
            .expect("send a case");
        let bid = format!("barrier{i}u");
        sock.send_to(&barrier(&bid, src, "UDP"), NET.sip()).unwrap();
        let received = until_barrier(
            |wait| {
                sock.set_read_timeout(Some(wait)).ok();
                sock.recv_from(&mut buf)
                    .ok()
                    .map(|(n, _)| buf[..n].to_vec())
            },
            &bid,
        );
        match received {
            Ok(received) => {
                let answers = answers_for(&received, &id);
                if let Err(e) = check(case, expect, &answers, trunk.saw(&id)) {
                    failures.push(format!("UDP {e}"));
                }
                checked += 1;
            }
            Err(e) => failures.push(format!("UDP {}: {e}", case.name)),
        }
    }
    checked
}

/// A TCP connection from `ip` to Trunkgate.
fn connect_from(ip: IpAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.connect_timeout(&NET.sip().into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// Read from `stream` until it closes (EOF or reset) within `within`; the bytes read first.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        stream.set_read_timeout(Some(left)).ok();
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(got);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(got),
        }
    }
}

fn run_tcp(trunk: &TestTrunk, failures: &mut Vec<String>) -> usize {
    let mut main = connect_from(NET.pbx_ip()).expect("TCP connect from the PBX address");
    let src = main.local_addr().unwrap();
    let mut pending = Vec::new();
    let mut checked = 0;
    for (i, case) in CASES.iter().enumerate() {
        let expect = case.expect(true);
        let id = format!("c{i}t");
        match expect {
            Expect::DatagramOnly => continue,
            Expect::Closed => {
                // Its own connection: it must be closed, with nothing sent back.
                let result = connect_from(NET.pbx_ip()).and_then(|mut s| {
                    let src = s.local_addr()?;
                    // Closed (reset) while still writing counts as closed.
                    let _ = s.write_all(&render(case, &vars(id.clone(), src, "TCP", i)));
                    Ok(read_until_closed(&mut s, WITHIN))
                });
                match result {
                    Ok(Ok(bytes)) if bytes.is_empty() => checked += 1,
                    Ok(Ok(bytes)) => failures.push(format!(
                        "TCP {}: closed, but after sending {:?}",
                        case.name,
                        String::from_utf8_lossy(&bytes)
                    )),
                    Ok(Err(_)) => {
                        failures.push(format!("TCP {}: still open after {WITHIN:?}", case.name))
                    }
                    Err(e) => failures.push(format!("TCP {}: {e}", case.name)),
                }
                continue;
            }
            _ => {}
        }
        let bid = format!("barrier{i}t");
        let sent = main
            .write_all(&render(case, &vars(id.clone(), src, "TCP", i)))
            .and_then(|()| main.write_all(&barrier(&bid, src, "TCP")));
        if let Err(e) = sent {
            failures.push(format!("TCP {}: the connection broke: {e}", case.name));
            break;
        }
        let received = until_barrier(
            |wait| {
                let deadline = Instant::now() + wait;
                loop {
                    if let Some(msg) = take_frame(&mut pending) {
                        return Some(msg);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    main.set_read_timeout(Some(left)).ok();
                    let mut chunk = [0u8; 16_384];
                    match main.read(&mut chunk) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
                        _ => return None,
                    }
                }
            },
            &bid,
        );
        match received {
            Ok(received) => {
                let answers = answers_for(&received, &id);
                if let Err(e) = check(case, expect, &answers, trunk.saw(&id)) {
                    failures.push(format!("TCP {e}"));
                }
                checked += 1;
            }
            Err(e) => {
                failures.push(format!("TCP {}: {e}", case.name));
                break;
            }
        }
    }
    checked
}

/// Every case from the stranger: UDP gets no datagram back, TCP is reset at accept before
/// any byte; nothing reaches the trunk. `allowed` sends the barriers.
fn run_stranger(trunk: &TestTrunk, failures: &mut Vec<String>) -> usize {
    let stranger = UdpSocket::bind(SocketAddr::new(NET.unknown_ip(), 0))
        .expect("bind on the stranger's address");
    stranger.set_nonblocking(true).unwrap();
    let allowed = UdpSocket::bind(SocketAddr::new(NET.pbx_ip(), 0)).unwrap();
    let (src, allowed_src) = (
        stranger.local_addr().unwrap(),
        allowed.local_addr().unwrap(),
    );
    let mut buf = vec![0u8; 65_536];
    let mut checked = 0;
    for (i, case) in CASES.iter().enumerate() {
        let id = format!("c{i}s");
        stranger
            .send_to(&render(case, &vars(id.clone(), src, "UDP", i)), NET.sip())
            .unwrap();
        let bid = format!("barrier{i}s");
        allowed
            .send_to(&barrier(&bid, allowed_src, "UDP"), NET.sip())
            .unwrap();
        let barrier_back = until_barrier(
            |wait| {
                allowed.set_read_timeout(Some(wait)).ok();
                allowed
                    .recv_from(&mut buf)
                    .ok()
                    .map(|(n, _)| buf[..n].to_vec())
            },
            &bid,
        );
        if let Err(e) = barrier_back {
            failures.push(format!("stranger UDP {}: {e}", case.name));
            continue;
        }
        let mut back = Vec::new();
        while let Ok((n, _)) = stranger.recv_from(&mut buf) {
            back.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if !back.is_empty() || trunk.saw(&id) {
            failures.push(format!(
                "stranger UDP {}: expected silence, got {back:?} (forwarded: {})",
                case.name,
                trunk.saw(&id)
            ));
        }
        // TCP: reset at accept, whatever is written.
        let tcp = connect_from(NET.unknown_ip()).map(|mut s| {
            let _ = s.write_all(&render(case, &vars(format!("c{i}st"), src, "TCP", i)));
            read_until_closed(&mut s, WITHIN)
        });
        match tcp {
            Ok(Ok(bytes)) if bytes.is_empty() => {}
            Ok(Ok(bytes)) => failures.push(format!(
                "stranger TCP {}: got {:?}",
                case.name,
                String::from_utf8_lossy(&bytes)
            )),
            Ok(Err(_)) => {
                failures.push(format!("stranger TCP {}: connection kept open", case.name))
            }
            // Refused or reset while connecting: silence too.
            Err(_) => {}
        }
        checked += 1;
    }
    checked
}

#[test]
fn malformed_and_unusual_requests_get_the_precise_answer_during_calls() {
    let dir = scratch_dir("malformed_and_unusual_requests_get_the_precise_answer_during_calls");
    let policy = dir.join("policy.toml");
    let text = test_policy(NET)
        + "\n[[route]]\nname = \"conformance\"\nmatch = { to_prefix = [\"77\"] }\n\
           trunks = [\"carrier-b\"]\nstrategy = \"priority\"\n";
    std::fs::write(&policy, text).unwrap();
    Trunkgate::check(&policy);
    let trunk = TestTrunk::start(NET.carrier_b_ip());
    let mut tg = Trunkgate::start(&dir, Some(&policy), NET.admin());

    // The concurrent call run: PBX → carrier-a, 600 calls at 20/s.
    let calls = 600;
    let spec = UacSpec::new(NET.pbx_ip(), NET.sip(), Transport::Udp, 20, calls);
    let _uas = Uas::start(
        &dir,
        "uas",
        NET.carrier_a_ip(),
        Transport::Udp,
        spec.budget() + Duration::from_secs(30),
    );
    let mut uac = Uac::spawn(&dir, "uac", spec);
    let calls_flowing = poll(Duration::from_secs(15), || {
        let m = tg.metrics();
        (value(&m, "trunkgate_sip_requests_total", &[("method", "INVITE")]) >= 5.0).then_some(())
    });
    assert!(calls_flowing.is_some(), "the SIPp call run did not start");

    let started = Instant::now();
    let mut failures = Vec::new();
    let udp = run_udp(&trunk, &mut failures);
    let tcp = run_tcp(&trunk, &mut failures);
    let stranger = run_stranger(&trunk, &mut failures);
    eprintln!(
        "conformance: {} cases; checked UDP {udp}, TCP {tcp}, stranger {stranger} in {:?}",
        CASES.len(),
        started.elapsed()
    );
    assert!(
        uac.is_running(),
        "the call run ended before the cases did: not a test under load"
    );
    assert!(tg.is_alive(), "trunkgate died; log:\n{}", tg.log_tail());
    assert_eq!(tg.health(), Some(200), "/health not 200 after the cases");
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let not_tcp = CASES
        .iter()
        .filter(|c: &&Case| c.expect(true) == Expect::DatagramOnly)
        .count();
    assert_eq!(
        (udp, tcp, stranger),
        (CASES.len(), CASES.len() - not_tcp, CASES.len())
    );

    let result = uac.wait();
    result.assert_all_succeeded(calls);
    assert!(tg.is_alive(), "trunkgate died during the run");
    let metrics = tg.metrics();
    assert!(sum(&metrics, "trunkgate_sip_parse_errors_total") > 0.0);
    assert!(
        value(
            &metrics,
            "trunkgate_rejects_total",
            &[("reason", "unsupported")]
        ) > 0.0
    );
    assert!(
        value(
            &metrics,
            "trunkgate_rejects_total",
            &[("reason", "malformed")]
        ) > 0.0
    );
    tg.stop(Duration::from_secs(10));
}
