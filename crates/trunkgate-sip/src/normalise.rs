//! Per-trunk header normalisation: what a request looks like when it crosses to a trunk
//! (outbound rules) or from a trunk to the PBX (inbound rules). Number formats in the user
//! part of the Request-URI and To (the called number) and of From and P-Asserted-Identity
//! (the calling number) by ordered prefix rules; headers removed, kept, added; a fixed
//! User-Agent. Applied to the forwarded request after the proxy's own edits, as a second
//! pass over the built message (paid only by trunks that have rules).

use crate::message::{HeaderName, SipMessage, StartLine};
use bytes::{Bytes, BytesMut};

/// A trunk's rules for one direction, compiled from the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalise {
    /// `(prefix, replacement)`, first match wins: the Request-URI's and To's user part.
    pub called: Vec<(Vec<u8>, Vec<u8>)>,
    /// The same for From's and P-Asserted-Identity's user part.
    pub calling: Vec<(Vec<u8>, Vec<u8>)>,
    /// Header names to drop (lower case; a trailing `*` matches any rest).
    pub remove: Vec<Vec<u8>>,
    /// When not empty: only these names (same form) pass, besides the ones SIP needs.
    pub keep: Vec<Vec<u8>>,
    /// Whole lines to add (`X-Account: 1234`), after the others.
    pub add: Vec<Vec<u8>>,
    /// Replaces (or adds) User-Agent.
    pub user_agent: Option<Vec<u8>>,
}

/// Headers a request cannot do without: never removed by `remove` or `keep`.
const NEEDED: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::Contact,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::ContentLength,
    HeaderName::ContentType,
];

/// Names (lower case, `*` suffix wildcard) a header name is checked against.
fn matches(patterns: &[Vec<u8>], name: &[u8]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix(b"*") {
        Some(prefix) => {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        }
        None => name.eq_ignore_ascii_case(p),
    })
}

/// Apply the first rule whose prefix `user` starts with; `None`: no rule matched.
fn renumber(rules: &[(Vec<u8>, Vec<u8>)], user: &[u8]) -> Option<Vec<u8>> {
    rules
        .iter()
        .find(|(p, _)| user.starts_with(p))
        .map(|(p, r)| {
            let mut out = Vec::with_capacity(r.len() + user.len() - p.len());
            out.extend_from_slice(r);
            out.extend_from_slice(&user[p.len()..]);
            out
        })
}

