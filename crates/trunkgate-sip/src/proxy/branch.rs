//! Branches and the one decision point. A request's server transaction owns a response
//! context (candidates still to try, attempts, the last failure); each candidate tried is a
//! branch (a client transaction owned by the server transaction). Every way a branch can end
//! — a final response, Timer B/F/C, the route's try-timeout, a transport error reported by
//! the shell, the caller's CANCEL, the setup timeout — reaches [`Proxy::branch_ended`], which
//! either relays a final upstream or starts the next candidate. When a call moves on, its
//! session count, metrics slot, the dialog's callee leg and its media move with it.

use super::Proxy;
use super::event::{Event, Outcome};
use super::state::{ClientState, Leg, Owner, Sub};
use super::timer::Timer;
use crate::message::{Method, SipMessage, SipUri};
use crate::metrics::{Direction, ProxyMetrics};
use crate::routing::{Party, Target};
use crate::transport::{Flow, Transport};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Where and how one branch is sent.
pub(super) struct Branch {
    pub party: Party,
    pub address: std::net::SocketAddr,
    pub flow: Flow,
    pub request_uri: Option<Vec<u8>>,
    pub record_route: bool,
    /// Answered here with this code instead of being sent (a `reject-503` drill).
    pub local_answer: Option<u16>,
}

impl Proxy {
    /// The branch toward `target` for a request that arrived over `inbound`; `None` when no
    /// listener can reach it.
    pub(super) fn branch_to(
        &self,
        target: &Target,
        inbound: Flow,
        msg: &SipMessage,
    ) -> Option<Branch> {
        let transport = match (target.transport, inbound.transport) {
            (Some(t), _) => t,
            // A test call's request goes on as the PBX's or a trunk's would over UDP.
            (None, Transport::Internal) => Transport::Udp,
            (None, t) => t,
        };
        let flow = self.listener_for(transport, target.address)?;
        let request_uri = msg
            .request_uri()
            .map(|uri| super::addressing::retarget_uri(uri, &target.uri_host));
        Some(Branch {
            party: target.party,
            address: target.address,
            flow,
            request_uri,
            // Dialog-creating requests: their in-dialog requests (NOTIFYs included) come
            // back through us (RFC 3261 §16.6 step 4, RFC 6665 §4.1).
            record_route: matches!(
                msg.method(),
                Some(Method::Invite | Method::Subscribe | Method::Refer)
            ),
            local_answer: target.local_answer,
        })
    }

