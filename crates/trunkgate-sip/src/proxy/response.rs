//! Responses in: matched to our client transactions by branch, relayed upstream through the
//! server transaction (RFC 3261 §16.7, no forking: the only branch's response is the best),
//! ACK generated for non-2xx finals, dialogs confirmed or ended; and what the timers do.

use super::Proxy;
use super::addressing::contact_uri;
use super::event::{EndReason, Event, Outcome, ProbeResult};
use super::state::{Answer, ClientState, Owner, SentAck, ServerState, Sub};
use super::timer::Timer;
use crate::message::rewrite::{self, Edits};
use crate::message::{HeaderName, Method, SipMessage};
use crate::metrics::ProxyMetrics;
use crate::routing::Party;
use crate::transport::Flow;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Proxy {
    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        msg: SipMessage,
    ) {
        let Some(code) = msg.status() else { return };
        self.count_response(party.metric_index(), code);
        let cseq_method = msg.cseq().1;
        let sub = if cseq_method == Method::Cancel {
            Sub::Cancel
        } else {
            Sub::Main
        };
        let Some(id) = msg.top_via().branch().and_then(|b| self.id_from_branch(b)) else {
            tracing::debug!(code, "response not addressed to our Via dropped");
            return;
        };
        let Some(client) = self.clients.get(&(id, sub)) else {
            if self.finished_client_response(now, id, sub, flow, source, party, &msg) {
                return;
            }
            if cseq_method == Method::Invite && (200..300).contains(&code) {
                self.forward_stray_2xx(now, flow, source, party, &msg);
            }
            return;
        };
        if sub == Sub::Cancel {
            if code >= 200 {
                self.complete_client(now, id, sub, None);
            }
            return;
        }
        match client.owner {
            Owner::Probe => {
                if code >= 200 {
                    self.probe_done(now, id, ProbeResult::Reply(code));
                }
                return;
            }
            Owner::Own => {
                if code >= 200 {
                    self.complete_client(now, id, sub, None);
                }
                return;
            }
            Owner::Register { trunk } => {
                self.register_response(now, id, trunk, &msg);
                return;
            }
            Owner::Branch { .. } => {}
        }
        if client.method == Method::Invite {
            match code {
                100..=199 => self.invite_provisional(now, id, code, &msg),
                200..=299 => self.invite_success(now, id, flow, &msg),
                _ => self.invite_failure(now, id, &msg),
            }
        } else {
            self.non_invite_response(now, id, code, &msg);
        }
    }

    fn invite_provisional(&mut self, now: Instant, id: u64, code: u16, msg: &SipMessage) {
        let timer_c = self.config.timers.timer_c;
        let Some(client) = self.clients.get_mut(&(id, Sub::Main)) else {
            return;
        };
        if client.state == ClientState::Completed {
            return;
        }
        client.state = ClientState::Proceeding;
        client.provisional = true;
        client.first_provisional.get_or_insert(now);
        let cancel = std::mem::take(&mut client.cancel_pending);
        if code > 100 {
            client.timer_c = Some(now + timer_c);
        }
        let (server, abandoned) = (client.server(), client.abandoned);
        if cancel {
            self.send_cancel(now, id);
        }
        if code == 100 || abandoned {
            return;
        }
        let Some(server_id) = server else { return };
        let current = self
            .servers
            .get(&server_id)
            .is_some_and(|s| s.client == Some(id));
        if current {
            let data = self.relay_upstream(server_id, msg);
            if let (Some(data), Some(s)) = (data, self.servers.get_mut(&server_id)) {
                s.last_response = Some(data);
                if let Some(ctx) = s.context.as_deref_mut() {
                    ctx.ringing = true;
                }
            }
        }
    }

    fn invite_success(&mut self, now: Instant, id: u64, flow: Flow, msg: &SipMessage) {
        let Some(client) = self.clients.get(&(id, Sub::Main)) else {
            return;
        };
        let server = client.server();
        if client.abandoned {
            // Another branch took the call, the caller cancelled, or the setup time ran
            // out: never a second answer to the caller; this callee is hung up on.
            let (cflow, destination, party) = (client.flow, client.destination, client.party);
            self.remove_client(id, Sub::Main);
            self.end_abandoned_2xx(now, msg, cflow, destination, party);
            return;
        }
        let code = msg.status().unwrap_or(200);
        self.branch_ended(now, id, Outcome::Final(code), Some(msg), false);
        // Nothing is retransmitted, ACKed or cancelled after a 2xx, and retransmissions of
        // this 2xx (or 2xx from other forks) are relayed along the dialog by
        // `forward_stray_2xx`: the client transaction can go now instead of holding memory
        // for Timer M's 32 s.
        self.remove_client(id, Sub::Main);
        self.relay_2xx(now, server, flow, msg);
    }

    /// Relay the 2xx `msg` of a branch of server transaction `server` (RFC 3261 §16.7 step
    /// 10: every 2xx, also after the transaction's final), and confirm its dialog.
    pub(super) fn relay_2xx(
        &mut self,
        now: Instant,
        server: Option<u64>,
        flow: Flow,
        msg: &SipMessage,
    ) {
        let Some(server_id) = server else { return };
        // Every 2xx is relayed (RFC 3261 §16.7 step 10).
        let Some(data) = self.relay_upstream(server_id, msg) else {
            self.forward_stray_2xx(now, flow, flow.local, Party::Unknown, msg);
            return;
        };
        // A 2xx after the transaction's final changes nothing here.
        let Some(s) = self.servers.get(&server_id) else {
            return;
        };
        let dialog = s.dialog;
        let initial = s.initial;
        let arrived = s.arrived;
        self.finish_server(now, server_id, data, 200);
        if let Some(dialog_id) = dialog {
            // The callee's route set, for BYEs of our own (anchored calls only).
            let anchored = self
                .dialogs
                .get(&dialog_id)
                .is_some_and(|d| d.media.is_some());
            let callee_route = anchored.then(|| self.callee_route(msg));
            if let Some(dialog) = self.dialogs.get_mut(&dialog_id) {
                if initial && !dialog.confirmed {
                    dialog.confirmed = true;
                    dialog.last_activity = now;
                    let expire = now + self.config.dialog_timeout;
                    self.timers.arm(expire, Timer::DialogExpire(dialog_id));
                    dialog.callee_tag = msg.to_tag().map(Into::into);
                    if let (Some(md), Some(route)) = (dialog.media.as_deref_mut(), callee_route) {
                        md.to = Some(msg.to_value().into());
                        md.callee_route = route;
                    }
                    if let Some(contact) = contact_uri(msg) {
                        dialog.callee.contact = Some(contact);
                    }
                    if flow.transport.is_stream() {
                        dialog.callee.flow = flow;
                    }
                    let to = dialog.callee.party;
                    self.events.push_back(Event::CallAnswered {
                        dialog: dialog_id,
                        to,
                        setup: now.duration_since(arrived),
                    });
                }
            }
        }
    }

    fn invite_failure(&mut self, now: Instant, id: u64, msg: &SipMessage) {
        let Some(client) = self.clients.get_mut(&(id, Sub::Main)) else {
            return;
        };
        // (A retransmission of this final finds the finished record: its ACK is sent again
        // there, `finished_client_response`.)
        client.state = ClientState::Completed;
        let abandoned = client.abandoned;
        let ack = self.send_ack(id, msg);
        if !abandoned {
            let code = msg.status().unwrap_or(500);
            self.branch_ended(now, id, Outcome::Final(code), Some(msg), true);
        }
        self.complete_client(now, id, Sub::Main, ack);
    }

    fn non_invite_response(&mut self, now: Instant, id: u64, code: u16, msg: &SipMessage) {
        let Some(client) = self.clients.get_mut(&(id, Sub::Main)) else {
            return;
        };
        let (server, abandoned) = (client.server(), client.abandoned);
        if code < 200 {
            client.state = ClientState::Proceeding;
            client.first_provisional.get_or_insert(now);
        } else {
            // (A challenge may be answered with this request again, `auth.rs`: the request
            // goes with the rest when the transaction is finished, after the decision.)
            client.state = ClientState::Completed;
        }
        if abandoned {
            if code >= 200 {
                self.complete_client(now, id, Sub::Main, None);
            }
            return;
        }
        if code >= 300 {
            self.branch_ended(now, id, Outcome::Final(code), Some(msg), true);
            self.complete_client(now, id, Sub::Main, None);
            return;
        }
        if code >= 200 {
            self.branch_ended(now, id, Outcome::Final(code), Some(msg), false);
            self.complete_client(now, id, Sub::Main, None);
        }
        let Some(server_id) = server else { return };
        let proceeding = self
            .servers
            .get(&server_id)
            .is_some_and(|s| s.client == Some(id));
        if !proceeding || code == 100 {
            return;
        }
        let Some(data) = self.relay_upstream(server_id, msg) else {
            return;
        };
        if code >= 200 {
            if let Some(dialog) = self.servers.get(&server_id).and_then(|s| s.dialog) {
                self.subscription_answered(dialog, msg);
            }
            self.finish_server(now, server_id, data, code);
        } else if let Some(s) = self.servers.get_mut(&server_id) {
            s.last_response = Some(data);
        }
    }

    /// Client transaction got its final answer: it becomes a finished record (with `ack`,
    /// the ACK of an INVITE's non-2xx final) until Timer D (INVITE) or K (others).
    fn complete_client(&mut self, now: Instant, id: u64, sub: Sub, ack: Option<Box<SentAck>>) {
        let t = self.config.timers;
        let Some(client) = self.clients.get(&(id, sub)) else {
            return;
        };
        let wait = match (client.flow.transport.is_reliable(), client.method) {
            (true, _) => Duration::ZERO,
            (false, Method::Invite) => Duration::from_secs(32).max(t.t1 * 64),
            (false, _) => t.t4,
        };
        self.client_finished(id, sub, ack);
        self.timers.arm(now + wait, Timer::ClientExpire(id, sub));
    }

    /// ACK for a non-2xx final response to the INVITE of client transaction `id`; returns
    /// it (with where it went) for the finished record.
    fn send_ack(&mut self, id: u64, response: &SipMessage) -> Option<Box<SentAck>> {
        let client = self.clients.get(&(id, Sub::Main))?;
        let (flow, destination, party) = (client.flow, client.destination, client.party);
        let sent = SipMessage::parse(client.request.clone(), &super::OWN_LIMITS).ok()?;
        // Empty: `ack_or_cancel` reserves what it needs (the ACK is kept for Timer D).
        let mut out = BytesMut::new();
        rewrite::ack_or_cancel(&sent, Method::Ack, Some(response), &mut out);
        let data = out.freeze();
        self.send(flow, destination, data.clone());
        Some(Box::new(SentAck {
            data,
            flow,
            destination,
            party,
        }))
    }

    /// Relay a response upstream through server transaction `server_id`: pop our Via and
    /// send it where the request came from. Returns the bytes sent. After the
    /// transaction's final non-2xx only a 2xx comes here (RFC 3261 §16.7 step 10).
    fn relay_upstream(&mut self, server_id: u64, msg: &SipMessage) -> Option<Bytes> {
        let (flow, source, cseq) = match self.servers.get(&server_id) {
            Some(server) => (server.flow, server.source, server.cseq),
            None => {
                let answer = self.finished_servers.get(&server_id)?.answer.as_deref()?;
                (answer.flow, answer.source, answer.cseq)
            }
        };
        let body = self.anchor_response(server_id, msg);
        // A digest answer sent this branch with a higher CSeq: the caller sees its own.
        let cseq = (msg.cseq().0 != cseq).then_some(cseq);
        let data = pop_via_cseq(msg, body.as_deref(), cseq);
        self.send(flow, source, data.clone());
        Some(data)
    }

    /// A 2xx to INVITE with no client transaction left (retransmitted after Timer M, or
    /// after our server transaction ended): relay it statelessly to the caller's leg of the
    /// dialog. One from a peer that is not the dialog's callee (a branch we gave up, after
    /// its transaction ended), or for a call that is over, is ACKed and ended with BYE:
    /// the caller never sees a second answer. `party`: who sent it (`Unknown`: not known).
    pub(super) fn forward_stray_2xx(
        &mut self,
        now: Instant,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        msg: &SipMessage,
    ) {
        let source_flow = flow;
        // The From tag names who sent the INVITE: the response goes back to that side.
        let Some((dialog_id, from_caller)) = self.find_dialog(msg) else {
            if party != Party::Unknown && msg.cseq().1 == Method::Invite {
                self.end_abandoned_2xx(now, msg, flow, source, party);
            }
            return;
        };
        let Some(dialog) = self.dialogs.get(&dialog_id) else {
            return;
        };
        let (leg, other) = if from_caller {
            (&dialog.caller, &dialog.callee)
        } else {
            (&dialog.callee, &dialog.caller)
        };
        if party != Party::Unknown && party != other.party {
            self.end_abandoned_2xx(now, msg, flow, source, party);
            return;
        }
        let (flow, address) = (leg.flow, leg.address);
        let offset = other.cseq_offset;
        // A retransmission of the 2xx that confirmed the dialog is anchored again (same
        // streams, same ports). A 2xx from another fork is not: its SDP must not redirect
        // the media of the call in progress.
        let same_callee = dialog.callee_tag.as_deref() == msg.to_tag();
        let fork = !same_callee
            && from_caller
            && party != Party::Unknown
            && dialog.kind == super::state::DialogKind::Call
            && dialog.confirmed
            && msg.cseq().1 == Method::Invite;
        let body = if same_callee {
            self.anchor_body(dialog_id, !from_caller, msg, super::media::Role::Answer)
                .ok()
                .flatten()
        } else {
            None
        };
        let cseq = (offset > 0).then(|| msg.cseq().0.wrapping_sub(offset));
        if fork {
            self.add_fork(now, dialog_id, msg, source_flow, source);
        }
        self.send(flow, address, pop_via_cseq(msg, body.as_deref(), cseq));
    }

    /// The server transaction sent its final response `data` (`code`): move to
    /// Completed/Accepted, arm Timers G/H/J/L, and end the dialog when this final ends it.
    pub(super) fn finish_server(&mut self, now: Instant, id: u64, data: Bytes, code: u16) {
        let t = self.config.timers;
        // Past Proceeding the request copy, the response context (candidates, the anchored
        // offer) and the branch are never needed again: the transaction becomes a compact
        // record for Timer G/H/J/L (32 s per call at thousands of calls/s), `finished.rs`.
        let Some(s) = self.servers.remove(&id) else {
            return;
        };
        let udp = !s.flow.transport.is_reliable();
        let invite = s.method == Method::Invite;
        let (dialog, initial, method, from_caller) = (s.dialog, s.initial, s.method, s.from_caller);
        // After a 2xx to INVITE nothing is resent from here (the UAS retransmits its 2xx).
        let accepted = invite && (200..300).contains(&code);
        let answer = (!accepted).then(|| {
            Box::new(Answer {
                response: data,
                flow: s.flow,
                source: s.source,
                retransmit: t.t1,
                cseq: s.cseq,
            })
        });
        let state = if accepted {
            ServerState::Accepted
        } else {
            ServerState::Completed
        };
        self.finished_servers.insert(
            id,
            super::state::FinishedServer {
                key: s.key,
                state,
                answer,
            },
        );
        if accepted {
            self.timers.arm(now + t.t1 * 64, Timer::ServerExpire(id));
        } else if invite {
            if udp {
                self.timers.arm(now + t.t1, Timer::ServerRetransmit(id));
            }
            self.timers.arm(now + t.t1 * 64, Timer::ServerTimeout(id));
        } else {
            let wait = if udp { t.t1 * 64 } else { Duration::ZERO };
            self.timers.arm(now + wait, Timer::ServerExpire(id));
        }
        if let (Some(dialog), false, Method::Invite | Method::Update) = (dialog, initial, method) {
            self.settle_offer(dialog, from_caller, code);
        }
        if let Some(dialog) = dialog {
            if method == Method::Bye && !matches!(code, 401 | 407) {
                // A challenged BYE is sent again with credentials: the call is still up.
                self.remove_dialog(dialog, EndReason::Bye { from_caller });
            } else if initial
                && code >= 300
                && self
                    .dialogs
                    .get(&dialog)
                    .is_some_and(|d| invite || d.kind == super::state::DialogKind::Subscription)
            {
                let reason = if code == 487 {
                    EndReason::Cancelled
                } else {
                    EndReason::Rejected(code)
                };
                self.remove_dialog(dialog, reason);
            } else if !initial && matches!(code, 408 | 481) {
                // RFC 3261 §12.2.1.2: the UAs end the dialog on these; so do we.
                self.remove_dialog(dialog, EndReason::InDialogFailure);
            }
        }
    }

    /// Answer the server transaction ourselves (timeouts): `code` upstream, then finish.
    pub(super) fn fail_upstream(&mut self, now: Instant, id: u64, code: u16, reason: &str) {
        let Some(s) = self.servers.get(&id) else {
            return;
        };
        let (flow, source) = (s.flow, s.source);
        let Ok(req) = SipMessage::parse(s.request.clone(), &super::OWN_LIMITS) else {
            return;
        };
        let data = self.respond_local(&req, flow, source, code, reason, &[]);
        self.finish_server(now, id, data, code);
    }

    pub(super) fn fire(&mut self, now: Instant, timer: Timer) {
        let t = self.config.timers;
        match timer {
            Timer::ServerRetransmit(id) => {
                let Some(s) = self.finished_servers.get_mut(&id) else {
                    return;
                };
                if s.state != ServerState::Completed {
                    return;
                }
                let Some(a) = s.answer.as_deref_mut() else {
                    return;
                };
                a.retransmit = (a.retransmit * 2).min(t.t2);
                let (flow, source, next, data) =
                    (a.flow, a.source, a.retransmit, a.response.clone());
                ProxyMetrics::inc(&self.metrics.retransmissions);
                self.send(flow, source, data);
                self.timers.arm(now + next, Timer::ServerRetransmit(id));
            }
            Timer::ServerTimeout(id) => {
                if self
                    .finished_servers
                    .get(&id)
                    .is_some_and(|s| s.state == ServerState::Completed)
                {
                    tracing::debug!(id, "no ACK for our final response (Timer H)");
                    self.remove_server(id);
                }
            }
            Timer::ServerExpire(id) => {
                if self.finished_servers.contains_key(&id) {
                    self.remove_server(id);
                }
            }
            Timer::ClientRetransmit(id, sub) => {
                let Some(c) = self.clients.get_mut(&(id, sub)) else {
                    return;
                };
                let invite = c.method == Method::Invite;
                let active = !c.abandoned
                    && match c.state {
                        ClientState::Calling => true,
                        ClientState::Proceeding => !invite,
                        ClientState::Completed => false,
                    };
                if !active {
                    return;
                }
                c.retransmit = if invite {
                    c.retransmit * 2
                } else if c.state == ClientState::Proceeding {
                    t.t2
                } else {
                    (c.retransmit * 2).min(t.t2)
                };
                let (flow, destination, data, next) =
                    (c.flow, c.destination, c.request.clone(), c.retransmit);
                ProxyMetrics::inc(&self.metrics.retransmissions);
                self.send(flow, destination, data);
                self.timers
                    .arm(now + next, Timer::ClientRetransmit(id, sub));
            }
            Timer::ClientTimeout(id, sub) => {
                let Some(c) = self.clients.get(&(id, sub)) else {
                    return;
                };
                let timed_out = match c.state {
                    ClientState::Calling => true,
                    ClientState::Proceeding => c.method != Method::Invite,
                    ClientState::Completed => false,
                };
                if !timed_out {
                    return;
                }
                let (owner, abandoned, method, destination) =
                    (c.owner, c.abandoned, c.method, c.destination);
                ProxyMetrics::inc(&self.metrics.timeouts);
                tracing::info!(method = method.as_str(), %destination, "no response downstream (Timer B/F)");
                match (sub, owner) {
                    (Sub::Main, Owner::Branch { .. }) if !abandoned => {
                        self.branch_ended(now, id, Outcome::Timeout, None, true);
                    }
                    (Sub::Main, Owner::Probe) => {
                        self.probe_done(now, id, ProbeResult::Timeout);
                    }
                    (Sub::Main, Owner::Register { trunk }) => {
                        self.register_timeout(now, id, trunk, false);
                    }
                    _ => {}
                }
                self.remove_client(id, sub);
            }
            Timer::ClientExpire(id, sub) => {
                if self.finished_clients.contains_key(&(id, sub)) {
                    self.remove_client(id, sub);
                }
            }
            Timer::Trying(id) => self.send_trying(id),
            Timer::DialogExpire(id) => {
                let Some(dialog) = self.dialogs.get(&id) else {
                    return;
                };
                let timeout = dialog.idle_limit.unwrap_or(self.config.dialog_timeout);
                let idle_until = dialog.last_activity + timeout;
                if idle_until > now {
                    self.timers.arm(idle_until, Timer::DialogExpire(id));
                    return;
                }
                // An anchored call whose media still flows is alive, however long it has
                // gone without a re-INVITE: the media timeout ends it when it goes silent.
                let media_idle = dialog
                    .media
                    .as_ref()
                    .and(self.media.as_ref())
                    .and_then(|m| m.idle(id));
                if media_idle.is_some_and(|idle| idle < timeout) {
                    self.timers.arm(now + timeout, Timer::DialogExpire(id));
                    return;
                }
                ProxyMetrics::inc(&self.metrics.dialogs_expired);
                tracing::warn!(
                    dialog = id,
                    idle = ?timeout,
                    "call forgotten after sip.dialog_timeout without an in-dialog request (lost BYE?)"
                );
                self.remove_dialog(id, EndReason::Expired);
            }
            Timer::CancelGuard(id) => {
                let Some(c) = self.clients.get(&(id, Sub::Main)) else {
                    return;
                };
                if !matches!(c.state, ClientState::Calling | ClientState::Proceeding) {
                    return;
                }
                ProxyMetrics::inc(&self.metrics.timeouts);
                tracing::info!(id, "no final response 64*T1 after CANCEL: INVITE given up");
                self.branch_ended(now, id, Outcome::Timeout, None, false);
                self.remove_client(id, Sub::Main);
            }
            Timer::TimerC(id) => {
                let Some(c) = self.clients.get(&(id, Sub::Main)) else {
                    return;
                };
                if !matches!(c.state, ClientState::Calling | ClientState::Proceeding) {
                    return;
                }
                match c.timer_c {
                    Some(deadline) if deadline > now => {
                        self.timers.arm(deadline, Timer::TimerC(id));
                        return;
                    }
                    _ => {}
                }
                let (provisional, abandoned) = (c.provisional, c.abandoned);
                if abandoned {
                    return;
                }
                ProxyMetrics::inc(&self.metrics.timeouts);
                tracing::info!(
                    id,
                    provisional,
                    "INVITE got no final response in time (Timer C)"
                );
                self.abandon(now, id);
                self.branch_ended(now, id, Outcome::Timeout, None, false);
            }
            Timer::TryTimeout(id) => self.try_timeout(now, id),
            Timer::Register(trunk) => self.register_due(now, trunk),
            Timer::SetupTimeout(id) => self.setup_timeout(now, id),
            Timer::ProbeTimeout(id) => {
                let Some(c) = self.clients.get(&(id, Sub::Main)) else {
                    return;
                };
                if c.owner == Owner::Probe {
                    self.probe_done(now, id, ProbeResult::Timeout);
                }
            }
        }
    }
}

/// The response with our (top) Via removed (and its body replaced, if given), with the CSeq number replaced by `cseq` when given (a response to a request
/// whose CSeq a digest answer bumped).
pub(super) fn pop_via_cseq(msg: &SipMessage, body: Option<&[u8]>, cseq: Option<u32>) -> Bytes {
    let pops = [HeaderName::Via];
    let edits = Edits {
        pop_first_value: &pops,
        body,
        cseq,
        ..Edits::default()
    };
    // Empty: `rewrite` reserves what the result needs, exactly (a capacity given here would
    // be doubled by that reserve, and a relayed final is kept for Timer J).
    let mut out = BytesMut::new();
    rewrite::rewrite(msg, &edits, &mut out);
    out.freeze()
}
