//! Parse arbitrary bytes as one SIP datagram; on success check the conformance rules hold
//! (issue 11: single-value headers once, every Via and name-addr well-formed, Max-Forwards
//! 0–255, CSeq method = request method, no `?headers` in a sip Request-URI) and exercise
//! every accessor, the lazy parsers and the rewriters; on failure check the refusal: its
//! answer, and the loose reading that addresses it (never for a response or an ACK).

use bytes::{Bytes, BytesMut};
use trunkgate_sip::message::rewrite::{Edits, ack_or_cancel, response, rewrite};
use trunkgate_sip::message::{
    HeaderName, Limits, Method, NameAddr, ParseError, SipMessage, SipUri, Via, frame_len,
    split_values,
};

/// A refused message: its answer is a 4xx/5xx, and only a request that is not an ACK and
/// has a usable Via can be answered.
fn refused(data: &[u8], error: &ParseError) {
    if let Some((code, reason)) = error.response() {
        assert!(
            (400..=599).contains(&code) && !reason.is_empty(),
            "{error:?}"
        );
    }
    let Some(m) = SipMessage::parse_answerable(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(m.is_request());
    assert_ne!(m.method(), Some(Method::Ack));
    assert!(Via::answerable(m.top_via_raw()));
    let _ = (
        m.call_id(),
        m.from_tag(),
        m.to_tag(),
        m.cseq(),
        m.top_via().branch(),
    );
    let mut out = BytesMut::new();
    response(&m, 400, "Malformed Via", Some(b"t1"), &[], &mut out);
    assert!(out.starts_with(b"SIP/2.0 400 Malformed Via\r\n"));
    assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
}

/// An accepted message obeys the conformance rules.
fn accepted(m: &SipMessage) {
    for name in [
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
        HeaderName::ContentType,
    ] {
        let lines = m.headers().iter().filter(|h| h.name == name).count();
        assert!(lines <= 1, "{} {name:?} lines accepted", lines);
    }
    for v in m.values(HeaderName::Via) {
        assert!(Via::parse(v).is_ok(), "a malformed Via value accepted");
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::PAssertedIdentity,
    ] {
        for v in m.values(name) {
            assert!(NameAddr::parse(v).is_ok(), "a malformed {name:?} accepted");
        }
    }
    assert!(m.max_forwards().is_none_or(|n| n <= 255));
    if let Some(token) = m.method_token() {
        assert_eq!(token, m.cseq_method_token(), "CSeq method differs");
        let uri = m.request_uri().unwrap_or_default();
        if let Ok(u) = SipUri::parse(uri) {
            assert!(
                u.is_tel() || u.headers.is_empty(),
                "?headers in a Request-URI"
            );
        }
    }
    if let Some(n) = m.content_length() {
        assert_eq!(m.body().len(), n);
    }
}

/// The check, on one input: panics on a violated invariant.
pub fn check(data: &[u8]) {
    let limits = Limits::default();
    let _ = frame_len(data, &limits);
    let m = match SipMessage::parse(Bytes::copy_from_slice(data), &limits) {
        Ok(m) => m,
        Err(error) => {
            refused(data, &error);
            return;
        }
    };
    accepted(&m);

    let _ = (
        m.start_line(),
        m.is_request(),
        m.method(),
        m.method_token(),
        m.status(),
        m.reason(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.cseq_method_token(),
        m.from_tag(),
        m.to_tag(),
    );
    let _ = (
        m.max_forwards(),
        m.content_length(),
        m.via_count(),
        m.body(),
        m.message_len(),
    );
    let _ = (
        m.headers_start(),
        m.body_start(),
        m.start_offset(),
        m.top_via_raw(),
    );
    let v = m.top_via();
    let _ = (
        v.branch(),
        v.received(),
        v.received_host(),
        v.rport(),
        v.param(b"maddr"),
    );
    if let Some(uri) = m.request_uri() {
        if let Ok(u) = SipUri::parse(uri) {
            let _ = (
                u.param(b"lr"),
                u.transport(),
                u.is_ipv6(),
                u.is_sips(),
                u.is_tel(),
            );
        }
    }
    for h in m.headers() {
        let _ = (m.value(h), m.name_of(h), m.raw_line(h));
        for part in split_values(m.value(h)) {
            let _ = NameAddr::parse(part);
        }
    }
    for v in m.values(HeaderName::Via) {
        if let Ok(v) = Via::parse(v) {
            let _ = (v.branch(), v.rport(), v.received_host());
        }
    }
    for name in [
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Contact,
    ] {
        for v in m.values(name) {
            if let Ok(na) = NameAddr::parse(v) {
                let _ = (na.tag(), na.param(b"expires"));
                if let Ok(u) = na.sip_uri() {
                    let _ = (u.param(b"lr"), u.user, u.host, u.port);
                }
            }
        }
    }
    for name in [HeaderName::From, HeaderName::To] {
        if let Some(v) = m.first(name) {
            let na = NameAddr::parse(v);
            assert!(na.is_ok(), "From/To validated at parse time");
        }
    }
    let _ = m.first_named(b"x");
    let _ = m.first_named(b"Session-Expires");

    let lim_big = Limits {
        max_message_size: usize::MAX >> 1,
        ..limits
    };
    let mut out = BytesMut::new();
    let via: &[u8] = b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfuzz";
    let edits = Edits {
        request_uri: Some(b"sip:fuzz@192.0.2.2"),
        prepend: &[via],
        pop_first_value: &[HeaderName::Route, HeaderName::Via],
        max_forwards: Some(m.max_forwards().unwrap_or(70).saturating_sub(1)),
        body: (data.len() % 2 == 0).then_some(&b"v=0\r\n"[..]),
        cseq: (data.len() % 3 == 0).then_some(7),
        drop_named: &[b"Proxy-Authorization"],
    };
    rewrite(&m, &edits, &mut out);
    // A forwarded message keeps one Content-Length equal to its body, and still frames.
    let out = out.freeze();
    if let Ok(again) = SipMessage::parse(out.clone(), &lim_big) {
        assert_eq!(again.content_length(), Some(again.body().len()));
    }
    let _ = frame_len(&out, &lim_big);

    let mut out = BytesMut::new();
    response(
        &m,
        486,
        "Busy Here",
        Some(b"t1"),
        &[b"Retry-After: 5"],
        &mut out,
    );
    let mut out = BytesMut::new();
    ack_or_cancel(&m, Method::Cancel, None, &mut out);
    ack_or_cancel(&m, Method::Ack, Some(&m), &mut out);
}
