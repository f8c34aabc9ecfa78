//! Tests of [`SipMessage::parse`] (beside it: `parse.rs`).
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::message::{NameAddr, SipUri, frame_len};

pub(crate) const INVITE: &[u8] =
    b"INVITE sip:+15551234567@carrier-a.example:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-524287-1---77ba0c2b4d9d1a8f;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@10.0.0.5:5060;transport=udp>\r\n\
To: <sip:+15551234567@carrier-a.example>\r\n\
From: \"Alice 1001\" <sip:1001@pbx.example>;tag=8c4b1e2f\r\n\
Call-ID: 7f3e9a1c-2b4d-4e8f-9a0b-1c2d3e4f5a6b@10.0.0.5\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePBX 16.4.1\r\n\
Allow-Events: talk, hold, conference\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Record-Route: <sip:10.0.0.2;lr;ftag=8c4b1e2f>\r\n\
P-Asserted-Identity: \"Alice 1001\" <sip:+15550001001@pbx.example>\r\n\
Accept: application/sdp, application/dtmf-relay\r\n\
Content-Length: 304\r\n\
\r\n\
v=0\r\n\
o=- 3920181736 3920181736 IN IP4 10.0.0.5\r\n\
s=ExamplePBX\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
a=rtcp:16385\r\n\
a=label:1\r\n";

fn p(s: &[u8]) -> Result<SipMessage, ParseError> {
    SipMessage::parse(Bytes::copy_from_slice(s), &Limits::default())
}

fn ok(s: &[u8]) -> SipMessage {
    match p(s) {
        Ok(m) => m,
        Err(e) => panic!("{e}: {}", String::from_utf8_lossy(s)),
    }
}

fn minimal(extra: &str) -> String {
    format!(
        "OPTIONS sip:b@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
             From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>\r\nCall-ID: c1\r\n\
             CSeq: 1 OPTIONS\r\n{extra}\r\n"
    )
}

#[test]
fn canonical_invite_with_sdp() {
    let m = ok(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.method_token(), Some(&b"INVITE"[..]));
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:+15551234567@carrier-a.example:5060;user=phone"[..])
    );
    assert_eq!(m.status(), None);
    assert_eq!(m.reason(), None);
    assert_eq!(m.headers().len(), 17);
    assert_eq!(
        m.call_id(),
        b"7f3e9a1c-2b4d-4e8f-9a0b-1c2d3e4f5a6b@10.0.0.5"
    );
    assert_eq!(m.cseq(), (2, Method::Invite));
    assert_eq!(m.cseq_method_token(), b"INVITE");
    assert_eq!(m.from_tag(), Some(&b"8c4b1e2f"[..]));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.via_count(), 1);
    let v = m.top_via();
    assert_eq!(v.host, b"10.0.0.5");
    assert_eq!(
        v.branch(),
        Some(&b"z9hG4bK-524287-1---77ba0c2b4d9d1a8f"[..])
    );
    assert_eq!(m.body().len(), 304);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert!(m.body().ends_with(b"a=label:1\r\n"));
    assert_eq!(m.content_length(), Some(304));
    assert_eq!(m.message_len(), INVITE.len());
    assert_eq!(
        m.first(HeaderName::ContentType),
        Some(&b"application/sdp"[..])
    );
    assert_eq!(
        m.first_named(b"session-expires"),
        Some(&b"1800;refresher=uac"[..])
    );
    assert_eq!(m.first_named(b"x"), Some(&b"1800;refresher=uac"[..]));
    assert_eq!(m.first_named(b"u"), Some(&b"talk, hold, conference"[..]));
    assert_eq!(
        m.first_named(b"CONTENT-type"),
        Some(&b"application/sdp"[..])
    );
    assert_eq!(m.first_named(b"X-None"), None);
    let h = m.headers()[0];
    assert_eq!(m.name_of(&h), b"Via");
    assert!(m.raw_line(&h).ends_with(b"rport\r\n"));
    assert_eq!(
        m.headers_start(),
        INVITE.iter().position(|&c| c == b'\n').unwrap() + 1
    );
    assert_eq!(m.slice(0..6), Bytes::from_static(b"INVITE"));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..2;
    assert_eq!(m.slice(backwards), Bytes::new());
    assert_eq!(m.slice(0..usize::MAX), Bytes::new());
    let sp = StartLine::Request {
        method: Method::Invite,
        method_token: 0..6,
        uri: 7..57,
    };
    assert_eq!(m.start_line(), &sp);
}

