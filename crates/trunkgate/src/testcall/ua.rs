//! The SIP side of a test call: the few messages a user agent writes (INVITE with its
//! offer, ACK, BYE, CANCEL, responses to the far end's requests), as bytes for
//! [`trunkgate_sip::Proxy::handle_internal`]. The core treats them as if the PBX (outbound)
//! or a trunk (inbound) had sent them, so they take the real path.

use std::fmt::Write as _;
use trunkgate_sip::message::{HeaderName, NameAddr, SipMessage};

/// Branch prefix of the agent's own Via (not the proxy's `z9hG4bK-tg-`: the core must not
/// take the agent's requests for a loop).
pub const BRANCH_PREFIX: &str = "z9hG4bK-tgtc-";

/// One test call's identity in SIP.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `host:port` the agent writes in its Via, Contact and URIs (Trunkgate's own).
    pub host: String,
    pub call_id: String,
    /// The From header value (with tag).
    pub from: String,
    pub request_uri: String,
    /// The To header value of the INVITE (no tag).
    pub to: String,
    pub user_agent: String,
}

/// `v=0` … offer of a G.711 stream (and telephone-event) at `addr`.
pub fn offer(addr: std::net::SocketAddr, payload_type: u8, codec: &str, session: u64) -> String {
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let ip = addr.ip();
    let port = addr.port();
    format!(
        "v=0\r\no=trunkgate-test {session} 1 IN {family} {ip}\r\ns=Trunkgate test call\r\n\
         c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {payload_type} 101\r\n\
         a=rtpmap:{payload_type} {codec}/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn request_head(
    out: &mut String,
    method: &str,
    uri: &str,
    id: &Identity,
    branch: &str,
    to: &str,
    cseq: u32,
) {
    let _ = write!(
        out,
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n",
        host = id.host,
        from = id.from,
        call_id = id.call_id,
    );
}

/// The initial INVITE with `sdp`.
pub fn invite(id: &Identity, branch: &str, sdp: &str) -> Vec<u8> {
    let mut out = String::with_capacity(768 + sdp.len());
    request_head(&mut out, "INVITE", &id.request_uri, id, branch, &id.to, 1);
    let _ = write!(
        out,
        "Contact: <sip:trunkgate-test@{host}>\r\nUser-Agent: {ua}\r\n\
         Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        host = id.host,
        ua = id.user_agent,
        len = sdp.len(),
    );
    out.into_bytes()
}

/// CANCEL of the INVITE (same branch, RFC 3261 §9.1).
pub fn cancel(id: &Identity, branch: &str) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    request_head(&mut out, "CANCEL", &id.request_uri, id, branch, &id.to, 1);
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// ACK of a non-2xx final (hop by hop: the INVITE's branch, the response's To).
pub fn ack_failure(id: &Identity, branch: &str, to: &str) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    request_head(&mut out, "ACK", &id.request_uri, id, branch, to, 1);
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The dialog, once answered: what in-dialog requests need (RFC 3261 §12.1.2).
#[derive(Debug, Clone)]
pub struct Dialog {
    /// The To header value of the 2xx (with the far end's tag).
    pub to: String,
    pub remote_target: String,
    /// Route set: the 2xx's Record-Route, reversed.
    pub route: Vec<String>,
}

impl Dialog {
    pub fn from_2xx(msg: &SipMessage, fallback_uri: &str) -> Dialog {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let remote_target = msg
            .values(HeaderName::Contact)
            .next()
            .and_then(|v| NameAddr::parse(v).ok())
            .map_or_else(|| fallback_uri.to_owned(), |na| text(na.uri));
        let mut route: Vec<String> = msg.values(HeaderName::RecordRoute).map(text).collect();
        route.reverse();
        Dialog {
            to: text(msg.to_value()),
            remote_target,
            route,
        }
    }

    /// ACK of the 2xx, or BYE (`method`), with a new `branch`.
    pub fn request(&self, id: &Identity, method: &str, branch: &str, cseq: u32) -> Vec<u8> {
        let mut out = String::with_capacity(640);
        request_head(
            &mut out,
            method,
            &self.remote_target,
            id,
            branch,
            &self.to,
            cseq,
        );
        if !self.route.is_empty() {
            let _ = write!(out, "Route: {}\r\n", self.route.join(", "));
        }
        if method == "BYE" {
            let _ = write!(out, "User-Agent: {}\r\n", id.user_agent);
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }
}

/// A response to a request the far end sent in the dialog (`200` to BYE, re-INVITE, …),
/// with `body` (an SDP for a re-INVITE).
pub fn respond(request: &SipMessage, code: u16, reason: &str, body: Option<&str>) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
    for via in request.values(HeaderName::Via) {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(via);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in [
        (&b"From: "[..], request.from_value()),
        (b"To: ", request.to_value()),
        (b"Call-ID: ", request.call_id()),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(request.cseq().0.to_string().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(request.cseq_method_token());
    out.extend_from_slice(b"\r\n");
    match body {
        Some(body) => {
            out.extend_from_slice(
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use trunkgate_sip::message::Limits;

    fn identity() -> Identity {
        Identity {
            host: "192.0.2.1:5060".into(),
            call_id: "tgtest-1@192.0.2.1".into(),
            from: "\"Trunkgate test\" <sip:1000@192.0.2.1>;tag=abc".into(),
            request_uri: "sip:+441632960000@192.0.2.1".into(),
            to: "<sip:+441632960000@192.0.2.1>".into(),
            user_agent: "Trunkgate test call".into(),
        }
    }

    fn parse(bytes: Vec<u8>) -> SipMessage {
        let limits = Limits {
            max_message_size: 1 << 16,
            max_headers: 64,
            max_via: 8,
        };
        SipMessage::parse(Bytes::from(bytes), &limits).expect("parses")
    }

    #[test]
    fn the_agent_writes_messages_our_parser_accepts() {
        let id = identity();
        let sdp = offer("192.0.2.1:40000".parse().expect("addr"), 0, "PCMU", 7);
        let invite = parse(invite(&id, "z9hG4bK-tgtc-1", &sdp));
        assert_eq!(invite.call_id(), b"tgtest-1@192.0.2.1");
        assert_eq!(invite.body(), sdp.as_bytes());
        assert!(trunkgate_media::sdp::parse(invite.body()).is_ok());
        let ok = parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-tgtc-1\r\n\
              Record-Route: <sip:192.0.2.1;lr;a>\r\nRecord-Route: <sip:192.0.2.1;lr;b>\r\n\
              From: <sip:a@x>;tag=abc\r\nTo: <sip:1@x>;tag=far\r\nCall-ID: tgtest-1@192.0.2.1\r\n\
              CSeq: 1 INVITE\r\nContact: <sip:far@198.51.100.1>\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        );
        let dialog = Dialog::from_2xx(&ok, &id.request_uri);
        assert_eq!(dialog.remote_target, "sip:far@198.51.100.1");
        assert_eq!(
            dialog.route,
            ["<sip:192.0.2.1;lr;b>", "<sip:192.0.2.1;lr;a>"]
        );
        let bye = parse(dialog.request(&id, "BYE", "z9hG4bK-tgtc-2", 2));
        assert_eq!(bye.to_tag(), Some(&b"far"[..]));
        assert_eq!(bye.cseq().0, 2);
        let reply = parse(respond(&bye, 200, "OK", None));
        assert_eq!(reply.status(), Some(200));
        assert_eq!(reply.cseq_method_token(), b"BYE");
        assert!(parse(cancel(&id, "z9hG4bK-tgtc-1")).is_request());
        assert!(parse(ack_failure(&id, "z9hG4bK-tgtc-1", "<sip:1@x>;tag=far")).is_request());
    }
}
