//! Requests in: transaction matching, CANCEL, Max-Forwards and loop checks, routing (by
//! policy for new requests, by the dialog table in dialog) and stateful forwarding.

use super::addressing::{contact_uri, user_part};
use super::branch::Branch;
use super::event::{EndReason, Event, Refusal};
use super::media::Role;
use super::parties::call_parties;
use super::state::{
    Answer, ClientState, ClientTx, Dialog, Key, Leg, Owner, ResponseContext, ServerState, ServerTx,
    Sub, dialog_key,
};
use super::timer::Timer;
use super::{BRANCH_PREFIX, Fnv, Proxy};
use crate::admission::RejectReason;
use crate::message::rewrite;
use crate::message::{HeaderName, Method, SipMessage, SipUri};
use crate::metrics::{Direction, ProxyMetrics};
use crate::routing::{Party, Target};
use crate::transport::Flow;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Where and how a request is forwarded.
pub(super) struct Forward {
    pub party: Party,
    pub address: SocketAddr,
    pub flow: Flow,
    pub request_uri: Option<Vec<u8>>,
    pub dialog: Option<u64>,
    /// Sent by the caller's side of `dialog` (initial requests always are).
    pub from_caller: bool,
    /// A replacement body (anchored SDP).
    pub body: Option<Vec<u8>>,
}

