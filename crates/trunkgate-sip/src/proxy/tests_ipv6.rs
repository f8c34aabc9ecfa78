//! IPv6 and dual stack in the core (sans-IO, no SimNet: its parties are IPv4): an IPv4 PBX
//! and an IPv6 trunk behind listeners of both families. Our Via, Record-Route and Contact
//! carry the host of the family they face, in brackets; routes naming us in any text form of
//! our IPv6 address are ours; the relay learns each side's signaling address; peers sharing
//! one IP are told apart by port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Proxy, ProxyConfig, Timers, addressing};
use crate::media::{MediaCall, MediaFailure, MediaRelay, MediaSide};
use crate::message::{HeaderName, Limits, SipMessage};
use crate::metrics::ProxyMetrics;
use crate::routing::{Party, RouteChoice, Routing, Target, TrunkLoad};
use crate::transport::{Flow, Transport};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PBX: &str = "127.0.0.2:5060";
const TRUNK: &str = "[2001:db8::3]:5060";
const OURS4: &str = "127.0.0.1:5060";
const OURS6: &str = "[2001:db8::1]:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The PBX at 127.0.0.2 and trunk 0 at 2001:db8::3 (by IP); PBX calls go to the trunk and
/// back.
struct DualRouting;

impl Routing for DualRouting {
    fn classify(&self, source: IpAddr) -> Party {
        match source.to_string().as_str() {
            "127.0.0.2" => Party::Pbx,
            "2001:db8::3" => Party::Trunk(0),
            _ => Party::Unknown,
        }
    }
    fn candidates(
        &self,
        _now: Instant,
        from: Party,
        _user: Option<&[u8]>,
        _load: &dyn TrunkLoad,
        out: &mut Vec<Target>,
    ) -> RouteChoice {
        let (party, address) = match from {
            Party::Pbx => (Party::Trunk(0), TRUNK),
            Party::Trunk(_) => (Party::Pbx, PBX),
            Party::Unknown => return RouteChoice::default(),
        };
        out.push(Target {
            party,
            address: addr(address),
            transport: None,
            uri_host: address.into(),
            local_answer: None,
        });
        RouteChoice {
            route: Some(0),
            ..RouteChoice::default()
        }
    }
}

/// Keeps the signaling addresses each call names; passes bodies through.
#[derive(Default)]
struct Peers(Mutex<Vec<(Option<SocketAddr>, Option<SocketAddr>)>>);

impl MediaRelay for Peers {
    fn offer(
        &self,
        call: &MediaCall<'_>,
        _: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.0
            .lock()
            .unwrap()
            .push((call.pbx_address, call.trunk_address));
        out.extend_from_slice(sdp);
        Ok(())
    }
    fn answer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.offer(call, from, sdp, out)
    }
    fn delete(&self, _: u64) {}
    fn idle(&self, _: u64) -> Option<Duration> {
        None
    }
}

fn udp(local: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(local),
        conn: None,
    }
}

fn config(advertised: &str, alternate: Option<&str>, listeners: &[&str]) -> ProxyConfig {
    ProxyConfig {
        advertised: advertised.into(),
        advertised_alternate: alternate.map(Into::into),
        listeners: listeners.iter().map(|l| udp(l)).collect(),
        timers: Timers::default(),
        limits: Limits::default(),
        server_name: "Trunkgate/test".into(),
        dialog_timeout: Duration::from_secs(3600),
    }
}

fn proxy(media: Arc<Peers>) -> Proxy {
    Proxy::new(
        config("127.0.0.1", None, &[OURS4, OURS6]),
        Arc::new(DualRouting),
        Arc::new(ProxyMetrics::with_accounts(1, 0)),
    )
    .with_media(media)
}

/// Everything the proxy sent: (destination, local address, parsed message).
fn sent(p: &mut Proxy) -> Vec<(SocketAddr, SocketAddr, SipMessage)> {
    let mut out = Vec::new();
    while let Some(t) = p.poll_transmit() {
        let m = SipMessage::parse(t.data.clone(), &Limits::default()).unwrap();
        out.push((t.destination, t.flow.local, m));
    }
    out
}

fn input(p: &mut Proxy, now: Instant, local: &str, from: &str, text: &str) {
    let data = text.replace('\n', "\r\n");
    p.handle_input(now, udp(local), addr(from), Bytes::from(data));
}

