//! End-to-end tests of media anchoring (issue 4): the real `trunkgate` binary relays RTP
//! between SIPp peers, raw UDP sockets of the test, or the `trunkgate-rtpgen` load tool.
//!
//! Net numbers 50–57 (see `common::Net`): Trunkgate on `127.0.N.1` (media on the same
//! address, ports 20000–39999 by default), the PBX on `.2`, carrier-a on `.3`. The SIPp
//! peers use media ports 16000 (PBX) and 17000 (trunk), outside Trunkgate's range, so the
//! tests can tell an anchored SDP from one passed through untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{LoggedMessage, Scenario, SippPeer};
use common::trunkgate::Trunkgate;
use common::{
    Net, RtpgenRun, calls_list, media_test_policy, poll, run_rtpgen, scratch_dir,
    sdp_media_address, value,
};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use serde_json::Value;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// G.711 A-law, 236 RTP packets over 7.05 s, shipped by Debian's sip-tester.
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
/// Trunkgate's default `[media] ports`.
const MEDIA_PORTS: std::ops::RangeInclusive<u16> = 20000..=39999;
/// Media ports of the SIPp PBX and trunk (on their own addresses).
const PBX_MEDIA_PORT: u16 = 16000;
const TRUNK_MEDIA_PORT: u16 = 17000;
const STOP_WITHIN: Duration = Duration::from_secs(10);

fn scenario(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/media")
        .join(name);
    assert!(path.is_file(), "scenario {} missing", path.display());
    path
}

/// The G.711 pcap the SIPp scenarios play; missing = `sip-tester` not (fully) installed.
fn pcap() -> &'static Path {
    let path = Path::new(PCAP);
    assert!(
        path.is_file(),
        "{PCAP} missing: the media tests play it with SIPp (Debian package sip-tester, \
         installed by scripts/test.sh)"
    );
    path
}

/// (packets, seconds from first to last) of a classic little- or big-endian pcap file.
fn pcap_span(path: &Path) -> (usize, f64) {
    let data = std::fs::read(path).expect("read pcap");
    let le = match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => false,
        _ => panic!("{} is not a microsecond pcap file", path.display()),
    };
    let word = |at: usize| -> u32 {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let (mut at, mut n, mut first, mut last) = (24, 0, None, 0.0);
    while at + 16 <= data.len() {
        let t = f64::from(word(at)) + f64::from(word(at + 4)) / 1e6;
        first.get_or_insert(t);
        last = t;
        n += 1;
        at += 16 + word(at + 8) as usize;
    }
    (n, last - first.unwrap_or(last))
}

/// Write a policy (test layout + `listen`/`media` lines), check it, start Trunkgate.
/// SIPp's built-in `uas` as carrier-a for one call, its media on TRUNK_MEDIA_PORT; with
/// `echo` it sends back every RTP packet it gets (`-rtp_echo`). Running when this returns.
fn carrier_uas(dir: &Path, net: Net, echo: bool) -> SippPeer {
    let mut args: Vec<String> = vec!["-m".into(), "1".into()];
    if echo {
        args.push("-rtp_echo".into());
    }
    args.extend([
        "-mi".into(),
        net.carrier_a_ip().to_string(),
        "-mp".into(),
        TRUNK_MEDIA_PORT.to_string(),
    ]);
    let mut uas = SippPeer::spawn(
        dir,
        "uas",
        Scenario::Builtin("uas"),
        net.carrier_a_ip(),
        None,
        &args,
        Duration::from_secs(40),
    );
    std::thread::sleep(Duration::from_millis(400));
    uas.assert_running();
    uas
}

fn start_trunkgate(dir: &Path, net: Net, listen: &[&str], media: &[&str]) -> Trunkgate {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, media_test_policy(net, listen, media)).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), net.admin())
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn leg_u64(leg: &Value, key: &str) -> u64 {
    leg[key]
        .as_u64()
        .unwrap_or_else(|| panic!("leg field {key} missing or not a count: {leg}"))
}

fn leg_addr(leg: &Value, key: &str) -> Option<SocketAddr> {
    leg[key].as_str().and_then(|s| s.parse().ok())
}

/// `/calls` empty, `trunkgate_media_sessions` and `_port_pairs_in_use` 0, within `timeout`.
fn assert_media_idle(tg: &Trunkgate, net: Net, timeout: Duration) -> String {
    let mut last = (Vec::new(), String::new());
    let idle = poll(timeout, || {
        last = (calls_list(net.admin()), tg.metrics());
        (last.0.is_empty()
            && value(&last.1, "trunkgate_media_sessions", &[]) == 0.0
            && value(&last.1, "trunkgate_media_streams", &[]) == 0.0
            && value(&last.1, "trunkgate_media_port_pairs_in_use", &[]) == 0.0)
            .then_some(())
    });
    let media_lines: Vec<&str> = last
        .1
        .lines()
        .filter(|l| l.starts_with("trunkgate_media_") && !l.contains("_bucket"))
        .collect();
    assert!(
        idle.is_some(),
        "media not idle {timeout:?} after the calls ended: /calls = {:?}\n{}",
        last.0,
        media_lines.join("\n")
    );
    last.1
}