    /// Send server transaction `server_id`'s request down `branch` as a new client
    /// transaction, and make it the current branch. `msg` is the request as received (for
    /// the first branch) or as stored (for the next ones).
    pub(super) fn start_branch(
        &mut self,
        now: Instant,
        server_id: u64,
        msg: &SipMessage,
        branch: Branch,
        body: Option<&[u8]>,
    ) {
        let Some(method) = msg.method() else { return };
        let Some(server) = self.servers.get(&server_id) else {
            return;
        };
        let inbound = server.flow;
        let dialog = server.dialog;
        let from_caller = server.from_caller;
        // Per-leg CSeq mapping: the leg this request goes to may have had its CSeq bumped
        // by a digest answer earlier in the dialog.
        let offset = dialog
            .and_then(|id| self.dialogs.get(&id))
            .map_or(0, |d| d.toward(from_caller).cseq_offset);
        let cseq = (offset > 0).then(|| msg.cseq().0.wrapping_add(offset));
        let client_id = self.next_id();
        let via_branch = self.branch_for(client_id);
        let mut record_route = Vec::new();
        if branch.record_route {
            // Double Record-Route when the transport changes (RFC 5658).
            let sips = msg
                .request_uri()
                .and_then(|uri| SipUri::parse(uri).ok())
                .is_some_and(|uri| uri.is_sips());
            record_route.push(self.record_route_line(&branch.flow, sips));
            // Not toward the test-call agent: it is in-process, and routes by our one entry.
            let changes =
                branch.flow.transport != inbound.transport || branch.flow.local != inbound.local;
            if changes && inbound.transport != Transport::Internal {
                record_route.push(self.record_route_line(&inbound, sips));
            }
        }
        let data = self.build_request(
            msg,
            &branch.flow,
            &via_branch,
            &record_route,
            branch.request_uri.as_deref(),
            body,
            cseq,
        );
        // Toward a trunk its outbound rules apply; otherwise the inbound rules of the trunk
        // the request came from (classified only then).
        let from = match branch.party {
            Party::Trunk(_) => Party::Unknown,
            _ => self
                .servers
                .get(&server_id)
                .map_or(Party::Unknown, |s| self.routing.classify_at(s.source)),
        };
        let data = self.normalised(data, branch.party, from);
        let mut attempt = None;
        let mut try_timeout = None;
        if let Some(server) = self.servers.get_mut(&server_id) {
            server.client = Some(client_id);
            if let Some(ctx) = server.context.as_deref_mut() {
                ctx.attempts = ctx.attempts.saturating_add(1);
                attempt = Some(ctx.attempts);
                try_timeout = ctx.failover.try_timeout;
            }
        }
        let local_answer = branch.local_answer;
        if local_answer.is_none() {
            self.send(branch.flow, branch.address, data.clone());
        }
        self.insert_client(
            now,
            client_id,
            Sub::Main,
            method,
            data,
            branch.flow,
            branch.address,
            branch.party,
            Owner::Branch { server: server_id },
        );
        if method == Method::Invite {
            let deadline = now + self.config.timers.timer_c;
            if let Some(client) = self.clients.get_mut(&(client_id, Sub::Main)) {
                client.timer_c = Some(deadline);
            }
            self.timers.arm(deadline, Timer::TimerC(client_id));
        }
        if let Some(after) = try_timeout.filter(|d| !d.is_zero()) {
            self.timers.arm(now + after, Timer::TryTimeout(client_id));
        }
        if let Some(attempt) = attempt {
            self.events.push_back(Event::BranchStarted {
                dialog,
                method,
                to: branch.party,
                address: branch.address,
                attempt,
            });
        }
        if let Some(code) = local_answer {
            // Nothing was sent: the branch ends here as if the target had answered `code`.
            self.branch_ended(now, client_id, Outcome::Final(code), None, true);
            self.remove_client(client_id, Sub::Main);
        }
    }

    /// Give up branch `client_id` without ending it: its responses are no longer relayed; a
    /// provisional gets a CANCEL (now, if one came already), a 2xx an ACK and a BYE.
    pub(super) fn abandon(&mut self, now: Instant, client_id: u64) {
        let Some(client) = self.clients.get_mut(&(client_id, Sub::Main)) else {
            return;
        };
        client.abandoned = true;
        if client.method != Method::Invite || client.state == ClientState::Completed {
            return;
        }
        if client.provisional {
            self.send_cancel(now, client_id);
        } else {
            client.cancel_pending = true;
        }
    }

