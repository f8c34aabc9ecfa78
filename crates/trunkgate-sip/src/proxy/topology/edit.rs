//! The byte-level edits of topology hiding: header values with their URI hosts replaced,
//! Warning agents, and the messages rebuilt with what was taken off put back. Pure
//! functions over the message view; the decisions are `topology.rs`'s.

use crate::message::{HeaderName, SipMessage, split_values};
use bytes::{Bytes, BytesMut};

const CRLF: &[u8] = b"\r\n";

/// `msg` with its Call-ID replaced by `call_id`, its Vias by `vias` (comma-joined) and
/// `inner_rr` appended to its Record-Route entries (when it has any).
pub(super) fn restore(
    msg: &SipMessage,
    call_id: Option<&[u8]>,
    vias: Option<&[u8]>,
    inner_rr: &[u8],
) -> Bytes {
    let b = msg.as_bytes();
    let mut out =
        BytesMut::with_capacity(b.len() + vias.map_or(0, <[u8]>::len) + inner_rr.len() + 64);
    out.extend_from_slice(
        b.get(msg.start_offset()..msg.headers_start())
            .unwrap_or(&[]),
    );
    if let Some(vias) = vias {
        put(&mut out, "Via", vias);
    }
    let last_rr = msg
        .headers()
        .iter()
        .rposition(|h| h.name == HeaderName::RecordRoute);
    for (i, h) in msg.headers().iter().enumerate() {
        match h.name {
            HeaderName::Via if vias.is_some() => {}
            HeaderName::CallId if call_id.is_some() => {
                put(&mut out, "Call-ID", call_id.unwrap_or_default());
            }
            _ => out.extend_from_slice(b.get(h.line_range()).unwrap_or(&[])),
        }
        if Some(i) == last_rr && !inner_rr.is_empty() {
            put(&mut out, "Record-Route", inner_rr);
        }
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(msg.body());
    out.freeze()
}

/// Request `msg` with its Call-ID replaced by `call_id` and a `Route: route` line after its
/// Route lines (when `route` is not empty).
pub(super) fn restore_request(msg: &SipMessage, call_id: Option<&[u8]>, route: &[u8]) -> Bytes {
    let b = msg.as_bytes();
    let mut out = BytesMut::with_capacity(b.len() + route.len() + 64);
    out.extend_from_slice(
        b.get(msg.start_offset()..msg.headers_start())
            .unwrap_or(&[]),
    );
    let last_route = msg
        .headers()
        .iter()
        .rposition(|h| h.name == HeaderName::Route);
    for (i, h) in msg.headers().iter().enumerate() {
        match (h.name, call_id) {
            (HeaderName::CallId, Some(call_id)) => put(&mut out, "Call-ID", call_id),
            _ => out.extend_from_slice(b.get(h.line_range()).unwrap_or(&[])),
        }
        if Some(i) == last_route && !route.is_empty() {
            put(&mut out, "Route", route);
        }
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(msg.body());
    out.freeze()
}

pub(super) fn put(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(CRLF);
}

/// Comma-joined header values, owned.
pub(super) fn join<'a>(values: impl Iterator<Item = &'a [u8]>) -> Box<[u8]> {
    let mut out = Vec::new();
    for value in values {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value);
    }
    out.into_boxed_slice()
}

/// `value` with the host\[:port] of every `sip:`/`sips:` URI replaced by `host` (user part,
/// parameters and headers kept).
pub(super) fn replace_hosts(value: &[u8], host: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 16);
    let mut at = 0;
    while let Some((after_colon, uri_end)) = next_sip_uri(value, at) {
        let uri = value.get(after_colon..uri_end).unwrap_or_default();
        let query = uri.iter().position(|&b| b == b'?').unwrap_or(uri.len());
        let host_start = uri
            .get(..query)
            .and_then(|u| u.iter().rposition(|&b| b == b'@'))
            .map_or(0, |p| p + 1);
        let host_len = uri
            .get(host_start..)
            .and_then(|rest| rest.iter().position(|&b| matches!(b, b';' | b'?')))
            .unwrap_or(uri.len().saturating_sub(host_start));
        out.extend_from_slice(value.get(at..after_colon + host_start).unwrap_or_default());
        out.extend_from_slice(host);
        at = after_colon + host_start + host_len;
    }
    out.extend_from_slice(value.get(at..).unwrap_or_default());
    out
}