/// The first message in `log` matching `pred`, or a panic naming `what` with the log.
fn find<'a>(
    log: &'a [LoggedMessage],
    peer: &SippPeer,
    what: &str,
    pred: impl Fn(&LoggedMessage) -> bool,
) -> &'a LoggedMessage {
    log.iter()
        .find(|m| pred(m))
        .unwrap_or_else(|| panic!("no {what} in the SIPp message log:\n{}", peer.report()))
}

/// Test 1: G.711 from a pcap (SIPp `play_pcap_audio`) to a SIPp UAS that echoes it: audio
/// flows both ways through the relay, `/calls` counts it on both legs while the call is up,
/// both SIPp instances saw Trunkgate's media address in their peer's SDP, and the call's
/// media state is gone after the BYE.
#[test]
fn pcap_audio_both_ways_through_the_relay() {
    let net = Net::new(50);
    let dir = scratch_dir("pcap_audio_both_ways_through_the_relay");
    let (pcap_packets, pcap_secs) = pcap_span(pcap());
    let tg = start_trunkgate(&dir, net, &[], &[]);

    let mut uas = carrier_uas(&dir, net, true);
    let uac_scenario = scenario("uac_pcap_echo.xml");
    let mut uac = SippPeer::spawn(
        &dir,
        "uac",
        Scenario::File(&uac_scenario),
        net.pbx_ip(),
        Some(net.sip()),
        &[
            "-m".into(),
            "1".into(),
            "-s".into(),
            "1000".into(),
            "-mi".into(),
            net.pbx_ip().to_string(),
            "-mp".into(),
            PBX_MEDIA_PORT.to_string(),
        ],
        Duration::from_secs(40),
    );

    // While the call is up: >= 100 packets each way, on both legs.
    let counts = |c: &Value| -> [u64; 4] {
        let s = &c["streams"][0];
        [
            leg_u64(&s["a"], "rx_packets"),
            leg_u64(&s["b"], "tx_packets"),
            leg_u64(&s["b"], "rx_packets"),
            leg_u64(&s["a"], "tx_packets"),
        ]
    };
    let mut seen = Vec::new();
    let first = poll(Duration::from_secs(10), || {
        seen = calls_list(net.admin());
        match seen.as_slice() {
            [c] if c["streams"].as_array().is_some_and(|s| !s.is_empty()) => {
                counts(c).iter().all(|&n| n >= 100).then(|| c.clone())
            }
            _ => None,
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "within 10 s of the call start, /calls did not show one call with >= 100 packets \
             rx on leg a, tx on leg b (caller -> trunk), rx on leg b and tx on leg a (echo); \
             last /calls: {seen:#?}"
        )
    });
    std::thread::sleep(Duration::from_millis(1000));
    let later = calls_list(net.admin());
    assert_eq!(later.len(), 1, "one call expected in /calls: {later:#?}");
    let (c0, c1) = (counts(&first), counts(&later[0]));
    assert!(
        c0.iter().zip(&c1).all(|(a, b)| b > a),
        "packet counts [a.rx, b.tx, b.rx, a.tx] did not all grow in 1 s while the pcap plays: \
         {c0:?} -> {c1:?}"
    );
    eprintln!("pcap_audio: [a.rx, b.tx, b.rx, a.tx] {c0:?} -> {c1:?}");

    let call = &later[0];
    assert_eq!(call["trunk"], "carrier-a", "{call:#}");
    assert_eq!(call["direction"], "outbound", "{call:#}");
    assert_eq!(call["on_hold"], false, "{call:#}");
    let streams = call["streams"].as_array().expect("streams array");
    assert_eq!(streams.len(), 1, "one audio stream expected: {call:#}");
    let (a, b) = (&streams[0]["a"], &streams[0]["b"]);
    assert_eq!(streams[0]["media"], "audio", "{call:#}");
    for (name, leg) in [("a", a), ("b", b)] {
        assert_eq!(leg_u64(leg, "lost"), 0, "leg {name} lost packets: {call:#}");
        assert_eq!(
            leg_u64(leg, "dropped"),
            0,
            "leg {name} dropped packets: {call:#}"
        );
        let local = leg_addr(leg, "local").expect("leg local address");
        assert_eq!(
            local.ip(),
            net.trunkgate_ip(),
            "leg {name} local address not on Trunkgate's media address: {call:#}"
        );
        assert!(
            MEDIA_PORTS.contains(&local.port()) && local.port() % 2 == 0,
            "leg {name} local RTP port {} not an even port of {MEDIA_PORTS:?}: {call:#}",
            local.port()
        );
        assert_eq!(
            leg_addr(leg, "local_rtcp"),
            Some(sock(local.ip(), local.port() + 1)),
            "leg {name} RTCP port is not RTP + 1: {call:#}"
        );
    }
    let pbx_media = sock(net.pbx_ip(), PBX_MEDIA_PORT);
    let trunk_media = sock(net.carrier_a_ip(), TRUNK_MEDIA_PORT);
    assert_eq!(leg_addr(a, "sdp_peer"), Some(pbx_media), "{call:#}");
    assert_eq!(leg_addr(a, "latched_peer"), Some(pbx_media), "{call:#}");
    assert_eq!(leg_addr(b, "sdp_peer"), Some(trunk_media), "{call:#}");
    assert_eq!(leg_addr(b, "latched_peer"), Some(trunk_media), "{call:#}");
    let leg_a_local = leg_addr(a, "local").unwrap();
    let leg_b_local = leg_addr(b, "local").unwrap();

    let uac_result = uac.wait();
    uac_result.assert_all_succeeded(1);
    let uas_result = uas.wait();
    uas_result.assert_all_succeeded(1);

    // The SDP each SIPp saw from the other side names Trunkgate's media address and ports.
    let uac_log = uac.messages();
    let ok = find(&uac_log, &uac, "200 OK to the INVITE received", |m| {
        !m.sent && m.is_response(200, "INVITE")
    });
    assert_eq!(
        sdp_media_address(&ok.text),
        Some((net.trunkgate_ip(), leg_a_local.port())),
        "the 200 OK the PBX (SIPp UAC) received does not offer Trunkgate's leg-a media \
         address {leg_a_local} (SIPp UAS media is {trunk_media}):\n{}",
        ok.text
    );
    assert!(
        ok.text
            .contains(&format!("c=IN IP4 {}", net.trunkgate_ip()))
    );
    let uas_log = uas.messages();
    let invite = find(&uas_log, &uas, "INVITE received", |m| {
        !m.sent && m.is_request("INVITE")
    });
    assert_eq!(
        sdp_media_address(&invite.text),
        Some((net.trunkgate_ip(), leg_b_local.port())),
        "the INVITE the trunk (SIPp UAS) received does not offer Trunkgate's leg-b media \
         address {leg_b_local} (SIPp UAC media is {pbx_media}):\n{}",
        invite.text
    );
    assert!(
        invite
            .text
            .contains(&format!("c=IN IP4 {}", net.trunkgate_ip()))
    );
    for line in [
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-11,16",
    ] {
        assert!(
            invite.text.contains(line),
            "the anchored offer lost {line:?}:\n{}",
            invite.text
        );
    }

    let metrics = assert_media_idle(&tg, net, Duration::from_secs(5));
    let from_pbx = value(
        &metrics,
        "trunkgate_media_packets_total",
        &[("trunk", "carrier-a"), ("side", "pbx")],
    );
    let from_trunk = value(
        &metrics,
        "trunkgate_media_packets_total",
        &[("trunk", "carrier-a"), ("side", "trunk")],
    );
    eprintln!(
        "pcap_audio: the pcap has {pcap_packets} packets over {pcap_secs:.2} s; relayed from \
         the PBX {from_pbx}, from the trunk {from_trunk}"
    );
    assert!(
        from_pbx >= 100.0 && from_trunk >= 100.0,
        "trunkgate_media_packets_total{{trunk=\"carrier-a\"}}: side=pbx {from_pbx}, \
         side=trunk {from_trunk}; expected >= 100 each (the pcap has {pcap_packets})"
    );
    assert!(
        from_pbx <= pcap_packets as f64 && from_trunk <= pcap_packets as f64,
        "more packets counted than played: pbx {from_pbx}, trunk {from_trunk}, \
         pcap {pcap_packets}"
    );
    assert_eq!(
        value(
            &metrics,
            "trunkgate_media_lost_packets_total",
            &[("trunk", "carrier-a")]
        ),
        0.0,
        "lost packets counted for a loss-free pcap over loopback"
    );
    tg.stop(STOP_WITHIN);
}

