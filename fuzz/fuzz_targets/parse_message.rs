//! Parse arbitrary bytes as one SIP datagram; on success exercise every accessor, the lazy
//! parsers (Via, URI, name-addr) on the headers that carry them, and the rewriters.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use trunkgate_sip::message::rewrite::{Edits, ack_or_cancel, response, rewrite};
use trunkgate_sip::message::{
    HeaderName, Limits, Method, NameAddr, SipMessage, SipUri, Via, frame_len, split_values,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = frame_len(data, &limits);
    let Ok(m) = SipMessage::parse(Bytes::copy_from_slice(data), &limits) else {
        return;
    };

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
});
