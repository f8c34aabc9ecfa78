//! Requests Trunkgate writes itself: OPTIONS probes to trunks, the ACK and BYE that end a
//! 2xx which arrived on a branch we had given up, and the BYEs of a call whose media died.
//! One builder over byte slices (no text round trip, so a non-UTF-8 Call-ID or tag is
//! copied exactly), and client transactions with an owner (`Owner::Probe`, `Owner::Own`).

use super::Proxy;
use super::state::{Owner, Sub};
use super::timer::Timer;
use crate::message::{Method, SipMessage};
use crate::routing::Target;
use crate::transport::Flow;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The parts of a request of our own. Header values are written byte for byte.
pub(super) struct OwnRequest<'a> {
    pub method: Method,
    pub uri: &'a [u8],
    /// Comma-joined `Route` values; empty: no Route header.
    pub route: &'a [u8],
    pub from: &'a [u8],
    pub to: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: u32,
    /// Further header lines, without CRLF.
    pub extra: &'a [&'a [u8]],
}

impl Proxy {
    /// Write `req` for sending over `flow` with our Via (`branch`).
    pub(super) fn write_own(&self, req: &OwnRequest<'_>, flow: &Flow, branch: &str) -> Bytes {
        let method = req.method.as_str().as_bytes();
        let mut out = BytesMut::with_capacity(512 + req.route.len() + req.to.len());
        for part in [method, b" ", req.uri, b" SIP/2.0\r\nVia: SIP/2.0/"] {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(flow.transport.via_token().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.sent_by(flow).as_bytes());
        out.extend_from_slice(b";branch=");
        out.extend_from_slice(branch.as_bytes());
        out.extend_from_slice(flow.transport.via_suffix().as_bytes());
        out.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
        if !req.route.is_empty() {
            out.extend_from_slice(b"Route: ");
            out.extend_from_slice(req.route);
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in [
            (&b"From: "[..], req.from),
            (b"To: ", req.to),
            (b"Call-ID: ", req.call_id),
        ] {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("CSeq: {} ", req.cseq).as_bytes());
        out.extend_from_slice(method);
        out.extend_from_slice(b"\r\n");
        for line in req.extra {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(self.user_agent_header.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        out.freeze()
    }

    /// Send `req` to `destination` as a new client transaction owned by `owner`. Returns
    /// the transaction id.
    pub(super) fn send_own(
        &mut self,
        now: Instant,
        req: &OwnRequest<'_>,
        flow: Flow,
        destination: SocketAddr,
        party: crate::routing::Party,
        owner: Owner,
    ) -> u64 {
        let id = self.next_id();
        let branch = self.branch_for(id);
        let data = self.write_own(req, &flow, &branch);
        self.send(flow, destination, data.clone());
        self.insert_client(
            now,
            id,
            Sub::Main,
            req.method,
            data,
            flow,
            destination,
            party,
            owner,
        );
        id
    }

    /// Send an OPTIONS probe to `target` (a trunk or a PBX node); its result comes out of
    /// `poll_event()` as [`super::Event::Probe`] within `timeout` (a reply, a timeout or a
    /// transport error). Returns false when no listener can reach the target.
    pub fn probe(&mut self, now: Instant, target: &Target, timeout: Duration) -> bool {
        let transport = target.transport.unwrap_or(crate::transport::Transport::Udp);
        let Some(flow) = self.listener_for(transport, target.address) else {
            return false;
        };
        let uri = format!("sip:{}", target.uri_host);
        let from = format!(
            "<sip:trunkgate@{}>;tag=tgp{:x}",
            self.sent_by(&flow),
            self.salt.rotate_left(17) ^ self.next_id,
        );
        let to = format!("<{uri}>");
        let call_id = format!("tgprobe-{:x}-{:x}", self.salt & 0xffff_ffff, self.next_id);
        let req = OwnRequest {
            method: Method::Options,
            uri: uri.as_bytes(),
            route: b"",
            from: from.as_bytes(),
            to: to.as_bytes(),
            call_id: call_id.as_bytes(),
            cseq: 1,
            extra: &[b"Accept: application/sdp"],
        };
        let id = self.send_own(now, &req, flow, target.address, target.party, Owner::Probe);
        self.timers.arm(now + timeout, Timer::ProbeTimeout(id));
        true
    }

    /// Probe `id` ended with `result`: forget it and report it.
    pub(super) fn probe_done(&mut self, now: Instant, id: u64, result: super::event::ProbeResult) {
        let Some(c) = self.clients.get(&(id, Sub::Main)) else {
            return;
        };
        let event = super::event::Event::Probe {
            to: c.party,
            address: c.destination,
            result,
            rtt: now.duration_since(c.sent),
        };
        self.remove_client(id, Sub::Main);
        self.events.push_back(event);
    }

    /// A 2xx arrived for a branch we had given up (another trunk took the call, the caller
    /// cancelled, the setup time ran out) or for a call that is already over: the callee must
    /// not be left talking to nobody. ACK it (end to end, as its UAC would) and hang up with
    /// BYE. Everything needed is in the 2xx itself (From, Call-ID, CSeq of the INVITE; the
    /// callee's tag, Contact and route set).
    pub(super) fn end_abandoned_2xx(
        &mut self,
        now: Instant,
        ok: &SipMessage,
        flow: Flow,
        destination: SocketAddr,
        party: crate::routing::Party,
    ) {
        let contact = super::addressing::contact_uri(ok);
        let uri: &[u8] = match contact.as_deref() {
            Some(contact) => contact,
            None => return,
        };
        let route = self.callee_route(ok);
        let cseq = ok.cseq().0;
        let mut req = OwnRequest {
            method: Method::Ack,
            uri,
            route: &route,
            from: ok.from_value(),
            to: ok.to_value(),
            call_id: ok.call_id(),
            cseq,
            extra: &[],
        };
        let id = self.next_id();
        let ack = self.write_own(&req, &flow, &self.branch_for(id));
        self.send(flow, destination, ack);
        req.method = Method::Bye;
        req.cseq = cseq.saturating_add(1);
        req.extra = &[b"Reason: SIP;cause=200;text=\"Call completed elsewhere\""];
        self.send_own(now, &req, flow, destination, party, Owner::Own);
        crate::metrics::ProxyMetrics::inc(&self.metrics.late_answers);
        tracing::info!(
            call_id = %String::from_utf8_lossy(ok.call_id()),
            %destination,
            "2xx on an abandoned branch or an ended call: ACKed and ended with BYE"
        );
    }

    /// The Request-URI of a request we send to a dialog leg: its Contact, else its address.
    pub(super) fn leg_uri(leg: &super::state::Leg) -> Vec<u8> {
        match &leg.contact {
            Some(contact) => contact.to_vec(),
            None => format!("sip:{}", leg.address).into_bytes(),
        }
    }
}

/// `Retry-After` seconds of a response, if it carries one (RFC 3261 §20.33: delta-seconds,
/// optionally followed by a comment and parameters).
pub(super) fn retry_after(msg: &SipMessage) -> Option<u32> {
    let value = msg.first_named(b"Retry-After")?;
    let digits: Vec<u8> = value
        .iter()
        .copied()
        .skip_while(u8::is_ascii_whitespace)
        .take_while(u8::is_ascii_digit)
        .take(9)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}