#[test]
fn compact_and_mixed_case_names() {
    let s = b"BYE sip:b@b.example SIP/2.0\r\nv: SIP/2.0/TCP a.example;branch=z9hG4bK2\r\n\
f: <sip:a@a.example>;tag=1\r\nt: <sip:b@b.example>;tag=2\r\ni: abc@a\r\ncseq: 5 BYE\r\n\
mAX-forwards: 9\r\nl: 0\r\nm: <sip:a@10.0.0.1>\r\nc: text/plain\r\nk: timer\r\n\r\n";
    let m = ok(s);
    assert_eq!(m.call_id(), b"abc@a");
    assert_eq!(m.cseq(), (5, Method::Bye));
    assert_eq!(m.to_tag(), Some(&b"2"[..]));
    assert_eq!(m.from_tag(), Some(&b"1"[..]));
    assert_eq!(m.max_forwards(), Some(9));
    assert_eq!(m.top_via().transport, b"TCP");
    assert_eq!(m.first(HeaderName::Contact), Some(&b"<sip:a@10.0.0.1>"[..]));
    assert_eq!(m.first(HeaderName::Supported), Some(&b"timer"[..]));
    assert_eq!(m.content_length(), Some(0));
    let s2 = b"bye sip:b@b SIP/2.0\r\nVIA: SIP/2.0/UDP a\r\nFROM: <sip:a@a>;TAG=x\r\nTo: <sip:b@b>\r\nCALL-ID: 1\r\nCSEQ: 1 bye\r\n\r\n";
    let m = ok(s2);
    assert_eq!(m.method(), Some(Method::Other));
    assert_eq!(m.method_token(), Some(&b"bye"[..]));
    assert_eq!(m.from_tag(), Some(&b"x"[..]));
    assert_eq!(m.cseq().1, Method::Other);
}

#[test]
fn folding_and_space_before_colon() {
    let s = b"INVITE sip:b@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1,\r\n  SIP/2.0/UDP\r\n\tc.example;branch=z9hG4bK0\r\n\
From  : <sip:a@a.example>\r\n ;tag=1\r\n\
To\t: <sip:b@b.example>\r\nCall-ID:\r\n  folded-id\r\nCSeq  : 1 INVITE\r\nSubject: a\r\n b\r\n\r\n";
    let m = ok(s);
    assert_eq!(m.from_tag(), Some(&b"1"[..]));
    assert_eq!(m.call_id(), b"folded-id");
    assert_eq!(m.cseq(), (1, Method::Invite));
    let vias: Vec<_> = m.values(HeaderName::Via).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(m.via_count(), 2);
    assert_eq!(Via::parse(vias[1]).unwrap().host, b"c.example");
    assert_eq!(m.first_named(b"subject"), Some(&b"a\r\n b"[..]));
    assert_eq!(m.first_named(b"s"), Some(&b"a\r\n b"[..]));
    assert_eq!(m.name_of(&m.headers()[1]), b"From");
    assert_eq!(m.headers().len(), 6);
}