/// The next `sip:`/`sips:` URI in `value` from `from`: (just after its colon, its end).
fn next_sip_uri(value: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 4 <= value.len() {
        let rest = value.get(i..)?;
        let starts = |p: &[u8]| {
            rest.get(..p.len())
                .is_some_and(|r| r.eq_ignore_ascii_case(p))
        };
        let scheme = if starts(b"sips:") {
            5
        } else if starts(b"sip:") {
            4
        } else {
            0
        };
        let boundary = i == 0 || value.get(i - 1).is_some_and(|b| !b.is_ascii_alphanumeric());
        if scheme > 0 && boundary {
            let start = i + scheme;
            let end = value
                .get(start..)?
                .iter()
                .position(|&b| matches!(b, b'>' | b',' | b' ' | b'\t' | b'\r' | b'\n' | b'"'))
                .map_or(value.len(), |p| start + p);
            return Some((start, end));
        }
        i += 1;
    }
    None
}

/// `Warning` values (`code agent "text"`) with each agent replaced by `host`.
pub(super) fn warning_agents(value: &[u8], host: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (n, v) in split_values(value).enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        let mut parts = v.splitn(3, |&b| b == b' ');
        let (code, agent, text) = (parts.next(), parts.next(), parts.next());
        match (code, agent, text) {
            (Some(code), Some(_), Some(text)) => {
                out.extend_from_slice(code);
                out.push(b' ');
                out.extend_from_slice(host);
                out.push(b' ');
                out.extend_from_slice(text);
            }
            _ => out.extend_from_slice(v),
        }
    }
    out
}

/// SDP attributes of ICE (RFC 8839): candidates carry the sender's own addresses.
const ICE: &[&[u8]] = &[
    b"a=candidate:",
    b"a=remote-candidates:",
    b"a=end-of-candidates",
    b"a=ice-",
];

/// `sdp` without its ICE lines; `None` when it has none (the common case: one scan).
pub(super) fn strip_ice(sdp: &[u8]) -> Option<Vec<u8>> {
    let mut lines = sdp.split_inclusive(|&b| b == b'\n');
    let is_ice = |line: &[u8]| ICE.iter().any(|p| line.starts_with(p));
    if !lines.clone().any(is_ice) {
        return None;
    }
    let mut out = Vec::with_capacity(sdp.len());
    for line in lines.by_ref() {
        if !is_ice(line) {
            out.extend_from_slice(line);
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_replaced_in_uris_user_and_params_kept() {
        let got = replace_hosts(
            b"\"Alice\" <sip:+4420;npdi@10.0.0.5:5070;user=phone>;party=calling, <sips:pbx.corp?Reason=SIP%3Bcause%3D302>;index=1, <tel:+4420>",
            b"203.0.113.10",
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "\"Alice\" <sip:+4420;npdi@203.0.113.10;user=phone>;party=calling, <sips:203.0.113.10?Reason=SIP%3Bcause%3D302>;index=1, <tel:+4420>"
        );
        let bare = replace_hosts(b"sip:bob@[fd00::5]:5060;tag=1", b"sbc");
        assert_eq!(bare, b"sip:bob@sbc;tag=1");
        assert_eq!(replace_hosts(b"no uri here", b"sbc"), b"no uri here");
        assert_eq!(replace_hosts(b"gossip:x@y", b"sbc"), b"gossip:x@y");
    }

    #[test]
    fn ice_lines_removed_the_rest_kept_byte_for_byte() {
        let sdp = b"v=0\r\nc=IN IP4 127.0.0.1\r\na=ice-ufrag:x\r\nm=audio 4000 RTP/AVP 0\r\n\
a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host\r\na=end-of-candidates\r\na=sendrecv\r\n";
        let got = strip_ice(sdp).unwrap();
        assert_eq!(
            got,
            b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
        );
        assert_eq!(strip_ice(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), None);
    }

    proptest::proptest! {
        /// Any bytes (values come from the network): no panic, and text without a
        /// `sip:` URI comes back as it was.
        #[test]
        fn edits_never_panic(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let replaced = replace_hosts(&value, b"sbc");
            let lower = value.to_ascii_lowercase();
            if !lower.windows(4).any(|w| w == b"sip:") {
                proptest::prop_assert_eq!(&replaced, &value);
            }
            let _ = warning_agents(&value, b"sbc");
            let _ = strip_ice(&value);
        }
    }

    #[test]
    fn warning_agent_replaced() {
        let got = warning_agents(
            b"399 pbx.inside \"Codec mismatch\", 301 10.0.0.5 \"x\"",
            b"sbc",
        );
        assert_eq!(got, b"399 sbc \"Codec mismatch\", 301 sbc \"x\"");
    }
}
