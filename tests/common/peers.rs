//! Carrier peers for the end-to-end tests: a SIPp trunk started on its own loopback
//! address and waited for by OPTIONS (never by a fixed sleep).

use super::sipp::{Scenario, SippPeer};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// Send OPTIONS from `from` to `to` until a `200` comes back (SIPp answers OPTIONS with
/// `-aa`): the peer is bound and serving. Panics after 10 s or when `peer` exits. (In a
/// scenario file's UAS the OPTIONS opens a call that never ends, so count that UAS's calls by
/// `SuccessfulCall(C)` or by the INVITEs in its log, not by `IncomingCall(C)`.)
pub fn wait_answering(peer: &mut SippPeer, from: IpAddr, to: SocketAddr) {
    let socket = std::net::UdpSocket::bind((from, 0)).expect("bind readiness socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set_read_timeout");
    let local = socket.local_addr().expect("local_addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        peer.assert_running();
        assert!(
            Instant::now() < deadline,
            "SIPp on {to} did not answer OPTIONS within 10 s:\n{}",
            peer.report()
        );
        let call_id = format!("ready-{i}-{}@{}", std::process::id(), local.ip());
        let msg = format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{i}\r\n\
             From: <sip:ready@{local}>;tag=r{i}\r\n\
             To: <sip:{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = socket.send_to(msg.as_bytes(), to);
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let reply = String::from_utf8_lossy(&buf[..n]);
            if reply.starts_with("SIP/2.0 200") && reply.contains(&call_id) {
                return;
            }
        }
    }
}

/// A carrier SIPp on `ip:5060` playing `scenario` (its message log kept), answering OPTIONS
/// from `net`'s unknown address when this returns; killed after `lifetime` at the latest.
pub fn carrier(
    dir: &Path,
    net: super::Net,
    name: &str,
    scenario: Scenario<'_>,
    ip: IpAddr,
    lifetime: Duration,
) -> SippPeer {
    let mut peer = SippPeer::spawn(dir, name, scenario, ip, None, &[], lifetime);
    wait_answering(&mut peer, net.unknown_ip(), SocketAddr::new(ip, 5060));
    peer
}