// ---- 2. DSCP: TOS bytes of SIP and RTP as received ----

/// A UDP socket that reports the TOS byte of every datagram (IP_RECVTOS).
struct TosSocket {
    sock: UdpSocket,
    name: &'static str,
}

/// One datagram and its TOS byte.
struct Datagram {
    data: Vec<u8>,
    from: SocketAddr,
    tos: Option<u8>,
}

impl Datagram {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// SIP as text, anything else (RTP) as the hex of its first bytes.
    fn preview(&self, max: usize) -> String {
        if self.data.first().is_some_and(u8::is_ascii_uppercase) {
            self.text().chars().take(max).collect()
        } else {
            let hex: Vec<String> = self
                .data
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{} bytes: {} ...", self.data.len(), hex.join(" "))
        }
    }
}

impl TosSocket {
    fn bind(name: &'static str, addr: SocketAddr) -> TosSocket {
        let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {name} on {addr}: {e}"));
        setsockopt(&sock, sockopt::IpRecvTos, &true).expect("setsockopt IP_RECVTOS");
        TosSocket { sock, name }
    }

    fn send(&self, data: &[u8], to: SocketAddr) {
        self.sock
            .send_to(data, to)
            .unwrap_or_else(|e| panic!("{} send to {to}: {e}", self.name));
    }

