//! RFC 5118 (SIP torture tests for IPv6), §4.1–4.10, through the zero-copy parser: the
//! message is parsed, and the IPv6 references in its Request-URI, Via sent-by, `received`,
//! Route/Record-Route and Contact come out as the host (without brackets) and port a proxy
//! routes by. The messages follow the RFC's, shortened to the headers that matter.
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::message::{NameAddr, SipUri, Via};
use std::net::IpAddr;

fn p(s: &str) -> Result<SipMessage, ParseError> {
    SipMessage::parse(Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
}

fn ok(s: &str) -> SipMessage {
    p(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// A request with `start` as its request line and `extra` header lines.
fn request(start: &str, via: &str, extra: &str) -> String {
    let method = start.split(' ').next().unwrap_or_default();
    format!(
        "{start}\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:user@example.com>;tag=81x2\r\n\
         To: <sip:user@example.com>\r\nCall-ID: SSG9559905523997077@hlau_4100\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn uri(m: &SipMessage) -> SipUri<'_> {
    SipUri::parse(m.request_uri().unwrap()).unwrap()
}

fn host_ip(host: &[u8]) -> IpAddr {
    std::str::from_utf8(host).unwrap().parse().unwrap()
}

/// §4.1: a valid message with IPv6 references in the Request-URI, Via and Contact.
#[test]
fn s4_1_valid_ipv6_references() {
    let m = ok(&request(
        "REGISTER sip:[2001:db8::10] SIP/2.0",
        "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
        "Contact: \"Caller\" <sip:caller@[2001:db8::1]>\r\n",
    ));
    let u = uri(&m);
    assert_eq!((u.host, u.port), (&b"2001:db8::10"[..], None));
    assert!(u.is_ipv6());
    let via = m.top_via();
    assert_eq!((via.host, via.port), (&b"2001:db8::9:1"[..], None));
    let contact = m.values(HeaderName::Contact).next().unwrap();
    let c = SipUri::parse(NameAddr::parse(contact).unwrap().uri).unwrap();
    assert_eq!(c.host, b"2001:db8::1");
    assert_eq!(host_ip(c.host), "2001:db8::1".parse::<IpAddr>().unwrap());
}

/// §4.2: IPv6 references without brackets in the Request-URI and Contact are invalid: the
/// URI does not parse, and its host is never read as `2001` with a port; a message with
/// such a Request-URI is refused at parse (`BadUri`: the proxy answers 400).
#[test]
fn s4_2_unbracketed_ipv6_references_are_refused() {
    for bad in [
        "sip:2001:db8::10",
        "sip:caller@2001:db8::1",
        "sip:[2001:db8::10",
        "sip:2001:db8::10]",
        "sip:[]",
        "sip:[2001:db8::10]:",
        "sip:[2001:db8::10]x",
        "sip:[2001:db8::10]:70000",
        "sip:[2001:zz8::10]",
    ] {
        assert!(
            SipUri::parse(bad.as_bytes()).is_err(),
            "{bad} should not parse"
        );
    }
    let r = p(&request(
        "REGISTER sip:2001:db8::10 SIP/2.0",
        "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
        "",
    ));
    assert_eq!(r.err(), Some(ParseError::BadUri));
}

/// §4.3: `[2001:db8::10:5070]` is an address (its last group is `5070`), not a port.
#[test]
fn s4_3_port_ambiguous() {
    let m = ok(&request(
        "REGISTER sip:[2001:db8::10:5070] SIP/2.0",
        "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
        "Contact: \"Caller\" <sip:caller@[2001:db8::1]>\r\n",
    ));
    let u = uri(&m);
    assert_eq!((u.host, u.port), (&b"2001:db8::10:5070"[..], None));
}

/// §4.4: `[2001:db8::10]:5070` is the address and port 5070.
#[test]
fn s4_4_port_unambiguous() {
    let m = ok(&request(
        "REGISTER sip:[2001:db8::10]:5070 SIP/2.0",
        "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
        "Contact: \"Caller\" <sip:caller@[2001:db8::1]>\r\n",
    ));
    let u = uri(&m);
    assert_eq!((u.host, u.port), (&b"2001:db8::10"[..], Some(5070)));
    let uri_addr = std::net::SocketAddr::new(host_ip(u.host), u.port.unwrap());
    assert_eq!(uri_addr.to_string(), "[2001:db8::10]:5070");
}

/// §4.5: `received` with and without brackets (RFC 3261's grammar has it bare, RFC 5118
/// asks receivers to take both); either way the same address comes out.
#[test]
fn s4_5_received_with_and_without_brackets() {
    for received in ["[2001:db8::9:255]", "2001:db8::9:255"] {
        let m = ok(&format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3-111\r\n\
             From: <sip:user@example.com>;tag=81x2\r\nTo: <sip:user@example.com>;tag=b27e\r\n\
             Call-ID: SSG9559905523997077@hlau_4100\r\nCSeq: 1 REGISTER\r\n\
             Content-Length: 0\r\n\r\n"
        ));
        let via = m.top_via();
        assert_eq!(via.host, b"2001:db8::9:1");
        assert_eq!(
            via.received_host(),
            Some(&b"2001:db8::9:255"[..]),
            "{received}"
        );
        assert_eq!(via.branch(), Some(&b"z9hG4bKas3-111"[..]));
        assert_eq!(
            host_ip(via.received_host().unwrap()),
            "2001:db8::9:255".parse::<IpAddr>().unwrap()
        );
    }
    // rport beside an IPv6 received, as a NAT-aware UA answers.
    let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9:1]:5060;rport=6050;received=2001:db8::9:255")
        .unwrap();
    assert_eq!((v.port, v.rport()), (Some(5060), Some(Some(6050))));
    assert_eq!(v.received_host(), Some(&b"2001:db8::9:255"[..]));
}

/// §4.6: an INVITE whose SDP names IPv6 (parsed as a body; the SDP itself is the media
/// crate's: `trunkgate-media` `sdp/tests.rs`).
#[test]
fn s4_6_ipv6_in_the_sdp_body() {
    let body = "v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\ns=-\r\n\
                c=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    let s = format!(
        "INVITE sip:user@[2001:db8::10] SIP/2.0\r\n\
         Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111\r\nMax-Forwards: 70\r\n\
         From: <sip:user@example.com>;tag=81x2\r\nTo: <sip:user@[2001:db8::10]>\r\n\
         Call-ID: SSG95523997077@hlau_4100\r\nCSeq: 1 INVITE\r\n\
         Contact: \"Caller\" <sip:caller@[2001:db8::20]>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let m = ok(&s);
    assert_eq!(m.body(), body.as_bytes());
    assert_eq!(uri(&m).host, b"2001:db8::10");
}

/// §4.7: a request that went through an IPv4 and an IPv6 proxy: Vias and Record-Routes of
/// both families, each read with its own host and port.
#[test]
fn s4_7_multiple_ip_families_in_headers() {
    let m = ok("BYE sip:user@host.example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\r\n\
         Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200\r\n\
         Record-Route: <sip:[2001:db8::9:1];lr>, <sip:192.0.2.1:5070;lr>\r\n\
         Route: <sip:[2001:db8::9:1]:5062;lr>\r\n\
         Max-Forwards: 70\r\nFrom: <sip:user@example.com>;tag=81x2\r\n\
         To: <sip:user@example.net>;tag=b27e\r\nCall-ID: 47233@host\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n");
    let vias: Vec<Via> = m
        .values(HeaderName::Via)
        .map(|v| Via::parse(v).unwrap())
        .collect();
    let sent_by: Vec<(&[u8], Option<u16>)> = vias.iter().map(|v| (v.host, v.port)).collect();
    assert_eq!(
        sent_by,
        [
            (&b"2001:db8::9:1"[..], Some(6050)),
            (&b"192.0.2.1"[..], None),
            (&b"2001:db8::9:255"[..], None),
        ]
    );
    assert_eq!(vias[2].received_host(), Some(&b"192.0.2.200"[..]));
    let rr: Vec<(Vec<u8>, Option<u16>, bool)> = m
        .values(HeaderName::RecordRoute)
        .map(|v| {
            let u = SipUri::parse(NameAddr::parse(v).unwrap().uri).unwrap();
            (u.host.to_vec(), u.port, u.is_loose_route())
        })
        .collect();
    assert_eq!(
        rr,
        [
            (b"2001:db8::9:1".to_vec(), None, true),
            (b"192.0.2.1".to_vec(), Some(5070), true)
        ]
    );
    let route = m.values(HeaderName::Route).next().unwrap();
    let r = SipUri::parse(NameAddr::parse(route).unwrap().uri).unwrap();
    assert_eq!((r.host, r.port), (&b"2001:db8::9:1"[..], Some(5062)));
}

/// §4.8: an SDP with an IPv4 and an IPv6 `c=` (session and media level) — carried as a body.
#[test]
fn s4_8_multiple_families_in_sdp() {
    let body = "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n\
                m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n\
                m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\n";
    let s = format!(
        "INVITE sip:user@[2001:db8::10] SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1\r\n\
         From: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(ok(&s).body(), body.as_bytes());
}

/// §4.9: IPv4-mapped IPv6 addresses in Via, Request-URI and Contact.
#[test]
fn s4_9_ipv4_mapped_ipv6() {
    let m = ok(&request(
        "INVITE sip:user@[::ffff:192.0.2.10]:5070 SIP/2.0",
        "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbzh",
        "Contact: \"T. desk phone\" <sip:ted@[::ffff:192.0.2.10]:19823>\r\n",
    ));
    let u = uri(&m);
    assert_eq!((u.host, u.port), (&b"::ffff:192.0.2.10"[..], Some(5070)));
    assert_eq!(
        host_ip(u.host).to_canonical(),
        "192.0.2.10".parse::<IpAddr>().unwrap()
    );
    let via = m.top_via();
    assert_eq!(
        (via.host, via.port),
        (&b"::ffff:192.0.2.10"[..], Some(19823))
    );
}

/// §4.10: addresses RFC 3261's IPv6address ABNF gets wrong (it refuses some valid forms):
/// every textual form of IPv6 is taken, with and without a port.
#[test]
fn s4_10_every_ipv6_text_form() {
    for host in [
        "2001:db8::9:1",
        "2001:db8:0:0:0:0:9:1",
        "2001:db8::",
        "::1",
        "::",
        "2001:DB8::A",
        "::ffff:192.0.2.1",
        "2001:db8:1:2:3:4:192.0.2.1",
        "fe80::1",
    ] {
        for port in [None, Some(5061)] {
            let hp = match port {
                Some(p) => format!("[{host}]:{p}"),
                None => format!("[{host}]"),
            };
            let via_text = format!("SIP/2.0/UDP {hp};branch=z9hG4bK1");
            let via = Via::parse(via_text.as_bytes()).unwrap_or_else(|e| panic!("{hp}: {e}"));
            assert_eq!((via.host, via.port), (host.as_bytes(), port), "{hp}");
            let uri_text = format!("sip:u@{hp};transport=udp");
            let u = SipUri::parse(uri_text.as_bytes()).unwrap_or_else(|e| panic!("{hp}: {e}"));
            assert_eq!((u.host, u.port), (host.as_bytes(), port), "{hp}");
            assert_eq!(u.transport(), Some(&b"udp"[..]));
            assert!(host_ip(u.host).is_ipv6(), "{hp}");
        }
    }
}