    /// The decision point: branch `client_id` of its server transaction ended with
    /// `outcome` (`response`: the final, when there is one). Relay a final upstream, or try
    /// the next candidate when the route's failover policy allows it. `may_fail_over`:
    /// false where the outcome must end the request (Timer C after ringing, the CANCEL
    /// guard, the setup timeout).
    pub(super) fn branch_ended(
        &mut self,
        now: Instant,
        client_id: u64,
        outcome: Outcome,
        response: Option<&SipMessage>,
        may_fail_over: bool,
    ) {
        let Some(client) = self.clients.get(&(client_id, Sub::Main)) else {
            return;
        };
        let Some(server_id) = client.server() else {
            return;
        };
        let (to, sent, first_provisional, method, address) = (
            client.party,
            client.sent,
            client.first_provisional,
            client.method,
            client.destination,
        );
        if let (Outcome::Final(401 | 407), Some(challenge)) = (outcome, response) {
            // The same candidate once more, with credentials: not a failover.
            if self.answer_challenge(now, client_id, challenge) {
                return;
            }
        }
        let retry_after = response.and_then(super::originate::retry_after);
        let Some(server) = self.servers.get(&server_id) else {
            return;
        };
        // Branch events exist for requests with a response context (out of dialog) only.
        let (dialog, route, has_context) = (
            server.dialog,
            server.context.as_deref().and_then(|c| c.route),
            server.context.is_some(),
        );
        let ended = move |failover: bool| Event::BranchEnded {
            dialog,
            method,
            to,
            address,
            route,
            outcome,
            retry_after,
            first_provisional: first_provisional.map(|at| at.duration_since(sent)),
            duration: now.duration_since(sent),
            failover,
        };
        if matches!(outcome, Outcome::Final(code) if code < 300) {
            // Answered: the caller gets this 2xx (the callers relay it); nothing to decide.
            if has_context {
                self.events.push_back(ended(false));
            }
            return;
        }
        let failure = match (outcome, response) {
            (Outcome::Final(code), Some(msg)) if code >= 300 => {
                let cseq = self.servers.get(&server_id).map(|s| s.cseq);
                let cseq = cseq.filter(|&n| n != msg.cseq().0);
                Some((code, super::response::pop_via_cseq(msg, None, cseq)))
            }
            // Answered here (a drill): no bytes; `relay_final` writes the response.
            (Outcome::Final(code), None) if code >= 300 => Some((code, Bytes::new())),
            _ => None,
        };
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let current = server.client == Some(client_id);
        let canceled = server.canceled;
        let late = now.duration_since(server.arrived);
        let mut try_next = false;
        let mut last_failure = failure.clone();
        if let Some(ctx) = server.context.as_deref_mut() {
            if current {
                if failure.is_some() {
                    ctx.last_failure = failure;
                }
                last_failure = ctx.last_failure.clone();
                let worthy = match outcome {
                    Outcome::Final(code) => ctx.failover.failover_on.contains(code),
                    Outcome::Timeout | Outcome::TryTimeout | Outcome::Transport => true,
                    Outcome::Abandoned => false,
                };
                try_next = may_fail_over
                    && worthy
                    && !canceled
                    && ctx.attempts < ctx.failover.max_attempts
                    && late < ctx.failover.setup_timeout
                    && !ctx.remaining.is_empty();
            }
        }
        let mut failover = false;
        if try_next {
            failover = self.next_branch(now, server_id);
        }
        if has_context {
            self.events.push_back(ended(failover));
        }
        if !current || failover {
            return;
        }
        if try_next {
            tracing::debug!(server = server_id, "no candidate left to fail over to");
        }
        self.relay_final(now, server_id, outcome, last_failure);
    }

    /// No branch left: the caller gets the last failure (a relayed `503` becomes `500`, RFC
    /// 3261 §16.7: the caller must not stop sending us calls because one carrier is busy),
    /// `487` after its CANCEL, else `408` (timeouts) or `503` (no trunk reachable).
    fn relay_final(
        &mut self,
        now: Instant,
        server_id: u64,
        outcome: Outcome,
        last_failure: Option<(u16, Bytes)>,
    ) {
        let canceled = self.servers.get(&server_id).is_some_and(|s| s.canceled);
        match last_failure {
            Some((code, data)) if data.is_empty() && code != 503 && !canceled => {
                self.fail_upstream(now, server_id, code, "Declined by Trunkgate");
            }
            Some((code, data)) if code != 503 && (!canceled || code == 487) => {
                let Some(s) = self.servers.get(&server_id) else {
                    return;
                };
                let (flow, source) = (s.flow, s.source);
                self.count_response(0, code);
                self.send(flow, source, data.clone());
                self.finish_server(now, server_id, data, code);
            }
            Some((503, _)) if !canceled => {
                self.fail_upstream(now, server_id, 500, "Service Unavailable Downstream");
            }
            _ if canceled => self.fail_upstream(now, server_id, 487, "Request Terminated"),
            _ => match outcome {
                Outcome::Transport => {
                    self.fail_upstream(now, server_id, 503, "Service Unavailable")
                }
                _ => self.fail_upstream(now, server_id, 408, "Request Timeout"),
            },
        }
    }

    /// Start the next usable candidate of server transaction `server_id`. False when none
    /// is left (every remaining one over its limits or unreachable).
    fn next_branch(&mut self, now: Instant, server_id: u64) -> bool {
        loop {
            let Some(server) = self.servers.get_mut(&server_id) else {
                return false;
            };
            let Some(target) = server
                .context
                .as_deref_mut()
                .and_then(|c| c.remaining.pop_front())
            else {
                return false;
            };
            let dialog = server.dialog;
            let request = server.request.clone();
            let inbound = server.flow;
            let body = server.context.as_deref().and_then(|c| c.body.clone());
            let Ok(msg) = SipMessage::parse(request, &super::OWN_LIMITS) else {
                return false;
            };
            if dialog.is_some() && !self.admit_next(&target, dialog) {
                continue;
            }
            let Some(branch) = self.branch_to(&target, inbound, &msg) else {
                continue;
            };
            if let Some(dialog_id) = dialog {
                self.move_callee(dialog_id, &branch);
            }
            tracing::debug!(
                call_id = %String::from_utf8_lossy(msg.call_id()),
                to = ?branch.party,
                "failover to the next candidate"
            );
            self.start_branch(now, server_id, &msg, branch, body.as_deref());
            return true;
        }
    }