impl Proxy {
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        msg: SipMessage,
    ) {
        let Some(method) = msg.method() else { return };
        ProxyMetrics::inc(&self.metrics.requests[method.index()]);
        if let Some(user_agent) = msg.first(HeaderName::UserAgent) {
            if self.admission.blocked_user_agent(party, user_agent) {
                self.metrics.reject(0, RejectReason::UserAgent);
                tracing::debug!(
                    %source,
                    user_agent = %String::from_utf8_lossy(user_agent),
                    "blocked User-Agent dropped"
                );
                return;
            }
        }

        if method == Method::Ack {
            // ACK for a non-2xx final we sent is absorbed by our server transaction;
            // anything else is an ACK for a 2xx: end to end, routed by the dialog table.
            if let Some(id) = self.match_server(&msg, b'I') {
                if self.absorb_ack(now, id) {
                    return;
                }
            }
            if msg.max_forwards() == Some(0) {
                return;
            }
            self.forward_ack(flow, source, msg);
            return;
        }

        let class = method_class(method, &msg);
        if let Some(id) = self.match_server(&msg, class) {
            self.retransmitted_request(id);
            return;
        }
        if method == Method::Cancel {
            self.cancel(now, flow, source, msg);
            return;
        }

        if let Some(uri) = msg.request_uri() {
            if !routable_scheme(uri) {
                // RFC 3261 §16.3 step 2: a scheme we cannot route (parse already refused
                // malformed sip, sips and tel URIs).
                self.metrics.reject(0, RejectReason::Unsupported);
                self.respond_local(&msg, flow, source, 416, "Unsupported URI Scheme", &[]);
                return;
            }
        }

        let to_us = self.addressed_to_us(&msg);
        if method == Method::Options && to_us && msg.to_tag().is_none() {
            // Keepalive probes from the PBX and providers (RFC 3261 §11).
            self.respond_local(&msg, flow, source, 200, "OK", &[ALLOW, ACCEPT]);
            return;
        }
        if msg.max_forwards() == Some(0) {
            ProxyMetrics::inc(&self.metrics.too_many_hops);
            self.respond_local(&msg, flow, source, 483, "Too Many Hops", &[]);
            return;
        }
        if self.has_our_via(&msg) {
            ProxyMetrics::inc(&self.metrics.loops);
            tracing::warn!(call_id = %String::from_utf8_lossy(msg.call_id()), "loop detected");
            self.respond_local(&msg, flow, source, 482, "Loop Detected", &[]);
            return;
        }

        if let Some(unsupported) = unsupported_proxy_options(&msg) {
            // RFC 3261 §16.3 step 5: option tags this proxy does not understand.
            self.metrics.reject(0, RejectReason::Unsupported);
            let line = format!("Unsupported: {unsupported}");
            self.respond_local(&msg, flow, source, 420, "Bad Extension", &[line.as_bytes()]);
            return;
        }

        if msg.to_tag().is_some() {
            self.in_dialog(now, flow, source, msg);
        } else {
            self.out_of_dialog(now, flow, source, party, msg);
        }
    }

    /// `503` with `Retry-After: retry` seconds (drain, limits, REGISTER storms).
    fn unavailable(&mut self, msg: &SipMessage, flow: Flow, source: SocketAddr, retry: u32) {
        let retry_after = format!("Retry-After: {retry}");
        let reason = "Service Unavailable";
        self.respond_local(msg, flow, source, 503, reason, &[retry_after.as_bytes()]);
    }

    /// `481`: a CANCEL or in-dialog request that matches nothing we know.
    fn no_such_call(&mut self, msg: &SipMessage, flow: Flow, source: SocketAddr) {
        let reason = "Call/Transaction Does Not Exist";
        self.respond_local(msg, flow, source, 481, reason, &[]);
    }

    /// Server transaction key (RFC 3261 §17.2.3): top Via branch and sent-by, plus the
    /// method class (`I` for INVITE and its ACK, `C` for CANCEL, else the method token).
    /// Requests without the RFC 3261 magic cookie fall back to Call-ID, CSeq and From tag.
    pub(super) fn server_key(msg: &SipMessage, class: u8) -> Key {
        let via = msg.top_via();
        let mut key = Key::new();
        match via.branch() {
            // A bare cookie carries no identifier (RFC 4475 §3.2.1): keyed as RFC 2543.
            Some(branch) if branch.len() > 7 && branch.starts_with(b"z9hG4bK") => {
                key.extend_from_slice(branch)
            }
            _ => {
                key.extend_from_slice(msg.call_id());
                key.extend_from_slice(&msg.cseq().0.to_be_bytes());
                key.extend_from_slice(msg.from_tag().unwrap_or_default());
            }
        }
        key.push(0);
        key.extend_from_slice(via.host);
        key.extend_from_slice(&via.port.unwrap_or(0).to_be_bytes());
        key.push(0);
        if class == b'O' {
            key.extend_from_slice(msg.method_token().unwrap_or_default());
        } else {
            key.push(class);
        }
        key
    }

    fn match_server(&self, msg: &SipMessage, class: u8) -> Option<u64> {
        self.server_index
            .get(&Self::server_key(msg, class)[..])
            .copied()
    }

    /// Returns true when the ACK belonged to this transaction (absorbed).
    fn absorb_ack(&mut self, now: Instant, id: u64) -> bool {
        let t4 = self.config.timers.t4;
        let Some(server) = self.finished_servers.get_mut(&id) else {
            // Still without a final: an ACK for a 2xx of an RFC 2543 peer; forwarded.
            return false;
        };
        match server.state {
            ServerState::Completed => {
                server.state = ServerState::Confirmed;
                let reliable = server
                    .answer
                    .as_deref()
                    .is_some_and(|a| a.flow.transport.is_reliable());
                let wait = if reliable { Default::default() } else { t4 };
                self.timers.arm(now + wait, Timer::ServerExpire(id));
                true
            }
            ServerState::Confirmed => true,
            // RFC 2543 peers reuse the INVITE's branch key for the 2xx ACK: forward it.
            ServerState::Accepted => false,
        }
    }

    fn retransmitted_request(&mut self, id: u64) {
        self.send_trying(id);
        let resend = match (self.servers.get(&id), self.finished_servers.get(&id)) {
            (Some(server), _) => server
                .last_response
                .clone()
                .map(|data| (server.flow, server.source, data)),
            // Completed: the final again; Confirmed, Accepted: absorbed.
            (None, Some(record)) => record
                .answer
                .as_deref()
                .filter(|_| record.state == ServerState::Completed)
                .map(|a| (a.flow, a.source, a.response.clone())),
            (None, None) => None,
        };
        if let Some((flow, source, data)) = resend {
            self.send(flow, source, data);
        }
    }

    fn cancel(&mut self, now: Instant, flow: Flow, source: SocketAddr, msg: SipMessage) {
        let Some(invite_id) = self.match_server(&msg, b'I') else {
            self.no_such_call(&msg, flow, source);
            return;
        };
        // 200 for the CANCEL itself, remembered so a retransmitted CANCEL gets it again.
        let ok = self.respond_local(&msg, flow, source, 200, "OK", &[]);
        let key = Self::server_key(&msg, b'C');
        let id = self.next_id();
        // Completed from the start: only the key and the 200 are remembered (Timer J).
        let answer = Answer {
            response: ok,
            flow,
            source,
            retransmit: self.config.timers.t1,
            cseq: msg.cseq().0,
        };
        self.insert_finished_server(id, &key, ServerState::Completed, Some(Box::new(answer)));
        self.tx_created();
        let wait = self.wait_j(flow);
        self.timers.arm(now + wait, Timer::ServerExpire(id));

        // Only an INVITE still without its final can be cancelled.
        let Some(invite) = self.servers.get_mut(&invite_id) else {
            return;
        };
        if invite.canceled {
            return;
        }
        invite.canceled = true;
        self.cancel_branch(now, invite_id);
    }

    /// 100 Trying for an INVITE server transaction that has sent nothing yet.
    pub(super) fn send_trying(&mut self, id: u64) {
        let Some(server) = self.servers.get(&id) else {
            return;
        };
        if server.method != Method::Invite || server.last_response.is_some() {
            return;
        }
        let (flow, source) = (server.flow, server.source);
        let Ok(req) = SipMessage::parse(server.request.clone(), &super::OWN_LIMITS) else {
            return;
        };
        let trying = self.respond_local(&req, flow, source, 100, "Trying", &[]);
        if let Some(server) = self.servers.get_mut(&id) {
            server.last_response = Some(trying);
        }
    }

    /// Send CANCEL downstream for client transaction `id` (RFC 3261 §9.1, §16.10).
    pub(super) fn send_cancel(&mut self, now: Instant, id: u64) {
        if self.clients.contains_key(&(id, Sub::Cancel)) {
            return;
        }
        let Some(client) = self.clients.get(&(id, Sub::Main)) else {
            return;
        };
        let (flow, destination, party) = (client.flow, client.destination, client.party);
        // Whatever happens below, an INVITE we meant to cancel is given up in 64*T1.
        self.timers
            .arm(now + self.config.timers.t1 * 64, Timer::CancelGuard(id));
        let Ok(sent) = SipMessage::parse(client.request.clone(), &super::OWN_LIMITS) else {
            return;
        };
        let mut out = BytesMut::with_capacity(sent.as_bytes().len() / 2);
        rewrite::ack_or_cancel(&sent, Method::Cancel, None, &mut out);
        let data = out.freeze();
        self.send(flow, destination, data.clone());
        self.insert_client(
            now,
            id,
            Sub::Cancel,
            Method::Cancel,
            data,
            flow,
            destination,
            party,
            Owner::Own,
        );
    }

    fn in_dialog(&mut self, now: Instant, flow: Flow, source: SocketAddr, msg: SipMessage) {
        let Some((dialog_id, from_caller)) = self.find_dialog(&msg) else {
            self.no_such_call(&msg, flow, source);
            return;
        };
        let method = msg.method();
        let Some(dialog) = self.dialogs.get_mut(&dialog_id) else {
            return;
        };
        dialog.last_activity = now;
        Self::note_cseq(dialog, from_caller, msg.cseq().0);
        let leg = if from_caller {
            dialog.callee.clone()
        } else {
            dialog.caller.clone()
        };
        let request_uri = self.in_dialog_request_uri(&msg, &leg);
        let role = match method {
            Some(Method::Invite | Method::Update) => Some(Role::Offer),
            Some(Method::Prack) => Some(Role::Answer),
            _ => None,
        };
        let body = match role.map(|role| self.anchor_body(dialog_id, from_caller, &msg, role)) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(body))) => Some(body),
            Some(Err(failure)) if role == Some(Role::Offer) => {
                // The offer cannot be anchored: refuse it; the call stays as it was.
                self.refuse_offer(now, &msg, flow, source, failure);
                return;
            }
            Some(Err(_)) => None,
        };
        // Target refresh (RFC 3261 §12.2.2): the sender's new Contact.
        if matches!(method, Some(Method::Invite | Method::Update)) {
            if let (Some(contact), Some(dialog)) =
                (contact_uri(&msg), self.dialogs.get_mut(&dialog_id))
            {
                let leg = if from_caller {
                    &mut dialog.caller
                } else {
                    &mut dialog.callee
                };
                leg.contact = Some(contact);
            }
        }
        let (address, next_flow) = self.in_dialog_next_hop(&msg, request_uri.as_deref(), &leg);
        let forward = Forward {
            party: leg.party,
            address,
            flow: next_flow,
            request_uri,
            dialog: Some(dialog_id),
            from_caller,
            body,
        };
        self.forward_in_dialog(now, flow, source, &msg, forward);
    }

    /// When the Request-URI names Trunkgate (peers that ignore Record-Route, such as SIPp's
    /// built-in scenarios), address the other side's Contact instead.
    fn in_dialog_request_uri(&self, msg: &SipMessage, leg: &Leg) -> Option<Vec<u8>> {
        let uri = SipUri::parse(msg.request_uri()?).ok()?;
        if !self.is_us(uri.host, uri.port) {
            return None;
        }
        leg.contact.as_ref().map(|c| c.to_vec())
    }

    /// Find the dialog of an in-dialog request or response, and whether it was sent by the
    /// caller (From tag = the caller's tag).
    pub(super) fn find_dialog(&self, msg: &SipMessage) -> Option<(u64, bool)> {
        if let Some(found) = self.find_fork(msg) {
            return Some(found);
        }
        let call_id = msg.call_id();
        if let Some(tag) = msg.from_tag() {
            if let Some(&id) = self.dialog_index.get(&dialog_key(call_id, tag)[..]) {
                return Some((id, true));
            }
        }
        let tag = msg.to_tag()?;
        self.dialog_index
            .get(&dialog_key(call_id, tag)[..])
            .map(|&id| (id, false))
    }

    /// ACK for a 2xx: forwarded statelessly along the dialog (RFC 3261 §16.11), with a
    /// branch derived from the incoming one so retransmissions keep theirs.
    fn forward_ack(&mut self, flow: Flow, source: SocketAddr, msg: SipMessage) {
        let _ = (flow, source);
        let Some((dialog_id, from_caller)) = self.find_dialog(&msg) else {
            tracing::debug!(call_id = %String::from_utf8_lossy(msg.call_id()), "ACK outside any dialog dropped");
            return;
        };
        let Some(dialog) = self.dialogs.get(&dialog_id) else {
            return;
        };
        let leg = if from_caller {
            dialog.callee.clone()
        } else {
            dialog.caller.clone()
        };
        let from = dialog.toward(!from_caller).party;
        let mut h = Fnv::new(self.salt);
        h.write(msg.top_via().branch().unwrap_or_default());
        h.write(msg.call_id());
        let branch = format!("{BRANCH_PREFIX}a{:x}", h.finish());
        let request_uri = self.in_dialog_request_uri(&msg, &leg);
        // An answer to a late offer (offer in the 2xx) rides in the ACK.
        let body = self
            .anchor_body(dialog_id, from_caller, &msg, Role::Answer)
            .ok()
            .flatten();
        let (address, next_flow) = self.in_dialog_next_hop(&msg, request_uri.as_deref(), &leg);
        let data = self.build_request(
            &msg,
            &next_flow,
            &branch,
            &[],
            request_uri.as_deref(),
            body.as_deref(),
            (leg.cseq_offset > 0).then(|| msg.cseq().0.wrapping_add(leg.cseq_offset)),
        );
        let data = self.normalised(data, leg.party, from);
        self.send(next_flow, address, data);
    }

    fn out_of_dialog(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        msg: SipMessage,
    ) {
        let method = msg.method();
        let invite = method == Some(Method::Invite);
        if invite && self.shutting_down {
            ProxyMetrics::inc(&self.metrics.shutdown_rejects);
            self.call_rejected(&msg, party, source, None, None, 503, Refusal::ShuttingDown);
            self.unavailable(&msg, flow, source, 30);
            return;
        }
        let user = msg
            .request_uri()
            .and_then(|uri| SipUri::parse(uri).ok())
            .and_then(|uri| uri.user)
            .map(|user| user_part(user).to_vec());
        if method == Some(Method::Register) {
            if let Some(retry) = self.admission.try_register(party) {
                self.metrics.reject(0, RejectReason::RegisterRate);
                self.unavailable(&msg, flow, source, retry);
                return;
            }
        }
        let mut candidates = std::mem::take(&mut self.scratch);
        candidates.clear();
        let load = super::SessionLoad(&self.sessions);
        let choice = self
            .routing
            .candidates(now, party, user.as_deref(), &load, &mut candidates);
        let test = self.injected;
        if let Some(prefer) = test.and_then(|t| t.prefer) {
            // A test call of one trunk: its candidates first, the route's others after
            // (stable: each group keeps the route's order). A trunk on no route for the
            // number is tried on its own (still not when it is down or drilled out).
            let preferred = Party::Trunk(prefer);
            if !candidates.iter().any(|c| c.party == preferred) {
                let mut own = Vec::new();
                self.routing.trunk_candidates(now, prefer, &mut own);
                candidates.splice(0..0, own);
            }
            candidates.sort_by_key(|c| c.party != preferred);
        }
        let mut remaining: std::collections::VecDeque<Target> = candidates.drain(..).collect();
        self.scratch = candidates;
        if remaining.is_empty() {
            ProxyMetrics::inc(&self.metrics.no_route);
            tracing::info!(
                call_id = %String::from_utf8_lossy(msg.call_id()),
                user = %String::from_utf8_lossy(user.as_deref().unwrap_or_default()),
                "no route"
            );
            if invite {
                self.call_rejected(
                    &msg,
                    party,
                    source,
                    choice.route,
                    None,
                    404,
                    Refusal::NoRoute,
                );
            }
            self.respond_local(&msg, flow, source, 404, "No Route", &[]);
            return;
        }
        let counted = test.is_none_or(|t| t.counted);
        let target = if invite && !counted {
            // A test call that takes no capacity: the first candidate, no limit checked.
            remaining.pop_front()
        } else if invite {
            match self.admit_call(party, &mut remaining) {
                Ok(target) => Some(target),
                Err(refused) => {
                    let (trunk, refusal) = match refused {
                        Some((t, reason)) => (Some(t), Refusal::Limit(reason)),
                        None => (None, Refusal::Limit(RejectReason::Sessions)),
                    };
                    self.call_rejected(&msg, party, source, choice.route, trunk, 503, refusal);
                    None
                }
            }
        } else {
            remaining.pop_front()
        };
        let Some(target) = target else {
            tracing::debug!(
                call_id = %String::from_utf8_lossy(msg.call_id()),
                "no trunk under its limits: 503"
            );
            let retry = self.admission.overflow_retry_after();
            self.unavailable(&msg, flow, source, retry);
            return;
        };
        let Some(branch) = self.branch_to(&target, flow, &msg) else {
            tracing::warn!(
                transport = target.transport.unwrap_or(flow.transport).name(),
                "no listener to reach the target"
            );
            if invite {
                let trunk = match target.party {
                    Party::Trunk(t) => Some(t),
                    _ => None,
                };
                self.call_rejected(
                    &msg,
                    party,
                    source,
                    choice.route,
                    trunk,
                    503,
                    Refusal::Unreachable,
                );
            }
            self.respond_local(&msg, flow, source, 503, "Service Unavailable", &[]);
            return;
        };

        let dialog = if invite {
            let Some(caller_tag) = msg.from_tag() else {
                self.respond_local(&msg, flow, source, 400, "Missing From Tag", &[]);
                return;
            };
            let (direction, trunk) = match party {
                Party::Pbx => (Direction::Outbound, target.party),
                _ => (Direction::Inbound, party),
            };
            let trunk_index = match trunk {
                Party::Trunk(t) => Some(t),
                _ => None,
            };
            let account = trunk_index.and_then(|t| self.admission.trunk_account(t));
            let id = self.next_id();
            let index_key = dialog_key(msg.call_id(), caller_tag).to_vec();
            if let Some(old) = self.dialog_index.get(&index_key).copied() {
                // A new INVITE reusing a live dialog's Call-ID and tag: replace it.
                self.remove_dialog(old, EndReason::Other);
            }
            let dialog = Dialog {
                kind: super::state::DialogKind::Call,
                idle_limit: None,
                index_key: index_key.clone(),
                callee_tag: None,
                confirmed: false,
                last_activity: now,
                direction,
                metric_peer: trunk.metric_index(),
                trunk: trunk_index,
                account,
                caller: Leg::caller(party, flow, source, contact_uri(&msg)),
                callee: Leg {
                    party: branch.party,
                    address: branch.address,
                    flow: branch.flow,
                    contact: None,
                    cseq_offset: 0,
                },
                media: self.anchors(trunk_index).then(|| Self::media_dialog(&msg)),
                test: test.is_some(),
                counted,
            };
            self.dialog_index.insert(index_key, id);
            self.dialogs.insert(id, dialog);
            if counted {
                if let Some(t) = trunk_index {
                    self.session_started(t, account, direction);
                }
                self.metrics.dialogs_total.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = self.metrics.peer(trunk.metric_index()) {
                    p.dialogs[direction.index()].fetch_add(1, Ordering::Relaxed);
                }
            }
            self.events.push_back(Event::CallAttempt {
                dialog: id,
                call_id: msg.call_id().into(),
                from: party,
                source,
                route: choice.route,
                parties: call_parties(&msg),
                test: test.is_some(),
            });
            Some(id)
        } else {
            let callee = (branch.party, branch.address, branch.flow);
            self.open_subscription(now, &msg, flow, source, party, callee)
        };
        let anchored = dialog.filter(|_| invite);
        let body = match anchored.map(|id| (id, self.anchor_body(id, true, &msg, Role::Offer))) {
            None | Some((_, Ok(None))) => None,
            Some((_, Ok(Some(body)))) => Some(body),
            Some((id, Err(failure))) => {
                self.remove_dialog(id, EndReason::Rejected(488));
                self.refuse_offer(now, &msg, flow, source, failure);
                return;
            }
        };
        let server_id = self.open_server(now, flow, source, &msg, dialog, true, true);
        let body = body.map(Bytes::from);
        if let Some(server) = self.servers.get_mut(&server_id) {
            server.context = Some(Box::new(ResponseContext {
                remaining,
                attempts: 0,
                route: choice.route,
                failover: choice.failover,
                body: body.clone(),
                last_failure: None,
                ringing: false,
            }));
        }
        self.timers.arm(
            now + choice.failover.setup_timeout,
            Timer::SetupTimeout(server_id),
        );
        self.start_branch(now, server_id, &msg, branch, body.as_deref());
    }

    /// An in-dialog request: one branch, along the dialog.
    fn forward_in_dialog(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        msg: &SipMessage,
        fwd: Forward,
    ) {
        let server_id =
            self.open_server(now, flow, source, msg, fwd.dialog, false, fwd.from_caller);
        let branch = Branch {
            party: fwd.party,
            address: fwd.address,
            flow: fwd.flow,
            request_uri: fwd.request_uri,
            record_route: false,
            local_answer: None,
        };
        self.start_branch(now, server_id, msg, branch, fwd.body.as_deref());
    }

    /// Create the server transaction for `msg` (and 100 Trying for INVITE, sent only if
    /// nothing else went upstream within 200 ms, RFC 3261 §17.2.1: on a healthy trunk the
    /// 180 comes first and the 100 is never sent).
    #[allow(clippy::too_many_arguments)]
    fn open_server(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        msg: &SipMessage,
        dialog: Option<u64>,
        initial: bool,
        from_caller: bool,
    ) -> u64 {
        let server_id = self.next_id();
        let Some(method) = msg.method() else {
            return server_id;
        };
        let key = Self::server_key(msg, method_class(method, msg));
        self.insert_server(now, server_id, key, msg, flow, source);
        if method == Method::Invite {
            self.timers
                .arm(now + TRYING_DELAY, Timer::Trying(server_id));
        }
        if let Some(server) = self.servers.get_mut(&server_id) {
            server.dialog = dialog;
            // The request that creates its dialog: an INVITE, or a SUBSCRIBE/REFER whose
            // subscription is tracked.
            server.initial = initial && (method == Method::Invite || dialog.is_some());
            server.from_caller = from_caller;
        }
        server_id
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_server(
        &mut self,
        now: Instant,
        id: u64,
        key: Key,
        msg: &SipMessage,
        flow: Flow,
        source: SocketAddr,
    ) {
        let Some(method) = msg.method() else { return };
        let key: std::sync::Arc<[u8]> = key[..].into();
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerTx {
                key,
                method,
                flow,
                source,
                request: Bytes::copy_from_slice(msg.as_bytes()),
                last_response: None,
                client: None,
                context: None,
                arrived: now,
                dialog: None,
                initial: false,
                canceled: false,
                from_caller: true,
                cseq: msg.cseq().0,
            },
        );
        self.tx_created();
    }

    /// Register a client transaction for a request just sent and arm its timers
    /// (A+B for INVITE, E+F otherwise; retransmissions over UDP only).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_client(
        &mut self,
        now: Instant,
        id: u64,
        sub: Sub,
        method: Method,
        request: Bytes,
        flow: Flow,
        destination: SocketAddr,
        party: Party,
        owner: Owner,
    ) {
        let t = self.config.timers;
        self.clients.insert(
            (id, sub),
            ClientTx {
                method,
                state: ClientState::Calling,
                request,
                flow,
                destination,
                party,
                retransmit: t.t1,
                owner,
                sent: now,
                first_provisional: None,
                abandoned: false,
                provisional: false,
                cancel_pending: false,
                timer_c: None,
                auth_tries: 0,
            },
        );
        self.tx_created();
        if !flow.transport.is_reliable() {
            self.timers
                .arm(now + t.t1, Timer::ClientRetransmit(id, sub));
        }
        self.timers
            .arm(now + t.t1 * 64, Timer::ClientTimeout(id, sub));
    }

    fn wait_j(&self, flow: Flow) -> std::time::Duration {
        if flow.transport.is_reliable() {
            std::time::Duration::ZERO
        } else {
            self.config.timers.t1 * 64
        }
    }
}