    /// The next datagram within `timeout`, or `None`.
    fn recv(&self, timeout: Duration) -> Option<Datagram> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        let mut buf = vec![0u8; 65536];
        let mut cmsg = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (len, from, tos) = match recvmsg::<SockaddrStorage>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(msg) => {
                let mut tos = None;
                for c in msg.cmsgs().expect("control messages not truncated") {
                    if let ControlMessageOwned::Ipv4Tos(t) = c {
                        tos = Some(t);
                    }
                }
                let from = msg
                    .address
                    .and_then(|a| {
                        a.as_sockaddr_in()
                            .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                    })
                    .expect("IPv4 source address");
                (msg.bytes, from, tos)
            }
            Err(nix::errno::Errno::EAGAIN) => return None,
            Err(e) => panic!("{} recvmsg: {e}", self.name),
        };
        buf.truncate(len);
        Some(Datagram {
            data: buf,
            from,
            tos,
        })
    }

    /// The first datagram for which `pred` holds, within `timeout`; every datagram received
    /// on the way must carry TOS `tos` (they all come from Trunkgate).
    fn expect(
        &self,
        what: &str,
        tos: u8,
        timeout: Duration,
        pred: impl Fn(&Datagram) -> bool,
    ) -> Datagram {
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(d) = (!left.is_zero()).then(|| self.recv(left)).flatten() else {
                panic!(
                    "{}: no {what} within {timeout:?}; other datagrams: {others:#?}",
                    self.name
                );
            };
            assert_eq!(
                d.tos,
                Some(tos),
                "{}: TOS byte of a datagram from {} (waiting for {what}) is {}, expected \
                 {tos:#04x}:\n{}",
                self.name,
                d.from,
                d.tos.map_or("absent".to_owned(), |t| format!("{t:#04x}")),
                d.preview(400)
            );
            if pred(&d) {
                return d;
            }
            others.push(d.preview(200));
        }
    }
}

/// Header lines (as sent, long or compact form) named `names` (lower case) of a SIP message.
fn header_lines<'a>(msg: &'a str, names: &[&str]) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| names.contains(&n.trim().to_ascii_lowercase().as_str()))
        })
        .collect()
}

fn header_value<'a>(msg: &'a str, names: &[&str]) -> Option<&'a str> {
    header_lines(msg, names)
        .first()
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

