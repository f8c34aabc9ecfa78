//! Digest on the PBX's behalf (RFC 3261 §22.2–22.3). A trunk with credentials that answers
//! a branch — an INVITE, re-INVITE, BYE or any other request — with 401/407 is answered
//! here: the decision point ([`Proxy::branch_ended`]) hands the challenge to
//! [`Proxy::answer_challenge`], which re-sends the branch's request to the same trunk as a
//! new client transaction owned by the same server transaction (same Call-ID, From tag and
//! body; a new Via branch; CSeq + 1; the credentials). The PBX never sees the challenge.
//!
//! Per-leg state: the CSeq bump is remembered as the `cseq_offset` of the dialog leg the
//! request went to. Every later request and 2xx ACK sent to that leg carries its CSeq plus
//! the offset (the forwarding rewrite); every response relayed back carries the CSeq the
//! sender used (the server transaction's own number, or the offset taken off for 2xx
//! retransmissions that arrive after the transaction). Requests the trunk sends are in the
//! trunk's own CSeq space and pass unchanged.
//!
//! Bounded: one answer per branch, and a second only when the trunk says the nonce was
//! `stale=true`. A trunk that challenges its own answer refused the credentials: that
//! challenge goes to the ordinary decision (relayed to the PBX, or failover when the route
//! lists 401/407 in `failover_on`), counted in `auth_refused`. Never a loop.

use super::Proxy;
use super::state::{Owner, Sub};
use super::timer::Timer;
use crate::digest::{Algorithm, Challenge, Credentials};
use crate::message::rewrite::{self, Edits};
use crate::message::{HeaderName, Method, SipMessage};
use crate::routing::{Party, TrunkId};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;

impl Proxy {
    /// Answer trunk `trunk`'s digest challenges with `credentials` (`None`: relay them).
    /// Takes effect for the next challenge.
    pub fn set_trunk_credentials(&mut self, trunk: TrunkId, credentials: Option<Credentials>) {
        match credentials {
            Some(c) => {
                self.trunk_auth.insert(trunk, Arc::new(c));
            }
            None => {
                self.trunk_auth.remove(&trunk);
            }
        }
    }