fn values(m: &SipMessage, name: HeaderName) -> Vec<String> {
    m.values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

const SDP: &str =
    "v=0\no=- 1 1 IN IP4 127.0.0.2\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 16000 RTP/AVP 0\n";

fn invite() -> String {
    format!(
        "INVITE sip:1000@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-pbx-1\n\
         From: <sip:pbx@127.0.0.2>;tag=p1\nTo: <sip:1000@127.0.0.1>\n\
         Call-ID: dual-1\nCSeq: 1 INVITE\nContact: <sip:pbx@127.0.0.2:5060>\n\
         Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{SDP}",
        SDP.len().saturating_add(SDP.matches('\n').count())
    )
}

#[test]
fn an_ipv4_pbx_call_leaves_toward_an_ipv6_trunk_with_bracketed_ipv6_headers() {
    let media = Arc::new(Peers::default());
    let mut p = proxy(media.clone());
    let now = Instant::now();
    input(&mut p, now, OURS4, PBX, &invite());
    let out = sent(&mut p);
    let (to, local, fwd) = out
        .iter()
        .find(|(_, _, m)| m.method().is_some())
        .expect("INVITE forwarded");
    assert_eq!((*to, *local), (addr(TRUNK), addr(OURS6)));
    assert_eq!(
        String::from_utf8_lossy(fwd.request_uri().unwrap()),
        "sip:1000@[2001:db8::3]:5060"
    );
    let vias = values(fwd, HeaderName::Via);
    assert!(
        vias[0].starts_with("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-tg-"),
        "{vias:?}"
    );
    // RFC 5658: our IPv6 address toward the trunk on top, the IPv4 one toward the PBX.
    assert_eq!(
        values(fwd, HeaderName::RecordRoute),
        ["<sip:[2001:db8::1]:5060;lr>", "<sip:127.0.0.1:5060;lr>"]
    );
    // The relay was told where each side signals.
    assert_eq!(
        media.0.lock().unwrap().first(),
        Some(&(Some(addr(PBX)), Some(addr(TRUNK))))
    );

    // The trunk's BYE names us with another text form of our IPv6 address, and without a
    // port: both routes are recognised as ours and popped, the BYE goes to the PBX.
    let ok = format!(
        "SIP/2.0 200 OK\n{}\nRecord-Route: <sip:[2001:db8::1]:5060;lr>, <sip:127.0.0.1:5060;lr>\n\
         From: <sip:pbx@127.0.0.2>;tag=p1\nTo: <sip:1000@127.0.0.1>;tag=t1\nCall-ID: dual-1\n\
         CSeq: 1 INVITE\nContact: <sip:1000@[2001:db8::3]:5060>\nContent-Length: 0\n\n",
        values(fwd, HeaderName::Via)
            .iter()
            .map(|v| format!("Via: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    input(&mut p, now, OURS6, TRUNK, &ok);
    let out = sent(&mut p);
    assert!(
        out.iter().any(|(to, local, m)| m.status() == Some(200)
            && *to == addr(PBX)
            && *local == addr(OURS4)),
        "200 OK relayed to the PBX over the IPv4 listener"
    );
    let bye = "BYE sip:pbx@127.0.0.2:5060 SIP/2.0\n\
               Via: SIP/2.0/UDP [2001:db8::3]:5060;branch=z9hG4bK-trunk-bye;rport\n\
               Route: <sip:[2001:db8:0:0:0:0:0:1];lr>, <sip:127.0.0.1:5060;lr>\n\
               From: <sip:1000@127.0.0.1>;tag=t1\nTo: <sip:pbx@127.0.0.2>;tag=p1\n\
               Call-ID: dual-1\nCSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n";
    input(&mut p, now, OURS6, TRUNK, bye);
    let out = sent(&mut p);
    let (to, local, fwd) = out
        .iter()
        .find(|(_, _, m)| m.method().is_some())
        .expect("BYE forwarded");
    assert_eq!((*to, *local), (addr(PBX), addr(OURS4)));
    assert!(
        values(fwd, HeaderName::Route).is_empty(),
        "our routes popped"
    );
    assert!(values(fwd, HeaderName::Via)[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
}

#[test]
fn each_listener_writes_the_advertised_host_of_its_family() {
    let host = |c: &ProxyConfig, l: &str| addressing::listener_host(c, addr(l));
    // Two advertised hosts: each family its own (order free).
    let c = config("203.0.113.10", Some("2001:db8::10"), &[]);
    assert_eq!(host(&c, "0.0.0.0:5060"), "203.0.113.10");
    assert_eq!(host(&c, "[::]:5060"), "2001:db8::10");
    let c = config("2001:db8::10", Some("203.0.113.10"), &[]);
    assert_eq!(host(&c, "0.0.0.0:5060"), "203.0.113.10");
    assert_eq!(host(&c, "[::]:5060"), "2001:db8::10");
    // A name serves both families where no literal of the family is given.
    let c = config("sbc.example.net", Some("2001:db8::10"), &[]);
    assert_eq!(host(&c, "0.0.0.0:5060"), "sbc.example.net");
    assert_eq!(host(&c, "[::]:5060"), "2001:db8::10");
    let c = config("sbc.example.net", None, &[]);
    assert_eq!(host(&c, "[::]:5060"), "sbc.example.net");
    // One IPv4 literal (the default: the first listener's IP): a specific IPv6 listener
    // writes its own address; an unspecified one has nothing better than the IPv4 host
    // (the binary warns at start).
    let c = config("127.0.0.1", None, &[]);
    assert_eq!(host(&c, "[::1]:5060"), "::1");
    assert_eq!(host(&c, "[::]:5060"), "127.0.0.1");
    assert_eq!(host(&c, "127.0.0.1:5060"), "127.0.0.1");
}

#[test]
fn uri_rewrites_keep_ipv6_brackets() {
    assert_eq!(
        addressing::retarget_uri(
            b"sip:+15551234@[2001:db8::5]:5070;user=phone",
            "[2001:db8::1]:5060"
        ),
        b"sip:+15551234@[2001:db8::1]:5060;user=phone"
    );
    assert_eq!(
        addressing::retarget_uri(b"sips:[::1]", "[2001:db8::1]"),
        b"sips:[2001:db8::1]"
    );
    assert_eq!(
        addressing::uri_socket_addr(b"sip:[2001:db8::9:1];lr"),
        Some(addr("[2001:db8::9:1]:5060"))
    );
    assert_eq!(
        addressing::uri_socket_addr(b"sip:u@[2001:db8::10:5070]"),
        Some(addr("[2001:db8::10:5070]:5060")),
        "RFC 5118 §4.3: the last group is part of the address"
    );
    assert_eq!(
        addressing::uri_socket_addr(b"sip:u@[2001:db8::10]:5070"),
        Some(addr("[2001:db8::10]:5070"))
    );
    assert_eq!(addressing::uri_socket_addr(b"sip:u@2001:db8::10"), None);
    assert_eq!(super::host_port("2001:db8::1", 5060), "[2001:db8::1]:5060");
    assert_eq!(
        super::host_port("[2001:db8::1]", 5060),
        "[2001:db8::1]:5060"
    );
}

/// Peers that share one IP (every IPv6 peer on `::1` in the end-to-end tests) are told
/// apart by the routing's `classify_at`, which the core asks with the source port.
#[test]
fn the_core_classifies_sources_by_ip_and_port() {
    struct ByPort;
    impl Routing for ByPort {
        fn classify(&self, _: IpAddr) -> Party {
            Party::Unknown
        }
        fn classify_at(&self, source: SocketAddr) -> Party {
            match source.port() {
                15061 => Party::Pbx,
                15062 => Party::Trunk(0),
                _ => Party::Unknown,
            }
        }
        fn candidates(
            &self,
            _now: Instant,
            from: Party,
            _user: Option<&[u8]>,
            _load: &dyn TrunkLoad,
            out: &mut Vec<Target>,
        ) -> RouteChoice {
            if from == Party::Pbx {
                out.push(Target {
                    party: Party::Trunk(0),
                    address: addr("[::1]:15062"),
                    transport: None,
                    uri_host: "[::1]:15062".into(),
                    local_answer: None,
                });
            }
            RouteChoice {
                route: Some(0),
                ..RouteChoice::default()
            }
        }
    }
    let mut p = Proxy::new(
        config("::1", None, &["[::1]:15060"]),
        Arc::new(ByPort),
        Arc::new(ProxyMetrics::with_accounts(1, 0)),
    );
    let now = Instant::now();
    let text = invite()
        .replace("127.0.0.2:5060", "[::1]:15061")
        .replace("127.0.0.1:5060", "[::1]:15060")
        .replace("@127.0.0.1>", "@[::1]:15060>");
    input(&mut p, now, "[::1]:15060", "[::1]:15061", &text);
    let out = sent(&mut p);
    assert!(
        out.iter()
            .any(|(to, _, m)| m.method().is_some() && *to == addr("[::1]:15062")),
        "the PBX's INVITE (source port 15061) went to the trunk"
    );
    // The same text from another port at ::1 is nobody's: dropped, nothing sent.
    let stranger = text.replace("dual-1", "dual-2");
    input(&mut p, now, "[::1]:15060", "[::1]:40000", &stranger);
    assert!(
        sent(&mut p)
            .iter()
            .all(|(to, _, _)| *to != addr("[::1]:15062"))
    );
}