    /// `data` (a request built for `to`, received from `from`) after the trunk's header
    /// normalisation: the rules of the trunk it goes to, else of the trunk it came from.
    pub(super) fn normalised(&self, data: Bytes, to: Party, from: Party) -> Bytes {
        let (trunk, toward) = match (to, from) {
            (Party::Trunk(t), _) => (t, true),
            (_, Party::Trunk(t)) => (t, false),
            _ => return data,
        };
        let Some(rules) = self.routing.normalise(trunk, toward) else {
            return data;
        };
        match SipMessage::parse(data.clone(), &super::OWN_LIMITS) {
            Ok(m) => rules.apply(&m).unwrap_or(data),
            Err(_) => data,
        }
    }

    /// May the call of dialog `dialog` move to `target`? Outbound calls check the trunk's
    /// and its account's session and call-rate limits (the call's own session is on the
    /// trunk it leaves, and stays in its account when it moves to a sibling trunk).
    fn admit_next(&mut self, target: &Target, dialog: Option<u64>) -> bool {
        let Some(dialog) = dialog.and_then(|id| self.dialogs.get(&id)) else {
            return true;
        };
        let (outbound, holding) = (dialog.direction == Direction::Outbound, dialog.account);
        let Party::Trunk(t) = target.party else {
            return true;
        };
        // Another address of the trunk the call is on (RFC 3263: the next SRV target or
        // A record): its session and call-rate token are already taken. Subscriptions are
        // no sessions.
        if !outbound
            || dialog.trunk == Some(t)
            || dialog.kind != super::state::DialogKind::Call
            || !dialog.counted
        {
            return true;
        }
        match self.take_trunk(t, Direction::Outbound, holding) {
            Ok(()) => true,
            Err(reason) => {
                self.metrics.reject(target.party.metric_index(), reason);
                false
            }
        }
    }

    /// The call of dialog `dialog_id` now goes to `branch`: its callee leg, and for an
    /// outbound call its trunk's (and account's) session count, metrics slot and media session.
    fn move_callee(&mut self, dialog_id: u64, branch: &Branch) {
        let Some(dialog) = self.dialogs.get_mut(&dialog_id) else {
            return;
        };
        dialog.callee = Leg {
            party: branch.party,
            address: branch.address,
            flow: branch.flow,
            contact: None,
            cseq_offset: 0,
        };
        let direction = dialog.direction;
        if direction != Direction::Outbound {
            return;
        }
        let Party::Trunk(new) = branch.party else {
            return;
        };
        if dialog.trunk == Some(new) || dialog.kind != super::state::DialogKind::Call {
            // The next address of the same trunk: same session, same metrics. A
            // subscription counts nowhere.
            return;
        }
        if !dialog.counted {
            // A test call that takes no capacity: only its trunk (for its report) moves.
            dialog.trunk = Some(new);
            dialog.metric_peer = branch.party.metric_index();
            if let Some(media) = &self.media {
                media.moved(dialog_id, Some(new));
            }
            return;
        }
        let account = self.admission.trunk_account(new);
        let old = dialog.trunk.replace(new);
        let old_account = std::mem::replace(&mut dialog.account, account);
        let old_peer = std::mem::replace(&mut dialog.metric_peer, branch.party.metric_index());
        if let Some(old) = old {
            self.session_ended(old, old_account, direction);
        }
        self.session_started(new, account, direction);
        if let Some(p) = self.metrics.peer(old_peer) {
            p.dialogs[direction.index()].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(p) = self.metrics.peer(branch.party.metric_index()) {
            p.dialogs[direction.index()].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(media) = &self.media {
            media.moved(dialog_id, Some(new));
        }
    }

    /// The shell could not open (or lost) a stream connection to `destination`: every
    /// transaction still waiting on it ends now instead of at Timer B/F.
    pub fn transport_failed(
        &mut self,
        now: Instant,
        transport: crate::transport::Transport,
        destination: std::net::SocketAddr,
    ) {
        let failed: Vec<(u64, Sub, Owner, bool)> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.flow.transport == transport
                    && c.destination == destination
                    && c.state == ClientState::Calling
            })
            .map(|(&(id, sub), c)| (id, sub, c.owner, c.abandoned))
            .collect();
        for (id, sub, owner, abandoned) in failed {
            match (sub, owner) {
                (Sub::Main, Owner::Branch { .. }) if !abandoned => {
                    ProxyMetrics::inc(&self.metrics.transport_failures);
                    tracing::info!(%destination, "connection failed: branch ended at once");
                    self.branch_ended(now, id, Outcome::Transport, None, true);
                }
                (Sub::Main, Owner::Probe) => {
                    self.probe_done(now, id, super::event::ProbeResult::Transport);
                }
                (Sub::Main, Owner::Register { trunk }) => {
                    self.register_timeout(now, id, trunk, true);
                }
                _ => {}
            }
            self.remove_client(id, sub);
        }
    }

