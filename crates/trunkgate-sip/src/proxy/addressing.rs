//! What a forwarded request looks like (our Via, Record-Route, popped Routes, Max-Forwards,
//! retargeted Request-URI) and how we recognise ourselves in URIs and Vias.

use super::{BRANCH_PREFIX, Proxy};
use crate::message::rewrite::{self, Edits};
use crate::message::{HeaderName, NameAddr, SipMessage, SipUri, Via};
use crate::transport::{Flow, Transport};
use bytes::{Bytes, BytesMut};
use std::net::{IpAddr, SocketAddr};

impl Proxy {
    /// The forwarded request: our Via on top, our Record-Route(s), our Route(s) popped,
    /// Max-Forwards decremented, Request-URI replaced if asked.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_request(
        &self,
        msg: &SipMessage,
        out_flow: &Flow,
        branch: &str,
        record_route: &[String],
        request_uri: Option<&[u8]>,
        body: Option<&[u8]>,
        cseq: Option<u32>,
    ) -> Bytes {
        let via = format!(
            "Via: SIP/2.0/{} {};branch={branch}{}",
            out_flow.transport.via_token(),
            self.sent_by(out_flow),
            out_flow.transport.via_suffix()
        );
        let mut prepend: Vec<&[u8]> = Vec::with_capacity(1 + record_route.len());
        prepend.push(via.as_bytes());
        prepend.extend(record_route.iter().map(|l| l.as_bytes()));
        let routes = self.our_leading_routes(msg);
        let pops = [HeaderName::Route; 4];
        let max_forwards = msg.max_forwards().map_or(70, |mf| mf.saturating_sub(1));
        let edits = Edits {
            request_uri,
            prepend: &prepend,
            pop_first_value: &pops[..routes.min(pops.len())],
            max_forwards: Some(max_forwards),
            body,
            cseq,
            drop_named: &[],
        };
        let mut out = BytesMut::with_capacity(msg.as_bytes().len() + 160);
        rewrite::rewrite(msg, &edits, &mut out);
        out.freeze()
    }

    /// Our Record-Route value for the side reached over `flow`. Over TLS it is
    /// `sip:HOST:PORT;transport=tls;lr`, or `sips:HOST:PORT;lr` when the request is for a
    /// `sips:` URI (RFC 5630 §3.1.3: a `sips:` request must see `sips:` Record-Routes; a
    /// plain `sip:` request over TLS keeps the `sip:` scheme, since its other hops, the
    /// PBX's UDP among them, are not TLS).
    pub(super) fn record_route_line(&self, flow: &Flow, sips: bool) -> String {
        if sips && flow.transport == Transport::Tls {
            return format!("Record-Route: <sips:{};lr>", self.sent_by(flow));
        }
        format!(
            "Record-Route: <sip:{}{};lr>",
            self.sent_by(flow),
            flow.transport.uri_param()
        )
    }

    /// How many Route values at the top name us (loose routing, RFC 3261 §16.4).
    pub(super) fn our_leading_routes(&self, msg: &SipMessage) -> usize {
        msg.values(HeaderName::Route)
            .take_while(|value| {
                NameAddr::parse(value)
                    .ok()
                    .and_then(|na| SipUri::parse(na.uri).ok())
                    .is_some_and(|uri| self.is_us(uri.host, uri.port))
            })
            .count()
    }

    /// Where an in-dialog request toward `leg` goes (RFC 3261 §16.12, §12.2.1.1): the first
    /// Route value left after ours, else the Request-URI (`request_uri` if it is being
    /// replaced: the leg's remote target) — when that is an IP literal of the leg's own peer
    /// (it classifies as `leg.party`). Otherwise, and for names, the address the dialog was
    /// set up with: a Contact that names another host must not send the peer's traffic
    /// elsewhere, and a private or NATed one would not be reached. Over TCP a different
    /// address needs its own connection (`conn: None`).
    pub(super) fn in_dialog_next_hop(
        &self,
        msg: &SipMessage,
        request_uri: Option<&[u8]>,
        leg: &super::state::Leg,
    ) -> (SocketAddr, Flow) {
        if leg.flow.transport == Transport::Internal {
            // Our own test call's agent: whatever its Contact says, it is in-process.
            return (leg.address, leg.flow);
        }
        let ours = self.our_leading_routes(msg);
        let next_route = msg.values(HeaderName::Route).nth(ours);
        let hop = match next_route {
            Some(value) => NameAddr::parse(value)
                .ok()
                .and_then(|na| uri_socket_addr(na.uri)),
            None => request_uri
                .or_else(|| msg.request_uri())
                .and_then(uri_socket_addr),
        };
        match hop {
            Some(hop) if hop != leg.address && self.routing.classify_at(hop) == leg.party => {
                let flow = if leg.flow.transport.is_stream() {
                    Flow {
                        conn: None,
                        ..leg.flow
                    }
                } else {
                    leg.flow
                };
                (hop, flow)
            }
            _ => (leg.address, leg.flow),
        }
    }

    pub(super) fn addressed_to_us(&self, msg: &SipMessage) -> bool {
        msg.request_uri()
            .and_then(|uri| SipUri::parse(uri).ok())
            .is_some_and(|uri| uri.user.is_none() && self.is_us(uri.host, uri.port))
    }

    /// A Via of ours in the request: it has been here before (spirals are not used by
    /// Trunkgate's routing, so this is a loop).
    pub(super) fn has_our_via(&self, msg: &SipMessage) -> bool {
        msg.values(HeaderName::Via).any(|value| {
            Via::parse(value).is_ok_and(|via| {
                via.branch()
                    .is_some_and(|b| b.starts_with(BRANCH_PREFIX.as_bytes()))
                    && self.is_us(via.host, via.port)
            })
        })
    }
}