#[test]
fn comma_joined_via_and_route() {
    let s = minimal(
        "Via: SIP/2.0/UDP p2.example;branch=z9hG4bK2, SIP/2.0/UDP p3.example;branch=z9hG4bK3\r\n\
             Route: <sip:p1.example;lr>, <sip:p2.example;lr;x=a,b>\r\nRoute: <sip:p3.example;lr>\r\n\
             Record-Route: <sip:rr1;lr>,<sip:rr2;lr>\r\n\
             Contact: \"Doe, J\" <sip:j@h>;expires=60, <sip:k@h>\r\n",
    );
    let m = ok(s.as_bytes());
    assert_eq!(m.via_count(), 3);
    assert_eq!(m.top_via().host, b"a.example");
    let routes: Vec<_> = m.values(HeaderName::Route).collect();
    assert_eq!(
        routes,
        vec![
            &b"<sip:p1.example;lr>"[..],
            b"<sip:p2.example;lr;x=a,b>",
            b"<sip:p3.example;lr>"
        ]
    );
    assert_eq!(m.values(HeaderName::RecordRoute).count(), 2);
    let contacts: Vec<_> = m.values(HeaderName::Contact).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        NameAddr::parse(contacts[0]).unwrap().display,
        Some(&b"Doe, J"[..])
    );
    assert_eq!(m.values(HeaderName::ProxyRequire).count(), 0);
}

#[test]
fn ipv6_everywhere() {
    let s = b"INVITE sip:bob@[2001:db8::1]:5080;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK1;received=[2001:db8::9];rport=5061\r\n\
From: <sip:a@[2001:db8::5]>;tag=1\r\nTo: <sip:bob@[2001:db8::1]>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    let m = ok(s);
    let u = SipUri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(u.host, b"2001:db8::1");
    assert_eq!(u.port, Some(5080));
    let v = m.top_via();
    assert_eq!(v.host, b"2001:db8::5");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.received_host(), Some(&b"2001:db8::9"[..]));
    assert_eq!(v.rport(), Some(Some(5061)));
}

#[test]
fn content_length_cases() {
    // Shorter than the data: the rest is ignored.
    let s = minimal("Content-Length: 4\r\n") + "abcdEXTRA";
    let m = ok(s.as_bytes());
    assert_eq!(m.body(), b"abcd");
    assert_eq!(m.message_len(), s.len() - 5);
    // Longer than the data.
    let s = minimal("Content-Length: 40\r\n") + "abcd";
    assert_eq!(p(s.as_bytes()).unwrap_err(), ParseError::BadContentLength);
    // Missing: to the end.
    let s = minimal("") + "whole body";
    assert_eq!(ok(s.as_bytes()).body(), b"whole body");
    assert_eq!(ok(s.as_bytes()).content_length(), None);
    // Two, even when they agree (RFC 3261 allows one; RFC 4475 §3.3.9).
    let s = minimal("Content-Length: 2\r\nl: 2\r\n") + "ab";
    assert_eq!(
        p(s.as_bytes()).unwrap_err(),
        ParseError::DuplicateHeader("Content-Length")
    );
    let s = minimal("Content-Length: 2\r\nl: 3\r\n") + "abc";
    assert_eq!(
        p(s.as_bytes()).unwrap_err(),
        ParseError::DuplicateHeader("Content-Length")
    );
    // Malformed and huge.
    for v in ["x", "-1", "1 2", "99999999999999999999999999", ""] {
        let s = minimal(&format!("Content-Length: {v}\r\n"));
        assert_eq!(
            p(s.as_bytes()).unwrap_err(),
            ParseError::BadHeaderValue("Content-Length"),
            "{v}"
        );
    }
}

#[test]
fn bare_lf_and_leading_crlf_and_missing_blank_line() {
    let s = b"\r\n\r\nSIP/2.0 180 Ringing\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=1\nTo: <sip:b@b>;tag=2\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 3\n\nabc";
    let m = ok(s);
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.reason(), Some(&b"Ringing"[..]));
    assert_eq!(m.start_offset(), 4);
    assert_eq!(m.body(), b"abc");
    assert_eq!(m.to_tag(), Some(&b"2"[..]));
    let s = b"OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
    let m = ok(s);
    assert_eq!(m.body(), b"");
    assert_eq!(m.body_start(), s.len());
}