    /// `route.try_timeout`: the current branch sent no provisional response in time.
    pub(super) fn try_timeout(&mut self, now: Instant, client_id: u64) {
        let Some(client) = self.clients.get(&(client_id, Sub::Main)) else {
            return;
        };
        if client.state != ClientState::Calling || client.abandoned {
            return;
        }
        // With nothing left to try, a slow first provisional is no reason to give up the
        // only candidate: Timer B still bounds it.
        let Some(server_id) = client.server() else {
            return;
        };
        if !self.may_try_next(now, server_id) {
            return;
        }
        let Some(client) = self.clients.get(&(client_id, Sub::Main)) else {
            return;
        };
        tracing::info!(
            destination = %client.destination,
            "no provisional response within try_timeout: next candidate"
        );
        self.abandon(now, client_id);
        self.branch_ended(now, client_id, Outcome::TryTimeout, None, true);
    }

    /// Could server transaction `server_id` still start another candidate now?
    fn may_try_next(&self, now: Instant, server_id: u64) -> bool {
        self.servers.get(&server_id).is_some_and(|s| {
            !s.canceled
                && s.context.as_deref().is_some_and(|ctx| {
                    ctx.attempts < ctx.failover.max_attempts
                        && now.duration_since(s.arrived) < ctx.failover.setup_timeout
                        && !ctx.remaining.is_empty()
                })
        })
    }

    /// `route.setup_timeout`: no new candidate after this; a current branch that has not
    /// even sent a provisional response is given up (a ringing one continues).
    pub(super) fn setup_timeout(&mut self, now: Instant, server_id: u64) {
        let Some(server) = self.servers.get(&server_id) else {
            return;
        };
        let Some(client_id) = server.client else {
            return;
        };
        let silent = self
            .clients
            .get(&(client_id, Sub::Main))
            .is_some_and(|c| c.state == ClientState::Calling && !c.abandoned);
        if silent {
            tracing::info!(server = server_id, "setup_timeout: call given up");
            self.abandon(now, client_id);
            self.branch_ended(now, client_id, Outcome::TryTimeout, None, false);
        }
    }

    /// The caller cancelled (RFC 3261 §16.10): a branch that sent a provisional gets our
    /// CANCEL and its 487 is relayed; one that has not sent anything yet cannot be
    /// cancelled, so it is given up and the caller gets 487 at once. No candidate is tried
    /// after a CANCEL.
    pub(super) fn cancel_branch(&mut self, now: Instant, server_id: u64) {
        let Some(client_id) = self.servers.get(&server_id).and_then(|s| s.client) else {
            return;
        };
        let provisional = self
            .clients
            .get(&(client_id, Sub::Main))
            .map(|c| c.provisional || c.state == ClientState::Completed);
        match provisional {
            Some(true) => self.send_cancel(now, client_id),
            Some(false) => {
                self.abandon(now, client_id);
                self.branch_ended(now, client_id, Outcome::Abandoned, None, false);
            }
            None => self.fail_upstream(now, server_id, 487, "Request Terminated"),
        }
    }
}