/// The host a listener at `local` writes in Via, Record-Route and Contact: the advertised
/// host of its own address family (an IPv6 literal on an IPv6 listener, an IPv4 literal on
/// an IPv4 one), else an advertised name (names serve both families), else the listener's
/// own IP when it is specific, else `advertised` as it is (an IPv6 listener on `[::]` with
/// only an IPv4 address advertised: the binary warns at start).
pub(super) fn listener_host(config: &super::ProxyConfig, local: SocketAddr) -> String {
    let hosts = std::iter::once(&config.advertised).chain(config.advertised_alternate.as_ref());
    let family = |h: &&String| {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>()
            .map(|ip| ip.is_ipv4() == local.is_ipv4())
    };
    if let Some(h) = hosts.clone().find(|h| family(h) == Ok(true)) {
        return h.clone();
    }
    if let Some(h) = hosts.clone().find(|h| family(h).is_err() && !h.is_empty()) {
        return h.clone();
    }
    if !local.ip().is_unspecified() {
        return local.ip().to_string();
    }
    config.advertised.clone()
}

/// The user part without `;params` (`+15551234;npdi` → `+15551234`).
pub(super) fn user_part(user: &[u8]) -> &[u8] {
    let end = user.iter().position(|&b| b == b';').unwrap_or(user.len());
    &user[..end]
}

/// Request-URI with its host (and port) replaced by `uri_host`, keeping scheme, user,
/// parameters and headers. A URI we cannot parse is sent to `sip:uri_host`.
pub(super) fn retarget_uri(uri: &[u8], uri_host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(uri.len() + uri_host.len());
    match SipUri::parse(uri) {
        Ok(parsed) => {
            let scheme: &[u8] = if parsed.scheme.eq_ignore_ascii_case(b"sips") {
                b"sips"
            } else {
                b"sip"
            };
            out.extend_from_slice(scheme);
            out.push(b':');
            if let Some(user) = parsed.user {
                out.extend_from_slice(user);
                out.push(b'@');
            }
            out.extend_from_slice(uri_host.as_bytes());
            out.extend_from_slice(parsed.params);
            if !parsed.headers.is_empty() {
                out.push(b'?');
                out.extend_from_slice(parsed.headers);
            }
        }
        Err(_) => {
            out.extend_from_slice(b"sip:");
            out.extend_from_slice(uri_host.as_bytes());
        }
    }
    out
}

/// The first Contact's URI.
pub(super) fn contact_uri(msg: &SipMessage) -> Option<Box<[u8]>> {
    let value = msg.values(HeaderName::Contact).next()?;
    let na = NameAddr::parse(value).ok()?;
    Some(na.uri.into())
}

/// `IP:port` of a SIP URI whose host is an IP literal.
pub(super) fn uri_socket_addr(uri: &[u8]) -> Option<SocketAddr> {
    let uri = SipUri::parse(uri).ok()?;
    let ip: IpAddr = std::str::from_utf8(uri.host).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}