#[test]
fn responses() {
    let s = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
To: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\r\n";
    let m = ok(s);
    assert!(!m.is_request());
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.method(), None);
    assert_eq!(m.method_token(), None);
    assert_eq!(m.request_uri(), None);
    assert_eq!(m.cseq(), (7, Method::Invite));
    let s2 = b"SIP/2.0 699\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 7 FOO\r\n\r\n";
    let m = ok(s2);
    assert_eq!((m.status(), m.reason()), (Some(699), Some(&b""[..])));
    assert_eq!(m.cseq_method_token(), b"FOO");
    let s3 = b"SIP/2.0 404 Not \xc3\xa9 Found\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 7 BYE\r\n\r\n";
    assert_eq!(ok(s3).reason(), Some(&b"Not \xc3\xa9 Found"[..]));
}

#[test]
fn every_error_variant() {
    use ParseError::*;
    let lim = Limits::default();
    let e = |s: &[u8]| p(s).unwrap_err();
    assert_eq!(e(b""), Empty);
    assert_eq!(e(b"\r\n\r\n"), Empty);
    let big = vec![b'a'; 70_000];
    assert_eq!(e(&big), TooLarge(70_000));
    for bad in [
        &b"INVITE\r\n\r\n"[..],
        b"INVITE sip:a@b\r\n\r\n",
        b"INVITE  SIP/2.0\r\n\r\n",
        b"INV(ITE sip:a@b SIP/2.0\r\n\r\n",
        b"SIP/2.0 99 Too low\r\n\r\n",
        b"SIP/2.0 700 Too high\r\n\r\n",
        b"SIP/2.0 2x0 OK\r\n\r\n",
        b"SIP/2.0 200OK\r\n\r\n",
        b"SIP/2.0 20\r\n\r\n",
        b"SIP/2.0 200 O\x00K\r\n\r\n",
        b"no line end",
    ] {
        assert_eq!(e(bad), BadStartLine, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(e(b"INVITE sip:a@b SIP/3.0\r\n\r\n"), BadVersion);
    assert_eq!(e(b"INVITE sip:a@b SIP/2.1\r\n\r\n"), BadVersion);
    assert_eq!(e(b"INVITE sip:a@b SIP/2\r\n\r\n"), BadStartLine);
    assert_eq!(e(b"INVITE sip:a@b HTTP/1.1\r\n\r\n"), BadStartLine);
    assert_eq!(e(b"INVITE sip:\xffa@b SIP/2.0\r\n\r\n"), BadUri);
    assert_eq!(e(b"INVITE nocolon SIP/2.0\r\n\r\n"), BadUri);
    assert_eq!(e(b"INV ITE sip:a@b SIP/2.0\r\n\r\n"), BadUri);
    assert_eq!(e(b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n"), BadUri);
    let many = minimal(&"X-A: 1\r\n".repeat(600));
    assert_eq!(e(many.as_bytes()), TooManyHeaders);
    let vias = minimal(&"Via: SIP/2.0/UDP x, SIP/2.0/UDP y\r\n".repeat(70));
    assert_eq!(e(vias.as_bytes()), TooManyVias);
    let tight = Limits { max_via: 1, ..lim };
    let two = minimal("Via: SIP/2.0/UDP x\r\n");
    assert_eq!(
        SipMessage::parse(Bytes::from(two), &tight).unwrap_err(),
        TooManyVias
    );
    assert_eq!(e(minimal("no colon here\r\n").as_bytes()), BadHeader(161));
    assert!(matches!(
        e(minimal("Bad Name: x\r\n").as_bytes()),
        BadHeader(_)
    ));
    assert!(matches!(e(minimal(": x\r\n").as_bytes()), BadHeader(_)));
    assert!(matches!(
        e(minimal("X-A: a\x00b\r\n").as_bytes()),
        NulByte(_)
    ));
    assert!(matches!(
        e(b"OPTIONS sip:a SIP/2.0\r\n folded-first: x\r\n\r\n"),
        BadHeader(_)
    ));
    assert!(matches!(
        e(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP a"),
        BadHeader(_)
    ));
    let drop = |name: &str| {
        minimal("")
            .lines()
            .filter(|l| !l.starts_with(name))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    assert_eq!(e(drop("Via").as_bytes()), MissingHeader("Via"));
    assert_eq!(e(drop("From").as_bytes()), MissingHeader("From"));
    assert_eq!(e(drop("To").as_bytes()), MissingHeader("To"));
    assert_eq!(e(drop("Call-ID").as_bytes()), MissingHeader("Call-ID"));
    assert_eq!(e(drop("CSeq").as_bytes()), MissingHeader("CSeq"));
    let rep = |from: &str, to: &str| minimal("").replace(from, to);
    assert_eq!(
        e(rep("SIP/2.0/UDP a.example", "SIP/2.0/UDP").as_bytes()),
        BadHeaderValue("Via")
    );
    assert_eq!(
        e(rep("Via: SIP/2.0/UDP a.example;branch=z9hG4bK1", "Via: ,").as_bytes()),
        BadHeaderValue("Via")
    );
    assert_eq!(
        e(rep("<sip:a@a.example>", "<sip:a@a.example").as_bytes()),
        BadHeaderValue("From")
    );
    assert_eq!(
        e(rep("To: <sip:b@b.example>", "To: junk").as_bytes()),
        BadHeaderValue("To")
    );
    assert_eq!(
        e(rep("Call-ID: c1", "Call-ID: ").as_bytes()),
        BadHeaderValue("Call-ID")
    );
    assert_eq!(
        e(rep("Call-ID: c1", "Call-ID: c 1").as_bytes()),
        BadHeaderValue("Call-ID")
    );
    for cseq in [
        "x OPTIONS",
        "1",
        "1OPTIONS",
        "99999999999 OPTIONS",
        "1 OPTIONS extra",
        "-1 OPTIONS",
    ] {
        assert_eq!(
            e(rep("1 OPTIONS", cseq).as_bytes()),
            BadHeaderValue("CSeq"),
            "{cseq}"
        );
    }
    assert_eq!(
        e(rep("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").as_bytes()),
        CSeqMismatch
    );
    assert_eq!(
        e(rep("CSeq: 1 OPTIONS", "CSeq: 1 options").as_bytes()),
        CSeqMismatch
    );
    assert_eq!(
        e(minimal("Max-Forwards: ten\r\n").as_bytes()),
        BadHeaderValue("Max-Forwards")
    );
    assert_eq!(
        e(minimal("Max-Forwards: 4294967296\r\n").as_bytes()),
        BadHeaderValue("Max-Forwards")
    );
    assert_eq!(
        e((minimal("Content-Length: 10\r\n") + "x").as_bytes()),
        BadContentLength
    );
    // ACK and CANCEL carry their own method in CSeq.
    let ack = b"ACK sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(e(ack), CSeqMismatch);
    let ack = b"ACK sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
    assert_eq!(ok(ack).cseq(), (1, Method::Ack));
}

#[test]
fn other_request_uri_schemes_pass() {
    let s = minimal("").replace("OPTIONS sip:b@b.example", "OPTIONS urn:service:sos");
    assert_eq!(
        ok(s.as_bytes()).request_uri(),
        Some(&b"urn:service:sos"[..])
    );
    let s = minimal("").replace("OPTIONS sip:b@b.example", "OPTIONS tel:+15551234");
    assert!(p(s.as_bytes()).is_ok());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn check(data: &[u8]) {
        let lim = Limits::default();
        let _ = frame_len(data, &lim);
        let _ = skip_keepalive(data);
        if let Ok(m) = SipMessage::parse(Bytes::copy_from_slice(data), &lim) {
            let _ = (
                m.call_id(),
                m.cseq(),
                m.from_tag(),
                m.to_tag(),
                m.top_via(),
                m.body(),
            );
            for h in m.headers() {
                let _ = (m.value(h), m.name_of(h));
            }
            for v in m.values(HeaderName::Via) {
                let _ = Via::parse(v);
            }
            for v in m.values(HeaderName::Route) {
                if let Ok(n) = NameAddr::parse(v) {
                    let _ = n.sip_uri();
                }
            }
            let mut out = bytes::BytesMut::new();
            crate::message::rewrite::rewrite(
                &m,
                &crate::message::rewrite::Edits {
                    prepend: &[b"Via: SIP/2.0/UDP x;branch=z9hG4bKp"],
                    pop_first_value: &[HeaderName::Via, HeaderName::Route],
                    max_forwards: Some(1),
                    ..Default::default()
                },
                &mut out,
            );
            let again = SipMessage::parse(out.freeze(), &lim);
            assert!(
                again.is_ok() || m.via_count() == 1 || m.max_forwards().is_none(),
                "{again:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            check(&data);
        }

        #[test]
        fn mutated_invite_never_panics(
            edits in proptest::collection::vec((0usize..2000, any::<u8>(), 0u8..4), 1..12),
            cut in 0usize..2000,
        ) {
            let mut data = INVITE.to_vec();
            for (pos, byte, op) in edits {
                let pos = pos % (data.len() + 1);
                match op {
                    0 => if pos < data.len() { data[pos] = byte },
                    1 => data.insert(pos, byte),
                    2 => if pos < data.len() { data.remove(pos); },
                    _ => data.insert(pos, [b'\r', b'\n', b' ', b':', b',', b';', b'<', b'"'][byte as usize % 8]),
                }
            }
            check(&data);
            data.truncate(cut.min(data.len()));
            check(&data);
        }
    }
}

#[test]
fn answerable_reading_of_refused_requests() {
    let a = |s: &[u8]| SipMessage::parse_answerable(Bytes::copy_from_slice(s));
    // Duplicate Call-ID: refused by parse, readable for the answer (first values used).
    let dup = minimal("Call-ID: c2\r\n");
    assert_eq!(
        p(dup.as_bytes()).unwrap_err(),
        ParseError::DuplicateHeader("Call-ID")
    );
    let m = a(dup.as_bytes()).unwrap();
    assert_eq!(m.call_id(), b"c1");
    assert_eq!(m.cseq(), (1, Method::Options));
    assert_eq!(m.from_tag(), Some(&b"1"[..]));
    assert_eq!(m.top_via().branch(), Some(&b"z9hG4bK1"[..]));
    assert_eq!(m.method(), Some(Method::Options));
    // A line that is not a header is left out; its folds with it.
    let s = minimal("Bad line\r\n folded\r\nX-A: 1\r\n");
    let m = a(s.as_bytes()).unwrap();
    assert_eq!(m.first_named(b"x-a"), Some(&b"1"[..]));
    assert_eq!(m.headers().len(), 6);
    // A last line without LF keeps its whole value.
    let m =
        a(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: abc").unwrap();
    assert_eq!(m.call_id(), b"abc");
    // A malformed Via that still names protocol and sent-by can carry the answer.
    let s = minimal("").replace(";branch=z9hG4bK1", ";;branch=z9hG4bK1");
    assert_eq!(
        p(s.as_bytes()).unwrap_err(),
        ParseError::BadHeaderValue("Via")
    );
    assert!(a(s.as_bytes()).is_some());
    // Never: responses, ACKs (by method or CSeq), no Via, a Via that is not one, empty.
    let ack = minimal("").replace("OPTIONS sip:", "ACK sip:");
    let cseq_ack = minimal("").replace("CSeq: 1 OPTIONS", "CSeq: 1 ACK");
    let no_via = minimal("").replace("Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n", "");
    let bad_via = minimal("").replace("SIP/2.0/UDP a.example;branch=z9hG4bK1", "junk");
    for none in [
        &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x, y\r\n\r\n"[..],
        b"SIP/2.0 2x0 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n",
        ack.as_bytes(),
        cseq_ack.as_bytes(),
        no_via.as_bytes(),
        bad_via.as_bytes(),
        b"",
        b"\r\n\r\n",
        b"no line end",
    ] {
        assert!(a(none).is_none(), "{}", String::from_utf8_lossy(none));
    }
}

#[test]
fn the_rfc_4475_valid_messages_parse() {
    // wsinv (RFC 4475 §3.1.1.1), with its body shortened.
    let wsinv = b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n\
TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n\
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\n\
MaX-fOrWaRdS: 0068\r\nCall-ID: wsinv.ndaksdj@192.0.2.1\r\nContent-Length   : 0\r\n\
cseq: 0009\r\n  INVITE\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n\
s :\r\nNewFangledHeader:   newfangled value\r\n continued newfangled value\r\n\
UnknownHeaderWithUnusualValue: ;;,,;;,;\r\nContent-Type: application/sdp\r\n\
Route:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n\
v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n \
SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\n\
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  \
secondparam ; q = 0.33\r\n\r\n";
    let m = ok(wsinv);
    assert_eq!(m.via_count(), 3);
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq(), (9, Method::Invite));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    // esc02, lwsdisp, semiuri, transports, escnull, inv2543 (headers that matter).
    for s in [
        &b"RE%47IST%45R sip:registrar.example.com SIP/2.0\r\nTo: \"%Z%45\" <sip:resource@example.com>\r\nFrom: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23\r\nCall-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\r\nVia: SIP/2.0/TCP host.example.com;branch=z9hG4bK209323ee\r\nCSeq: 29344 RE%47IST%45R\r\nMax-Forwards: 70\r\nContact: <sip:alias1@host1.example.com>\r\nC%6Fntact: <sip:alias2@host2.example.com>\r\nl: 0\r\n\r\n"[..],
        b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: caller<sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID: lwsdisp.1234abcd@funky.example.com\r\nCSeq: 60 OPTIONS\r\nVia: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n",
        b"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\nTo: sip:j_user@example.com\r\nFrom: sip:caller@example.org;tag=33242\r\nMax-Forwards: 3\r\nCall-ID: semiuri.0ha0isndaksdj\r\nCSeq: 8 OPTIONS\r\nAccept: application/sdp, application/pkcs7-mime,\r\n        multipart/mixed, multipart/signed,\r\n        message/sip, message/sipfrag\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n",
        b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: <sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID:  transports.kijh4akdnaqjkwendsasfdj\r\nAccept: application/sdp\r\nCSeq: 60 OPTIONS\r\nVia: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\r\nVia: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\r\nVia: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\r\nVia: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\r\nVia: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\r\nl: 0\r\n\r\n",
        b"REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\nFrom: sip:null-%00-null@example.com;tag=839923423\r\nMax-Forwards: 70\r\nCall-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\nCSeq: 14398234 REGISTER\r\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\nContact: <sip:%00@host5.example.com>\r\nContact: <sip:%00%00@host5.example.com>\r\nL:0\r\n\r\n",
        b"INVITE sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP iftgw.example.com\r\nFrom: <sip:+13035551111@ift.client.example.net;user=phone>\r\nRecord-Route: <sip:UserB@example.com;maddr=ss1.example.com>\r\nTo: sip:+16505552222@ss1.example.net;user=phone\r\nCall-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 56 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n",
        b"REGISTER sip:[2001:db8::10]:5070 SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:user@example.com;tag=81x2\r\nVia: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\r\nCall-ID: SSG9559905523997077@hlau_4100\r\nMax-Forwards: 70\r\nContact: \"Caller\" <sip:caller@[2001:db8::1]>\r\nCSeq: 98176 REGISTER\r\nContent-Length: 0\r\n\r\n",
    ] {
        ok(s);
    }
}