fn with_body(head: &str, body: &str) -> Vec<u8> {
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!("{head}{ctype}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn sdp(ip: IpAddr, port: u16) -> String {
    format!(
        "v=0\r\no=test 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
    )
}

/// A response to `request` from its recipient: Via, From, Call-ID, CSeq and Record-Route
/// copied, To tagged.
fn response(request: &str, status: &str, to_tag: &str, contact: &str, body: &str) -> Vec<u8> {
    let mut head = format!("SIP/2.0 {status}\r\n");
    for l in header_lines(request, &["via", "v"]) {
        head.push_str(&format!("{l}\r\n"));
    }
    for l in header_lines(
        request,
        &["from", "f", "call-id", "i", "cseq", "record-route"],
    ) {
        head.push_str(&format!("{l}\r\n"));
    }
    let to = header_value(request, &["to", "t"]).expect("To header");
    if to.contains(";tag=") {
        head.push_str(&format!("To: {to}\r\n"));
    } else {
        head.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    head.push_str(&format!("Contact: <{contact}>\r\n"));
    with_body(&head, body)
}

/// 12-byte RTP header (V=2, PT 8) and 160 bytes of payload.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// One call set up by hand (INVITE/200/ACK with SDP), RTP both ways, BYE: every SIP datagram
/// Trunkgate sends must carry `sip_tos`, every relayed RTP datagram `rtp_tos`.
fn tos_run(test: &str, net: Net, listen: &[&str], media: &[&str], sip_tos: u8, rtp_tos: u8) {
    let dir = scratch_dir(test);
    let tg = start_trunkgate(&dir, net, listen, media);
    let wait = Duration::from_secs(5);
    let pbx = TosSocket::bind("PBX SIP socket", sock(net.pbx_ip(), 5060));
    let trunk = TosSocket::bind("trunk SIP socket", sock(net.carrier_a_ip(), 5060));
    let pbx_media = TosSocket::bind("PBX media socket", sock(net.pbx_ip(), PBX_MEDIA_PORT));
    let trunk_media = TosSocket::bind(
        "trunk media socket",
        sock(net.carrier_a_ip(), TRUNK_MEDIA_PORT),
    );
    let (pbx_ip, trunk_ip, tg_ip) = (net.pbx_ip(), net.carrier_a_ip(), net.trunkgate_ip());
    let call_id = format!("{test}@{pbx_ip}");

    let invite = with_body(
        &format!(
            "INVITE sip:1000@{tg_ip}:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {pbx_ip}:5060;branch=z9hG4bK-{test}-1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:pbx@{pbx_ip}>;tag=pbx-1\r\n\
             To: <sip:1000@{tg_ip}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:pbx@{pbx_ip}:5060>\r\n"
        ),
        &sdp(pbx_ip, PBX_MEDIA_PORT),
    );
    pbx.send(&invite, net.sip());
    let invite_in = trunk
        .expect("INVITE", sip_tos, wait, |d| d.data.starts_with(b"INVITE "))
        .text();
    let (b_ip, b_port) = sdp_media_address(&invite_in)
        .unwrap_or_else(|| panic!("no SDP media address in the forwarded INVITE:\n{invite_in}"));
    assert!(
        b_ip == tg_ip && MEDIA_PORTS.contains(&b_port),
        "the forwarded INVITE's SDP is not anchored on {tg_ip}:{MEDIA_PORTS:?}:\n{invite_in}"
    );
    let trunk_contact = format!("sip:1000@{trunk_ip}:5060");
    trunk.send(
        &response(
            &invite_in,
            "200 OK",
            "trunk-1",
            &trunk_contact,
            &sdp(trunk_ip, TRUNK_MEDIA_PORT),
        ),
        net.sip(),
    );
    let ok = pbx
        .expect("200 OK to the INVITE", sip_tos, wait, |d| {
            d.data.starts_with(b"SIP/2.0 200")
        })
        .text();
    let (a_ip, a_port) = sdp_media_address(&ok)
        .unwrap_or_else(|| panic!("no SDP media address in the relayed 200 OK:\n{ok}"));
    assert!(
        a_ip == tg_ip && MEDIA_PORTS.contains(&a_port),
        "the relayed 200 OK's SDP is not anchored on {tg_ip}:{MEDIA_PORTS:?}:\n{ok}"
    );
    let to = header_value(&ok, &["to", "t"])
        .expect("To in 200")
        .to_owned();
    let mut routes: Vec<String> = header_lines(&ok, &["record-route"])
        .iter()
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
        .collect();
    routes.reverse();
    let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let in_dialog = |method: &str, cseq: u32, branch: &str| -> Vec<u8> {
        with_body(
            &format!(
                "{method} {trunk_contact} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {pbx_ip}:5060;branch=z9hG4bK-{test}-{branch};rport\r\n\
                 {route_lines}\
                 Max-Forwards: 70\r\n\
                 From: <sip:pbx@{pbx_ip}>;tag=pbx-1\r\n\
                 To: {to}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} {method}\r\n"
            ),
            "",
        )
    };
    pbx.send(&in_dialog("ACK", 1, "ack"), net.sip());
    trunk.expect("ACK", sip_tos, wait, |d| d.data.starts_with(b"ACK "));

    // RTP both ways: the first datagram that arrives must be unchanged and marked.
    let a_local = sock(a_ip, a_port);
    let b_local = sock(b_ip, b_port);
    for (from, to, dst, dir) in [
        (&pbx_media, &trunk_media, a_local, "PBX -> trunk"),
        (&trunk_media, &pbx_media, b_local, "trunk -> PBX"),
    ] {
        let ssrc = if dir.starts_with("PBX") {
            0x1111_1111
        } else {
            0x2222_2222
        };
        for seq in 0..5u16 {
            from.send(&rtp_packet(seq, ssrc), dst);
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = to.expect(&format!("RTP {dir}"), rtp_tos, wait, |_| true);
        let seq = u16::from_be_bytes([got.data[2], got.data[3]]);
        assert_eq!(
            got.data,
            rtp_packet(seq, ssrc),
            "RTP {dir} was not relayed unchanged"
        );
        assert_eq!(
            got.from,
            if dir.starts_with("PBX") {
                b_local
            } else {
                a_local
            }
        );
        // Drain the rest (all marked too).
        while let Some(d) = to.recv(Duration::from_millis(100)) {
            assert_eq!(d.tos, Some(rtp_tos), "TOS of a later RTP datagram {dir}");
        }
    }

    pbx.send(&in_dialog("BYE", 2, "bye"), net.sip());
    let bye = trunk
        .expect("BYE", sip_tos, wait, |d| d.data.starts_with(b"BYE "))
        .text();
    trunk.send(
        &response(&bye, "200 OK", "trunk-1", &trunk_contact, ""),
        net.sip(),
    );
    pbx.expect("200 OK to the BYE", sip_tos, wait, |d| {
        d.data.starts_with(b"SIP/2.0 200") && d.text().contains("BYE\r\n")
    });
    assert_media_idle(&tg, net, Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
}

/// Test 2: Defaults: SIP that Trunkgate sends carries CS3 (TOS 0x60), relayed RTP EF (0xb8).
#[test]
fn sip_and_rtp_carry_cs3_and_ef() {
    tos_run(
        "sip_and_rtp_carry_cs3_and_ef",
        Net::new(51),
        &[],
        &[],
        0x60,
        0xb8,
    );
}

/// Test 2b: Configured values: `[listen] dscp = "AF31"` (26 → TOS 0x68), `[media] dscp = 34`
/// (AF41 → TOS 0x88).
#[test]
fn configured_dscp_marks_sip_and_rtp() {
    tos_run(
        "configured_dscp_marks_sip_and_rtp",
        Net::new(52),
        &["dscp = \"AF31\""],
        &["dscp = 34"],
        0x68,
        0x88,
    );
}

// ---- 3. Dead media: BYE on both legs ----

/// Wall-clock (SIPp log) times of the BYE from Trunkgate at each peer, checked for the
/// Q.850 cause 102 Reason.
fn received_bye(peer: &SippPeer, side: &str) -> f64 {
    let log = peer.messages();
    let bye = find(&log, peer, &format!("BYE received by the {side}"), |m| {
        !m.sent && m.is_request("BYE")
    });
    let reason = bye.header("Reason").unwrap_or("");
    assert!(
        reason.contains("Q.850") && reason.contains("cause=102"),
        "the BYE Trunkgate sent to the {side} lacks `Reason: Q.850;cause=102`:\n{}",
        bye.text
    );
    bye.time
}

/// A silent call torn down by Trunkgate: both SIPp peers must get its BYE within
/// `media.timeout` + 2 s of the last RTP (and not before `media.timeout`), and every media
/// figure returns to idle.
fn silent_call(test: &str, net: Net, uac_scenario: &str, media_secs: f64) {
    const TIMEOUT: f64 = 3.0;
    let dir = scratch_dir(test);
    let mut tg = start_trunkgate(&dir, net, &[], &["timeout = \"3s\""]);
    let mut uas = carrier_uas(&dir, net, false);
    let uac_scenario = scenario(uac_scenario);
    let mut uac = SippPeer::spawn(
        &dir,
        "uac",
        Scenario::File(&uac_scenario),
        net.pbx_ip(),
        Some(net.sip()),
        &[
            "-m".into(),
            "1".into(),
            "-s".into(),
            "1000".into(),
            "-mi".into(),
            net.pbx_ip().to_string(),
            "-mp".into(),
            PBX_MEDIA_PORT.to_string(),
        ],
        Duration::from_secs(40),
    );
    // Watch the call while it lives: the caller's RTP arrives (when it sends any).
    let mut max_rx = 0;
    let mut seen_call = false;
    let watching = Instant::now();
    while uac.is_running() && watching.elapsed() < Duration::from_secs(60) {
        for c in calls_list(net.admin()) {
            seen_call = true;
            max_rx = max_rx.max(leg_u64(&c["streams"][0]["a"], "rx_packets"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let uac_result = uac.wait();
    let uas_result = uas.wait();
    uac_result.assert_all_succeeded(1);
    uas_result.assert_all_succeeded(1);
    assert!(seen_call, "the call never appeared in /calls");
    if media_secs > 0.0 {
        assert!(
            max_rx >= 100,
            "the caller's pcap did not reach Trunkgate: leg a rx_packets peaked at {max_rx}"
        );
    }

    // Times from the SIPp message logs (one machine clock).
    let log = uac.messages();
    let ack = find(&log, &uac, "ACK sent", |m| m.sent && m.is_request("ACK")).time;
    let media_end = ack + media_secs;
    for (side, bye) in [
        ("PBX (SIPp UAC)", received_bye(&uac, "PBX (SIPp UAC)")),
        ("trunk (SIPp UAS)", received_bye(&uas, "trunk (SIPp UAS)")),
    ] {
        let after = bye - media_end;
        eprintln!("{test}: BYE at the {side} {after:.2} s after the media stopped");
        assert!(
            after <= TIMEOUT + 2.0,
            "the {side} got Trunkgate's BYE {after:.2} s after the media stopped; expected \
             within media.timeout ({TIMEOUT} s) + 2 s"
        );
        assert!(
            after >= TIMEOUT - 0.5,
            "the {side} got Trunkgate's BYE {after:.2} s after the media stopped, before \
             media.timeout ({TIMEOUT} s)"
        );
    }

    let metrics = assert_media_idle(&tg, net, Duration::from_secs(5));
    let trunk_sessions = value(
        &metrics,
        "trunkgate_trunk_sessions",
        &[("trunk", "carrier-a")],
    );
    assert!(
        metrics.contains("trunkgate_trunk_sessions{"),
        "trunkgate_trunk_sessions not exported"
    );
    assert_eq!(
        trunk_sessions, 0.0,
        "trunkgate_trunk_sessions{{carrier-a}} after teardown"
    );
    let timeouts = value(
        &metrics,
        "trunkgate_media_timeouts_total",
        &[("trunk", "carrier-a")],
    );
    assert_eq!(
        timeouts, 1.0,
        "trunkgate_media_timeouts_total{{trunk=\"carrier-a\"}} = {timeouts}, expected 1"
    );
    assert!(tg.is_alive());
    tg.stop(STOP_WITHIN);
}

/// Test 3: A caller that plays 7 s of G.711 and then falls silent (the callee never sends):
/// Trunkgate's BYE reaches both sides within `media.timeout` (3 s) + 2 s.
#[test]
fn silent_call_is_torn_down_with_bye_on_both_legs() {
    let (_, secs) = pcap_span(pcap());
    silent_call(
        "silent_call_is_torn_down_with_bye_on_both_legs",
        Net::new(53),
        "uac_pcap_then_silence.xml",
        secs,
    );
}

/// Test 3b: A call whose media never starts at all: torn down `media.timeout` after the answer.
#[test]
fn call_without_media_is_torn_down_with_bye_on_both_legs() {
    silent_call(
        "call_without_media_is_torn_down_with_bye_on_both_legs",
        Net::new(54),
        "uac_no_media_wait_bye.xml",
        0.0,
    );
}

// ---- 4. Loss and jitter, with trunkgate-rtpgen's lossy/jittery forwarder ----

/// What one rtpgen run through its own Trunkgate saw.
struct StatsRun {
    tool: RtpgenRun,
    /// Mean `jitter_ms` of legs a and b over the calls of a mid-run `/calls`.
    live_jitter_ms: (f64, f64),
    metrics: String,
}

const STATS_CALLS: usize = 20;

fn stats_run(test: &str, net: Net, impairment: &[&str]) -> StatsRun {
    let dir = scratch_dir(test);
    let tg = start_trunkgate(&dir, net, &[], &[]);
    let mut args: Vec<String> = [
        "sip",
        "--sbc",
        &net.sip().to_string(),
        "--pbx",
        &sock(net.pbx_ip(), 5060).to_string(),
        "--trunk",
        &sock(net.carrier_a_ip(), 5060).to_string(),
        "--media-ip",
        &net.pbx_ip().to_string(),
        "--trunk-media-ip",
        &net.carrier_a_ip().to_string(),
        "--calls",
        &STATS_CALLS.to_string(),
        "--cps",
        "40",
        "--duration",
        "10",
        "--pps",
        "50",
        "--threads",
        "1",
        "--seed",
        "4242",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(impairment.iter().map(|s| (*s).to_owned()));
    let (tool, live) = std::thread::scope(|s| {
        let tool = s.spawn(|| run_rtpgen(&dir, "rtpgen", &args, Duration::from_secs(60)));
        // Mid-run: every call up with >= 5 s of the caller's RTP.
        let mut last = Vec::new();
        let live = poll(Duration::from_secs(20), || {
            last = calls_list(net.admin());
            let legs = |side: &str| -> Vec<&Value> {
                last.iter().map(|c| &c["streams"][0][side]).collect()
            };
            (last.len() == STATS_CALLS && legs("a").iter().all(|l| leg_u64(l, "rx_packets") >= 250))
                .then(|| {
                    let mean = |side: &str| {
                        legs(side)
                            .iter()
                            .map(|l| l["jitter_ms"].as_f64().expect("jitter_ms"))
                            .sum::<f64>()
                            / STATS_CALLS as f64
                    };
                    (mean("a"), mean("b"))
                })
        });
        let tool = tool.join().expect("rtpgen thread");
        let live = live.unwrap_or_else(|| {
            panic!(
                "{test}: /calls never showed {STATS_CALLS} calls with >= 250 packets from the \
                 PBX on leg a; last: {} calls; rtpgen exit {:?}:\n{}",
                last.len(),
                tool.exit_code,
                tool.log
            )
        });
        (tool, live)
    });
    assert!(
        tool.exit_code.is_some() && tool.report["calls_failed"] == 0,
        "{test}: rtpgen exit {:?}, report {}:\n{}",
        tool.exit_code,
        tool.report,
        tool.log
    );
    let metrics = assert_media_idle(&tg, net, Duration::from_secs(5));
    tg.stop(STOP_WITHIN);
    StatsRun {
        tool,
        live_jitter_ms: live,
        metrics,
    }
}

/// Mean of `trunkgate_media_jitter_seconds{trunk="carrier-a"}` (every finished stream
/// direction, both sides), in ms.
fn histogram_mean_ms(metrics: &str) -> f64 {
    let sum = value(
        metrics,
        "trunkgate_media_jitter_seconds_sum",
        &[("trunk", "carrier-a")],
    );
    let count = value(
        metrics,
        "trunkgate_media_jitter_seconds_count",
        &[("trunk", "carrier-a")],
    );
    assert!(
        count >= (2 * STATS_CALLS) as f64,
        "trunkgate_media_jitter_seconds_count{{carrier-a}} = {count}, expected one per \
         finished stream direction (>= {})",
        2 * STATS_CALLS
    );
    sum / count * 1000.0
}

/// Test 4: 20 calls × 10 s × 50 pps per direction through three Trunkgates at once: one with 5 %
/// of the PBX's packets dropped (seeded) before Trunkgate, one with 0–20 ms of random delay
/// added, one clean. Trunkgate's loss ratio on the PBX side is 5 % ± 1 % and agrees with the
/// tool's; its jitter is clearly higher with the delay than without.
#[test]
fn loss_and_jitter_are_measured() {
    let [lossy, jittery, clean] = std::thread::scope(|s| {
        let lossy = s.spawn(|| {
            stats_run(
                "loss_and_jitter_are_measured_loss",
                Net::new(55),
                &["--drop", "0.05"],
            )
        });
        let jittery = s.spawn(|| {
            stats_run(
                "loss_and_jitter_are_measured_jitter",
                Net::new(56),
                &["--jitter-ms", "20"],
            )
        });
        let clean = s.spawn(|| stats_run("loss_and_jitter_are_measured_clean", Net::new(57), &[]));
        [lossy, jittery, clean].map(|h| h.join().expect("stats run thread"))
    });

    // Loss.
    let m = &lossy.metrics;
    let lost = value(
        m,
        "trunkgate_media_lost_packets_total",
        &[("trunk", "carrier-a"), ("side", "pbx")],
    );
    let relayed = value(
        m,
        "trunkgate_media_packets_total",
        &[("trunk", "carrier-a"), ("side", "pbx")],
    );
    let lost_trunk = value(
        m,
        "trunkgate_media_lost_packets_total",
        &[("trunk", "carrier-a"), ("side", "trunk")],
    );
    let ratio = lost / (lost + relayed);
    let dir = &lossy.tool.report["directions"]["uac_to_uas"];
    let tool_ratio = dir["loss_ratio"].as_f64().unwrap_or(f64::NAN);
    let dropped = lossy.tool.report["impairment"]["dropped"]
        .as_f64()
        .unwrap_or(f64::NAN);
    eprintln!(
        "loss: Trunkgate lost {lost} of {} from the PBX ({:.3} %); tool: forwarder dropped \
         {dropped}, uac_to_uas {dir}; trunk side lost {lost_trunk}",
        lost + relayed,
        ratio * 100.0
    );
    assert!(
        (0.04..=0.06).contains(&ratio),
        "Trunkgate's loss on the PBX side is {:.3} % (lost {lost}, relayed {relayed}); \
         expected 5 % ± 1 % for --drop 0.05",
        ratio * 100.0
    );
    assert!(
        (0.04..=0.06).contains(&tool_ratio),
        "rtpgen's own UAC→UAS loss is {tool_ratio}; expected 0.05 ± 0.01: {}",
        lossy.tool.report
    );
    assert!(
        (ratio - tool_ratio).abs() <= 0.005,
        "Trunkgate's loss {ratio:.4} and rtpgen's {tool_ratio:.4} disagree by more than \
         0.5 percentage points"
    );
    assert_eq!(
        lost_trunk, 0.0,
        "loss counted on the trunk side, which had no impairment"
    );
    assert_eq!(
        lossy.tool.report["directions"]["uas_to_uac"]["lost"], 0,
        "rtpgen lost packets trunk→PBX, which had no impairment: {}",
        lossy.tool.report
    );

    // Jitter: live per leg, and the per-trunk histogram of finished streams.
    let (j_a, j_b) = jittery.live_jitter_ms;
    let (c_a, c_b) = clean.live_jitter_ms;
    let (j_hist, c_hist) = (
        histogram_mean_ms(&jittery.metrics),
        histogram_mean_ms(&clean.metrics),
    );
    eprintln!(
        "jitter: with 0-20 ms delay leg a {j_a:.3} ms, leg b {j_b:.3} ms, histogram mean \
         {j_hist:.3} ms; clean leg a {c_a:.3} ms, leg b {c_b:.3} ms, histogram mean \
         {c_hist:.3} ms; lossy run leg a {:.3} ms",
        lossy.live_jitter_ms.0
    );
    assert!(
        j_a > 2.0,
        "mean jitter of the PBX's streams with 0–20 ms random delay is {j_a:.3} ms; expected \
         > 2 ms (RFC 3550 estimate ≈ 6.7 ms)"
    );
    assert!(
        c_a < 1.0 && c_b < 1.0,
        "mean jitter without impairment is {c_a:.3} / {c_b:.3} ms (legs a / b); expected < 1 ms"
    );
    assert!(
        j_hist > 1.5 && j_hist > 3.0 * c_hist,
        "trunkgate_media_jitter_seconds mean with delay {j_hist:.3} ms vs {c_hist:.3} ms \
         without: expected > 1.5 ms and > 3× the clean run"
    );
}
