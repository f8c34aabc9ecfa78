//! Building outgoing messages by splicing the received buffer: forwarded requests and
//! responses, and the few messages the proxy writes itself (responses, ACK, CANCEL).
//! Output always carries a correct `Content-Length` (required on streams).

use super::{HeaderName, Method, SipMessage};
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
}

/// Write `msg` with `edits` applied into `out` (appending). Content-Length is rewritten
/// (or added) to the length of the body written; all other lines are copied byte for byte.
pub fn rewrite(msg: &SipMessage, edits: &Edits<'_>, out: &mut BytesMut) {
    todo!("{msg:?} {edits:?} {out:?}")
}

/// A response to `req` (RFC 3261 §8.2.6): copies every Via, From, To, Call-ID and CSeq;
/// adds `;tag=to_tag` to To when To has no tag and `to_tag` is given; appends `extra`
/// header lines (without CRLF) and `Content-Length: 0`.
pub fn response(
    req: &SipMessage,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[&[u8]],
    out: &mut BytesMut,
) {
    todo!("{req:?} {code} {reason} {to_tag:?} {extra:?} {out:?}")
}

/// ACK for a non-2xx final response, or CANCEL, for an INVITE that *we* sent
/// (RFC 3261 §17.1.1.3, §9.1): Request-URI, the top Via only, Route lines, From, Call-ID
/// and the CSeq number copied from `sent_invite`; CSeq method = `method`; To copied from
/// `response` when given (ACK: it carries the tag), else from `sent_invite` (CANCEL);
/// Max-Forwards: 70; Content-Length: 0.
pub fn ack_or_cancel(
    sent_invite: &SipMessage,
    method: Method,
    response: Option<&SipMessage>,
    out: &mut BytesMut,
) {
    todo!("{sent_invite:?} {method:?} {response:?} {out:?}")
}