    /// Branch `client_id` was challenged with `response` (401/407). Re-send it with
    /// credentials when its trunk has some and the bound allows; true when it did (the
    /// branch goes on as the new client transaction).
    pub(super) fn answer_challenge(
        &mut self,
        now: Instant,
        client_id: u64,
        response: &SipMessage,
    ) -> bool {
        let Some(client) = self.clients.get(&(client_id, Sub::Main)) else {
            return false;
        };
        let (Party::Trunk(trunk), Some(server_id)) = (client.party, client.server()) else {
            return false;
        };
        let Some(creds) = self.trunk_auth.get(&trunk).cloned() else {
            return false;
        };
        let (flow, destination, party, tries) = (
            client.flow,
            client.destination,
            client.party,
            client.auth_tries,
        );
        let Some(server) = self.servers.get(&server_id) else {
            return false;
        };
        if server.client != Some(client_id) || server.canceled {
            return false;
        }
        let (dialog, from_caller) = (server.dialog, server.from_caller);
        let (challenge_header, answer_header): (&[u8], &str) = match response.status() {
            Some(407) => (b"Proxy-Authenticate", "Proxy-Authorization"),
            _ => (b"WWW-Authenticate", "Authorization"),
        };
        let challenge = pick_challenge(response, challenge_header, &creds);
        let peer = party.metric_index();
        let call_id = String::from_utf8_lossy(response.call_id()).into_owned();
        let refused = |reason: &str| {
            tracing::info!(
                %call_id,
                trunk,
                code = response.status().unwrap_or(0),
                reason,
                "digest challenge not answered: relayed to the decision point"
            );
        };
        let Some(challenge) = challenge else {
            refused("no Digest challenge we can answer (scheme, algorithm or realm)");
            self.count_auth(peer, false);
            return false;
        };
        if tries >= 2 || (tries == 1 && !challenge.stale) {
            refused("the trunk refused our credentials");
            self.count_auth(peer, false);
            return false;
        }
        let Some(client) = self.clients.get(&(client_id, Sub::Main)) else {
            return false;
        };
        let Ok(sent) = SipMessage::parse(client.request.clone(), &super::OWN_LIMITS) else {
            return false;
        };
        let Some(method) = sent.method() else {
            return false;
        };
        let cseq = sent.cseq().0.wrapping_add(1);
        let id = self.next_id();
        let branch = self.branch_for(id);
        let cnonce = format!("{:016x}", self.salt.rotate_left(29) ^ id);
        let uri = sent.request_uri().unwrap_or_default();
        let answer = challenge.answer(&creds, method.as_str(), uri, 1, &cnonce);
        let via = format!(
            "Via: SIP/2.0/{} {};branch={branch}{}",
            flow.transport.via_token(),
            self.sent_by(&flow),
            flow.transport.via_suffix()
        );
        let auth_line = format!("{answer_header}: {answer}");
        let prepend: [&[u8]; 2] = [via.as_bytes(), auth_line.as_bytes()];
        let pops = [HeaderName::Via];
        let drop: [&[u8]; 2] = [b"Authorization", b"Proxy-Authorization"];
        let edits = Edits {
            prepend: &prepend,
            pop_first_value: &pops,
            cseq: Some(cseq),
            drop_named: &drop,
            ..Edits::default()
        };
        let mut out = BytesMut::with_capacity(sent.as_bytes().len() + auth_line.len() + 64);
        rewrite::rewrite(&sent, &edits, &mut out);
        let data = out.freeze();
        self.send(flow, destination, data.clone());
        self.insert_client(
            now,
            id,
            Sub::Main,
            method,
            data,
            flow,
            destination,
            party,
            Owner::Branch { server: server_id },
        );
        let mut try_timeout = None;
        if let Some(server) = self.servers.get_mut(&server_id) {
            server.client = Some(id);
            try_timeout = server
                .context
                .as_deref()
                .and_then(|c| c.failover.try_timeout);
        }
        if let Some(c) = self.clients.get_mut(&(id, Sub::Main)) {
            c.auth_tries = tries.saturating_add(1);
        }
        if method == Method::Invite {
            let deadline = now + self.config.timers.timer_c;
            if let Some(c) = self.clients.get_mut(&(id, Sub::Main)) {
                c.timer_c = Some(deadline);
            }
            self.timers.arm(deadline, Timer::TimerC(id));
        }
        if let Some(after) = try_timeout.filter(|d| !d.is_zero()) {
            self.timers.arm(now + after, Timer::TryTimeout(id));
        }
        if let Some(d) = dialog.and_then(|d| self.dialogs.get_mut(&d)) {
            let leg = d.toward_mut(from_caller);
            leg.cseq_offset = leg.cseq_offset.wrapping_add(1);
        }
        // The challenged transaction is over (ACKed for INVITE by its caller).
        if let Some(c) = self.clients.get_mut(&(client_id, Sub::Main)) {
            c.abandoned = true;
        }
        self.count_auth(peer, true);
        tracing::debug!(%call_id, trunk, method = method.as_str(), cseq, "digest challenge answered");
        true
    }

    fn count_auth(&self, peer: usize, answered: bool) {
        if let Some(p) = self.metrics.peer(peer) {
            let counter = if answered {
                &p.auth_answered
            } else {
                &p.auth_refused
            };
            crate::metrics::ProxyMetrics::inc(counter);
        }
    }
}

/// The challenge to answer: the strongest algorithm offered (SHA-256 over MD5) among the
/// Digest challenges for the credentials' realm (any realm when it is not configured).
fn pick_challenge(msg: &SipMessage, header: &[u8], creds: &Credentials) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for value in msg.all_named(header) {
        let Some(c) = Challenge::parse(value) else {
            continue;
        };
        if creds.realm.as_deref().is_some_and(|r| r != c.realm) {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256,
        };
        if better {
            best = Some(c);
        }
    }
    best
}