/// How long an INVITE may wait for a downstream provisional before we send 100 Trying.
const TRYING_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

const ALLOW: &[u8] =
    b"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE";
const ACCEPT: &[u8] = b"Accept: application/sdp";

/// Request-URI schemes Trunkgate routes: sip, sips and tel (case-insensitive).
fn routable_scheme(uri: &[u8]) -> bool {
    let scheme = uri.split(|&b| b == b':').next().unwrap_or_default();
    [&b"sip"[..], b"sips", b"tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

/// Proxy-Require option tags Trunkgate implements as a proxy: none. (Require is the UAS's
/// business and passes through; Supported is not looked at.)
const PROXY_OPTIONS: &[&[u8]] = &[];

/// The Proxy-Require option tags of `msg` we do not support, as the `Unsupported` value
/// (comma-separated, as written), or `None` when there are none.
fn unsupported_proxy_options(msg: &SipMessage) -> Option<String> {
    let mut out: Option<String> = None;
    for tag in msg.values(HeaderName::ProxyRequire) {
        if PROXY_OPTIONS
            .iter()
            .any(|known| tag.eq_ignore_ascii_case(known))
        {
            continue;
        }
        let list = out.get_or_insert_with(String::new);
        if !list.is_empty() {
            list.push_str(", ");
        }
        list.push_str(&String::from_utf8_lossy(tag));
    }
    out
}

/// Server-transaction method class: INVITE and ACK share `I`, CANCEL is `C`, other methods
/// are keyed by their token (`O`).
pub(super) fn method_class(method: Method, _msg: &SipMessage) -> u8 {
    match method {
        Method::Invite | Method::Ack => b'I',
        Method::Cancel => b'C',
        _ => b'O',
    }
}
