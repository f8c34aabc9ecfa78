//! Building outgoing messages by splicing the received buffer: forwarded requests and
//! responses, and the few messages the proxy writes itself (responses, ACK, CANCEL).
//! Output always carries a correct `Content-Length` (required on streams).

use super::header::split_values;
use super::lex::put_u64;
use super::{HeaderEntry, HeaderName, Method, NameAddr, SipMessage, StartLine};
use bytes::BytesMut;

/// Edits applied in one pass when forwarding.
#[derive(Debug, Default, Clone, Copy)]
pub struct Edits<'a> {
    /// Replace the Request-URI (requests only).
    pub request_uri: Option<&'a [u8]>,
    /// Whole header lines without CRLF (`b"Via: SIP/2.0/UDP ..."`), inserted right after the
    /// start line, in this order.
    pub prepend: &'a [&'a [u8]],
    /// For each name: remove the first value of the first line with that name (the line
    /// goes if it held only that value). Used to pop our Via from responses and our Route
    /// from requests.
    pub pop_first_value: &'a [HeaderName],
    /// Replace Max-Forwards with this value, or add the header if absent.
    pub max_forwards: Option<u32>,
    /// Replace the body.
    pub body: Option<&'a [u8]>,
    /// Replace the CSeq number (the method is kept): per-leg CSeq mapping.
    pub cseq: Option<u32>,
    /// Drop every line of these header names (outside [`HeaderName`], matched
    /// case-insensitively): a previous digest answer.
    pub drop_named: &'a [&'a [u8]],
}

const CRLF: &[u8] = b"\r\n";

fn line<'m>(msg: &'m SipMessage, h: &HeaderEntry) -> &'m [u8] {
    msg.as_bytes().get(h.line_range()).unwrap_or(&[])
}

fn put_content_length(out: &mut BytesMut, n: usize) {
    out.extend_from_slice(b"Content-Length: ");
    put_u64(out, n as u64);
    out.extend_from_slice(CRLF);
}

fn put_max_forwards(out: &mut BytesMut, n: u32) {
    out.extend_from_slice(b"Max-Forwards: ");
    put_u64(out, u64::from(n));
    out.extend_from_slice(CRLF);
}