/// The user part of the first `sip:`/`sips:`/`tel:` URI in `text` renumbered: `text` with
/// the replacement spliced in (parameters after `;` in the user part are kept).
fn renumber_uri(rules: &[(Vec<u8>, Vec<u8>)], text: &[u8]) -> Option<Vec<u8>> {
    if rules.is_empty() {
        return None;
    }
    let lower: Vec<u8> = text.to_ascii_lowercase();
    let start = ["sips:", "sip:", "tel:"]
        .iter()
        .filter_map(|s| find(&lower, s.as_bytes()).map(|i| i + s.len()))
        .min()?;
    let rest = text.get(start..)?;
    let tel = lower.get(start.saturating_sub(4)..start) == Some(b"tel:");
    // The user part ends at '@' (sip) or at ';', '>' or the end (tel, or a sip URI without
    // user: then there is nothing to renumber).
    let end = if tel {
        rest.iter()
            .position(|&b| matches!(b, b';' | b'>' | b' ' | b','))
            .unwrap_or(rest.len())
    } else {
        let at = rest.iter().position(|&b| b == b'@')?;
        if rest[..at].iter().any(|&b| matches!(b, b'>' | b' ' | b',')) {
            return None;
        }
        at
    };
    let user_part = &rest[..end];
    let number_end = user_part
        .iter()
        .position(|&b| matches!(b, b';' | b':'))
        .unwrap_or(user_part.len());
    let renumbered = renumber(rules, &user_part[..number_end])?;
    let mut out = Vec::with_capacity(text.len() + renumbered.len());
    out.extend_from_slice(&text[..start]);
    out.extend_from_slice(&renumbered);
    out.extend_from_slice(&text[start + number_end..]);
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Normalise {
    pub fn is_empty(&self) -> bool {
        *self == Normalise::default()
    }

    /// `msg` (a request about to be sent) with the rules applied. Responses and messages
    /// the rules leave alone come back unchanged (`None`).
    pub fn apply(&self, msg: &SipMessage) -> Option<Bytes> {
        let StartLine::Request {
            method_token, uri, ..
        } = msg.start_line()
        else {
            return None;
        };
        let b = msg.as_bytes();
        let mut out = BytesMut::with_capacity(b.len() + 128);
        // Start line, with the called number renumbered.
        let request_uri = b.get(uri.clone()).unwrap_or_default();
        out.extend_from_slice(b.get(method_token.clone()).unwrap_or_default());
        out.extend_from_slice(b" ");
        match renumber_uri(&self.called, request_uri) {
            Some(u) => out.extend_from_slice(&u),
            None => out.extend_from_slice(request_uri),
        }
        out.extend_from_slice(b" SIP/2.0\r\n");
        let mut wrote_ua = false;
        for h in msg.headers() {
            let name = msg.name_of(h);
            let needed = NEEDED.contains(&h.name);
            if !needed
                && (matches(&self.remove, name)
                    || (!self.keep.is_empty() && !matches(&self.keep, name)))
            {
                continue;
            }
            // The whole line, its CRLF (and any folds) included.
            let line = b.get(h.line_range()).unwrap_or_default();
            let value = msg.value(h);
            let rules = match h.name {
                HeaderName::To => &self.called,
                HeaderName::From => &self.calling,
                HeaderName::PAssertedIdentity => &self.calling,
                HeaderName::UserAgent if self.user_agent.is_some() => {
                    if let (Some(ua), false) = (&self.user_agent, wrote_ua) {
                        out.extend_from_slice(b"User-Agent: ");
                        out.extend_from_slice(ua);
                        out.extend_from_slice(b"\r\n");
                        wrote_ua = true;
                    }
                    continue;
                }
                _ => {
                    out.extend_from_slice(line);
                    continue;
                }
            };
            match renumber_uri(rules, value) {
                Some(v) => {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(&v);
                    out.extend_from_slice(b"\r\n");
                }
                None => out.extend_from_slice(line),
            }
        }
        if let (Some(ua), false) = (&self.user_agent, wrote_ua) {
            out.extend_from_slice(b"User-Agent: ");
            out.extend_from_slice(ua);
            out.extend_from_slice(b"\r\n");
        }
        for line in &self.add {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(msg.body());
        Some(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::message::Limits;

    const INVITE: &str = "INVITE sip:01632960000@127.0.0.1:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-tg-1\r\n\
Max-Forwards: 69\r\n\
From: \"Desk 12\" <sip:02079460000@pbx.lan>;tag=a\r\n\
To: <sip:01632960000@127.0.0.1>\r\n\
Call-ID: c@x\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:pbx@10.0.0.2>\r\n\
P-Asserted-Identity: <sip:02079460000@pbx.lan>\r\n\
X-Internal-Id: 77\r\n\
X-Debug: yes\r\n\
User-Agent: PBX 1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn rules() -> Normalise {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                .collect()
        };
        Normalise {
            called: pairs(&[("00", "+"), ("0", "+44")]),
            calling: pairs(&[("0", "+44")]),
            remove: vec![b"x-internal-*".to_vec()],
            keep: vec![],
            add: vec![b"X-Account: 1234".to_vec()],
            user_agent: Some(b"Trunkgate".to_vec()),
        }
    }

    fn apply(r: &Normalise, text: &str) -> String {
        let m = SipMessage::parse(Bytes::from(text.to_owned()), &Limits::default()).unwrap();
        let out = r.apply(&m).unwrap();
        // Still a valid message.
        SipMessage::parse(out.clone(), &Limits::default()).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn numbers_headers_and_user_agent() {
        let out = apply(&rules(), INVITE);
        assert!(
            out.starts_with("INVITE sip:+441632960000@127.0.0.1:5060;user=phone SIP/2.0\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nTo: <sip:+441632960000@127.0.0.1>\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nFrom: \"Desk 12\" <sip:+442079460000@pbx.lan>;tag=a\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nP-Asserted-Identity: <sip:+442079460000@pbx.lan>\r\n"),
            "{out}"
        );
        assert!(!out.contains("X-Internal-Id"), "{out}");
        assert!(
            out.contains("X-Debug: yes"),
            "only the pattern's headers go"
        );
        assert!(
            out.contains("\r\nUser-Agent: Trunkgate\r\n") && !out.contains("PBX 1.0"),
            "{out}"
        );
        assert!(out.contains("\r\nX-Account: 1234\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nv=0\n"), "body kept");
    }

    #[test]
    fn keep_only_keeps_what_sip_needs() {
        let r = Normalise {
            keep: vec![b"p-asserted-identity".to_vec()],
            ..Normalise::default()
        };
        let out = apply(&r, INVITE);
        for gone in ["X-Internal-Id", "X-Debug", "User-Agent"] {
            assert!(!out.contains(gone), "{gone}: {out}");
        }
        for kept in [
            "Via:",
            "From:",
            "To:",
            "Call-ID:",
            "CSeq:",
            "Contact:",
            "Content-Type:",
            "Content-Length:",
            "Max-Forwards:",
            "P-Asserted-Identity:",
        ] {
            assert!(out.contains(kept), "{kept}: {out}");
        }
    }

    #[test]
    fn no_match_leaves_numbers_alone_and_tel_uris_work() {
        let r = rules();
        assert_eq!(renumber_uri(&r.called, b"<sip:+15551234@h>"), None);
        assert_eq!(
            renumber_uri(&r.called, b"<tel:0163296;phone-context=x>").as_deref(),
            Some(&b"<tel:+44163296;phone-context=x>"[..])
        );
        assert_eq!(
            renumber_uri(&r.called, b"<sip:host.example>"),
            None,
            "no user part"
        );
        assert_eq!(
            renumber_uri(&r.called, b"sip:0044123;npdi@h").as_deref(),
            Some(&b"sip:+44123;npdi@h"[..])
        );
    }
}