/// Write `msg` with `edits` applied into `out` (appending). Content-Length is rewritten
/// (or added) to the length of the body written; all other lines are copied byte for byte.
///
/// Details: the rewritten Content-Length takes the place of the first received one (others
/// are dropped) or goes last when there was none; a replaced Max-Forwards takes the place of
/// the first received one (others are dropped), an added one follows the prepended lines;
/// the start line is copied as received unless the Request-URI is replaced (then it is
/// written `METHOD SP uri SP SIP/2.0 CRLF`); the blank line is written as CRLF. A name
/// listed in `pop_first_value` N times pops N values (across lines when a line runs out). `HeaderName::Other` never matches.
pub fn rewrite(msg: &SipMessage, edits: &Edits<'_>, out: &mut BytesMut) {
    let b = msg.as_bytes();
    let body = edits.body.unwrap_or_else(|| msg.body());
    let extra: usize = edits.prepend.iter().map(|l| l.len() + 2).sum();
    out.reserve(
        msg.body_start() + extra + body.len() + 64 + edits.request_uri.map_or(0, <[u8]>::len),
    );

    // Start line.
    match (msg.start_line(), edits.request_uri) {
        (StartLine::Request { method_token, .. }, Some(uri)) => {
            out.extend_from_slice(b.get(method_token.clone()).unwrap_or(&[]));
            out.extend_from_slice(b" ");
            out.extend_from_slice(uri);
            out.extend_from_slice(b" SIP/2.0\r\n");
        }
        _ => out.extend_from_slice(
            b.get(msg.start_offset()..msg.headers_start())
                .unwrap_or(&[]),
        ),
    }
    for l in edits.prepend {
        out.extend_from_slice(l);
        out.extend_from_slice(CRLF);
    }
    let has_mf = msg.max_forwards().is_some();
    if let (Some(mf), false) = (edits.max_forwards, has_mf) {
        put_max_forwards(out, mf);
    }

    // Values still to pop, per HeaderName discriminant (a name listed N times pops N values,
    // across lines if need be: two Routes of ours may be one line or two).
    let mut to_pop = [0u8; 32];
    for name in edits.pop_first_value {
        if *name != HeaderName::Other {
            if let Some(n) = to_pop.get_mut(*name as usize) {
                *n = n.saturating_add(1);
            }
        }
    }
    let mut wrote_mf = false;
    let mut wrote_cl = false;
    for h in msg.headers() {
        match h.name {
            HeaderName::ContentLength => {
                if !wrote_cl {
                    put_content_length(out, body.len());
                    wrote_cl = true;
                }
                continue;
            }
            HeaderName::CSeq if edits.cseq.is_some() => {
                if let Some(n) = edits.cseq {
                    out.extend_from_slice(b"CSeq: ");
                    put_u64(out, u64::from(n));
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(msg.cseq_method_token());
                    out.extend_from_slice(CRLF);
                }
                continue;
            }
            HeaderName::MaxForwards if edits.max_forwards.is_some() => {
                if let (Some(mf), false) = (edits.max_forwards, wrote_mf) {
                    put_max_forwards(out, mf);
                    wrote_mf = true;
                }
                continue;
            }
            _ => {}
        }
        if h.name == HeaderName::Other
            && edits
                .drop_named
                .iter()
                .any(|name| super::header::names_equal(msg.name_of(h), name))
        {
            continue;
        }
        let pending = to_pop.get_mut(h.name as usize).filter(|n| **n > 0);
        if let (Some(pending), false) = (pending, h.name == HeaderName::Other) {
            let vr = h.value_range();
            let value = b.get(vr.clone()).unwrap_or(&[]);
            let mut it = split_values(value);
            let mut keep_from = None;
            while let Some(range) = it.next_range() {
                if *pending == 0 {
                    keep_from = Some(range.start);
                    break;
                }
                *pending -= 1;
            }
            if let Some(start) = keep_from {
                // Keep "Name: " and everything from the first value not popped.
                out.extend_from_slice(b.get(h.line_start as usize..vr.start).unwrap_or(&[]));
                out.extend_from_slice(b.get(vr.start + start..h.line_end as usize).unwrap_or(&[]));
            }
            continue;
        }
        out.extend_from_slice(line(msg, h));
    }
    if !wrote_cl {
        put_content_length(out, body.len());
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(body);
}

fn put_status_line(out: &mut BytesMut, code: u16, reason: &str) {
    out.extend_from_slice(b"SIP/2.0 ");
    put_u64(out, u64::from(code));
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(CRLF);
}

fn first_entry(msg: &SipMessage, name: HeaderName) -> Option<&HeaderEntry> {
    msg.headers().iter().find(|h| h.name == name)
}

/// A response to `req` (RFC 3261 §8.2.6): copies every Via, From, To, Call-ID and CSeq;
/// adds `;tag=to_tag` to To when To has no tag and `to_tag` is given; appends `extra`
/// header lines (without CRLF) and `Content-Length: 0`.
///
/// Via lines are copied byte for byte in order; From, To, Call-ID and CSeq are the first
/// line of each, copied byte for byte (To gets the tag spliced in after its value).
pub fn response(
    req: &SipMessage,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[&[u8]],
    out: &mut BytesMut,
) {
    let b = req.as_bytes();
    out.reserve(
        req.headers_start().min(b.len()) + 256 + extra.iter().map(|l| l.len() + 2).sum::<usize>(),
    );
    put_status_line(out, code, reason);
    for h in req.headers().iter().filter(|h| h.name == HeaderName::Via) {
        out.extend_from_slice(line(req, h));
    }
    if let Some(h) = first_entry(req, HeaderName::From) {
        out.extend_from_slice(line(req, h));
    }
    if let Some(h) = first_entry(req, HeaderName::To) {
        let has_tag = NameAddr::parse(req.value(h))
            .ok()
            .and_then(|n| n.tag())
            .is_some();
        match to_tag {
            Some(tag) if !has_tag => {
                out.extend_from_slice(
                    b.get(h.line_start as usize..h.value_end as usize)
                        .unwrap_or(&[]),
                );
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(tag);
                out.extend_from_slice(CRLF);
            }
            _ => out.extend_from_slice(line(req, h)),
        }
    }
    for name in [HeaderName::CallId, HeaderName::CSeq] {
        if let Some(h) = first_entry(req, name) {
            out.extend_from_slice(line(req, h));
        }
    }
    for l in extra {
        out.extend_from_slice(l);
        out.extend_from_slice(CRLF);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// ACK for a non-2xx final response, or CANCEL, for an INVITE that *we* sent
/// (RFC 3261 §17.1.1.3, §9.1): Request-URI, the top Via only, Route lines, From, Call-ID
/// and the CSeq number copied from `sent_invite`; CSeq method = `method`; To copied from
/// `response` when given (ACK: it carries the tag), else from `sent_invite` (CANCEL);
/// Max-Forwards: 70; Content-Length: 0.
///
/// Written as: `METHOD uri SIP/2.0`, `Via: <top value>`, `Max-Forwards: 70`, the Route
/// lines (byte for byte), From, To, Call-ID (first line of each, byte for byte),
/// `CSeq: <n> METHOD`, `Content-Length: 0`. `Method::Other` writes the token `OTHER`.
pub fn ack_or_cancel(
    sent_invite: &SipMessage,
    method: Method,
    response: Option<&SipMessage>,
    out: &mut BytesMut,
) {
    let m = method.as_str().as_bytes();
    out.reserve(sent_invite.headers_start() + 512);
    out.extend_from_slice(m);
    out.extend_from_slice(b" ");
    out.extend_from_slice(sent_invite.request_uri().unwrap_or(b"sip:invalid"));
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(sent_invite.top_via_raw());
    out.extend_from_slice(CRLF);
    put_max_forwards(out, 70);
    for h in sent_invite
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::Route)
    {
        out.extend_from_slice(line(sent_invite, h));
    }
    if let Some(h) = first_entry(sent_invite, HeaderName::From) {
        out.extend_from_slice(line(sent_invite, h));
    }
    let to_src = response.unwrap_or(sent_invite);
    if let Some(h) = first_entry(to_src, HeaderName::To) {
        out.extend_from_slice(line(to_src, h));
    }
    if let Some(h) = first_entry(sent_invite, HeaderName::CallId) {
        out.extend_from_slice(line(sent_invite, h));
    }
    out.extend_from_slice(b"CSeq: ");
    put_u64(out, u64::from(sent_invite.cseq().0));
    out.extend_from_slice(b" ");
    out.extend_from_slice(m);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{Limits, SipMessage};
    use bytes::Bytes;

    fn parse(s: &[u8]) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(s), &Limits::default()).unwrap()
    }

    fn run(msg: &SipMessage, e: &Edits<'_>) -> (String, SipMessage) {
        let mut out = BytesMut::new();
        rewrite(msg, e, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let again = SipMessage::parse(out.freeze(), &Limits::default()).unwrap();
        (text, again)
    }

    const REQ: &[u8] = b"INVITE sip:b@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example;branch=z9hG4bKp1, SIP/2.0/UDP a.example;branch=z9hG4bKa\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>,\r\n <sip:p3.example;lr>\r\n\
f: <sip:a@a.example>;tag=1\r\n\
To: <sip:b@b.example>\r\n\
i: call-1\r\n\
CSeq: 10 INVITE\r\n\
Max-Forwards: 70\r\n\
l: 5\r\n\
X-Keep  :   odd   spacing  \r\n\
\r\n\
helloTRAILING";

    #[test]
    fn identity_copies_lines_byte_for_byte() {
        let m = parse(REQ);
        let (text, again) = run(&m, &Edits::default());
        let expected = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("l: 5\r\n", "Content-Length: 5\r\n")
            .replace("TRAILING", "");
        assert_eq!(text, expected);
        assert_eq!(again.body(), b"hello");
    }

    #[test]
    fn forward_request_edits() {
        let m = parse(REQ);
        let via = b"Via: SIP/2.0/UDP sbc.example;branch=z9hG4bKsbc";
        let rr = b"Record-Route: <sip:sbc.example;lr>";
        let (text, again) = run(
            &m,
            &Edits {
                request_uri: Some(b"sip:b@10.1.1.1:5060"),
                prepend: &[via, rr],
                pop_first_value: &[HeaderName::Route],
                max_forwards: Some(69),
                body: None,
                ..Edits::default()
            },
        );
        assert!(text.starts_with(
            "INVITE sip:b@10.1.1.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP sbc.example;branch=z9hG4bKsbc\r\n\
             Record-Route: <sip:sbc.example;lr>\r\nVia: SIP/2.0/UDP p1.example"
        ));
        // The single-value Route line went; the folded two-value line stays intact.
        assert!(!text.contains("p1.example;lr"));
        assert!(text.contains("Route: <sip:p2.example;lr>,\r\n <sip:p3.example;lr>\r\n"));
        assert!(text.contains("Max-Forwards: 69\r\n"));
        assert!(!text.contains("Max-Forwards: 70"));
        assert!(text.contains("X-Keep  :   odd   spacing  \r\n"));
        assert_eq!(again.request_uri(), Some(&b"sip:b@10.1.1.1:5060"[..]));
        assert_eq!(again.via_count(), 3);
        assert_eq!(again.top_via().host, b"sbc.example");
        assert_eq!(again.max_forwards(), Some(69));
        assert_eq!(again.values(HeaderName::Route).count(), 2);
        assert_eq!(again.body(), b"hello");
    }

    #[test]
    fn pop_first_of_comma_joined_via() {
        let m = parse(REQ);
        let (text, again) = run(
            &m,
            &Edits {
                pop_first_value: &[HeaderName::Via],
                ..Default::default()
            },
        );
        assert!(text.contains("\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bKa\r\n"));
        assert_eq!(again.via_count(), 1);
        assert_eq!(again.top_via().host, b"a.example");
        // Popping the folded Route line's first value keeps the rest of the fold.
        let s = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
f: <sip:a@a>;tag=1\r\nt: <sip:b@b>;tag=2\r\ni: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let m = parse(s);
        let (text, again) = run(
            &m,
            &Edits {
                pop_first_value: &[HeaderName::Via],
                ..Default::default()
            },
        );
        assert!(text.starts_with("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\nf:"));
        assert_eq!(again.via_count(), 1);
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn pop_first_value_of_folded_multi_value_line() {
        let m = parse(REQ);
        let (first_pop, again) = run(
            &m,
            &Edits {
                pop_first_value: &[HeaderName::Route],
                ..Default::default()
            },
        );
        assert_eq!(again.values(HeaderName::Route).count(), 2);
        // Listing a name twice pops two values.
        let (_, twice) = run(
            &m,
            &Edits {
                pop_first_value: &[HeaderName::Route, HeaderName::Route],
                ..Default::default()
            },
        );
        assert_eq!(twice.values(HeaderName::Route).count(), 1);
        let (text, again2) = run(
            &again,
            &Edits {
                pop_first_value: &[HeaderName::Route],
                ..Default::default()
            },
        );
        assert!(text.contains("Route: <sip:p3.example;lr>\r\n"), "{text}");
        assert!(!text.contains("p2.example"));
        assert_eq!(again2.values(HeaderName::Route).count(), 1);
        assert!(first_pop.len() > text.len());
    }

    #[test]
    fn max_forwards_added_when_missing_and_body_replaced() {
        let s =
            b"OPTIONS sip:b SIP/2.0\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=1\n\
To: <sip:b@b>\nCall-ID: c\nCSeq: 1 OPTIONS\n\nold body";
        let m = parse(s);
        let (text, again) = run(
            &m,
            &Edits {
                max_forwards: Some(70),
                body: Some(b"new, longer body"),
                ..Default::default()
            },
        );
        assert!(text.starts_with("OPTIONS sip:b SIP/2.0\nMax-Forwards: 70\r\nVia:"));
        assert!(text.ends_with("CSeq: 1 OPTIONS\nContent-Length: 16\r\n\r\nnew, longer body"));
        assert_eq!(again.max_forwards(), Some(70));
        assert_eq!(again.body(), b"new, longer body");
        // Body replaced on a message that had a Content-Length: replaced in place, exactly one.
        let m = parse(REQ);
        let (text, again) = run(
            &m,
            &Edits {
                body: Some(b""),
                ..Default::default()
            },
        );
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(!text.contains("\nl: "));
        assert!(text.contains("Content-Length: 0\r\nX-Keep"));
        assert_eq!(again.body(), b"");
        assert_eq!(again.content_length(), Some(0));
    }

    #[test]
    fn response_builder() {
        let m = parse(REQ);
        let mut out = BytesMut::new();
        response(
            &m,
            180,
            "Ringing",
            Some(b"sbc1"),
            &[b"Contact: <sip:sbc@s>"],
            &mut out,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 180 Ringing\r\n\
             Via: SIP/2.0/UDP p1.example;branch=z9hG4bKp1, SIP/2.0/UDP a.example;branch=z9hG4bKa\r\n\
             f: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>;tag=sbc1\r\ni: call-1\r\n\
             CSeq: 10 INVITE\r\nContact: <sip:sbc@s>\r\nContent-Length: 0\r\n\r\n"
        );
        let r = parse(&out);
        assert_eq!(r.status(), Some(180));
        assert_eq!(r.to_tag(), Some(&b"sbc1"[..]));
        assert_eq!(r.via_count(), 2);
        assert_eq!(r.call_id(), b"call-1");
        // To already tagged: kept as is.
        let mut out2 = BytesMut::new();
        response(
            &r,
            487,
            "Request Terminated",
            Some(b"other"),
            &[],
            &mut out2,
        );
        let r2 = parse(&out2);
        assert_eq!(r2.to_tag(), Some(&b"sbc1"[..]));
        assert_eq!(r2.status(), Some(487));
        // No tag requested: To copied verbatim.
        let mut out3 = BytesMut::new();
        response(&m, 100, "Trying", None, &[], &mut out3);
        assert_eq!(parse(&out3).to_tag(), None);
        assert!(String::from_utf8_lossy(&out3).contains("\r\nTo: <sip:b@b.example>\r\n"));
    }

    #[test]
    fn ack_and_cancel() {
        let inv = parse(REQ);
        let resp_bytes = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP p1.example;branch=z9hG4bKp1\r\n\
From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>;tag=callee\r\nCall-ID: call-1\r\nCSeq: 10 INVITE\r\n\r\n";
        let resp = parse(resp_bytes);
        let mut out = BytesMut::new();
        ack_or_cancel(&inv, Method::Ack, Some(&resp), &mut out);
        let ack = parse(&out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.request_uri(), Some(&b"sip:b@b.example"[..]));
        assert_eq!(ack.via_count(), 1);
        assert_eq!(ack.top_via().branch(), Some(&b"z9hG4bKp1"[..]));
        assert_eq!(ack.values(HeaderName::Route).count(), 3);
        assert_eq!(ack.from_tag(), Some(&b"1"[..]));
        assert_eq!(ack.to_tag(), Some(&b"callee"[..]));
        assert_eq!(ack.call_id(), b"call-1");
        assert_eq!(ack.cseq(), (10, Method::Ack));
        assert_eq!(ack.max_forwards(), Some(70));
        assert_eq!(ack.body(), b"");
        assert!(text.ends_with("CSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n"));

        let mut out = BytesMut::new();
        ack_or_cancel(&inv, Method::Cancel, None, &mut out);
        let cancel = parse(&out);
        assert_eq!(cancel.method(), Some(Method::Cancel));
        assert_eq!(cancel.to_tag(), None);
        assert_eq!(cancel.cseq(), (10, Method::Cancel));
        assert_eq!(cancel.top_via().branch(), inv.top_via().branch());
    }
}
