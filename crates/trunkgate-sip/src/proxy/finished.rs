//! Recently finished transactions. A transaction that has its final response waits out a
//! timer before it is forgotten — a server transaction Timer H/I/J/L (up to 64*T1 = 32 s),
//! a client transaction Timer D/K (32 s, 5 s) — only to absorb retransmissions. For that
//! wait it is a compact record ([`FinishedServer`], [`FinishedClient`] in `state.rs`): the
//! key and, for a server transaction that sent a non-2xx final, those bytes (shared, not
//! copied) and where they went; for an INVITE client transaction the ACK of its non-2xx
//! final. The request copy, the response context and the branch state go at the final.
//!
//! What a record still does (RFC 3261 §17, RFC 6026):
//! - server, `Completed`: the final again for each retransmitted request, and (INVITE over
//!   UDP) by Timer G until the ACK or Timer H; the ACK makes it `Confirmed` (Timer I);
//! - server, `Confirmed`/`Accepted`: retransmitted requests and ACKs are absorbed (an ACK
//!   matching an `Accepted` INVITE is an RFC 2543 2xx ACK: forwarded);
//! - client: retransmitted finals are absorbed; an INVITE's get its ACK again (§17.1.1.2);
//!   a 2xx after the non-2xx final is still relayed upstream (§16.7 step 10), or ended
//!   with ACK and BYE when the branch had been given up.

use super::Proxy;
use super::state::{Answer, FinishedClient, FinishedServer, ServerState, Sub};
use crate::message::{Method, SipMessage};
use crate::routing::Party;
use crate::transport::Flow;
use std::net::SocketAddr;
use std::time::Instant;

impl Proxy {
    /// Remember server transaction `id` (key `key`) as finished in `state`.
    pub(super) fn insert_finished_server(
        &mut self,
        id: u64,
        key: &[u8],
        state: ServerState,
        answer: Option<Box<Answer>>,
    ) {
        let key: std::sync::Arc<[u8]> = key.into();
        self.server_index.insert(key.clone(), id);
        self.finished_servers
            .insert(id, FinishedServer { key, state, answer });
    }

    /// Client transaction `(id, sub)` has its final: keep only its finished record (with
    /// `ack`, the ACK sent for an INVITE's non-2xx final).
    pub(super) fn client_finished(
        &mut self,
        id: u64,
        sub: Sub,
        ack: Option<Box<super::state::SentAck>>,
    ) {
        let Some(client) = self.clients.remove(&(id, sub)) else {
            return;
        };
        let record = FinishedClient {
            owner: client.owner,
            invite: client.method == Method::Invite,
            abandoned: client.abandoned,
            ack,
        };
        self.finished_clients.insert((id, sub), record);
    }

    /// A response for client transaction `(id, sub)` after its final. False when it is
    /// not a finished one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finished_client_response(
        &mut self,
        now: Instant,
        id: u64,
        sub: Sub,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        msg: &SipMessage,
    ) -> bool {
        let Some(record) = self.finished_clients.get(&(id, sub)) else {
            return false;
        };
        let code = msg.status().unwrap_or(0);
        if sub == Sub::Cancel || !record.invite || code < 200 {
            // A retransmitted final (or a late provisional): absorbed.
            return true;
        }
        if code >= 300 {
            // Our ACK was lost: the same ACK again.
            if let Some(ack) = record.ack.as_deref() {
                let (flow, destination, data) = (ack.flow, ack.destination, ack.data.clone());
                self.send(flow, destination, data);
            }
            return true;
        }
        // A 2xx after the non-2xx final: the client transaction is over either way.
        let (server, abandoned) = (record.owner_server(), record.abandoned);
        let sent = record
            .ack
            .as_deref()
            .map(|a| (a.flow, a.destination, a.party));
        self.remove_client(id, sub);
        match (abandoned, sent) {
            (true, Some((cflow, destination, to))) => {
                self.end_abandoned_2xx(now, msg, cflow, destination, to);
            }
            (true, None) => self.forward_stray_2xx(now, flow, source, party, msg),
            (false, _) => self.relay_2xx(now, server, flow, msg),
        }
        true
    }
}

impl FinishedClient {
    /// The server transaction of a relayed branch.
    fn owner_server(&self) -> Option<u64> {
        match self.owner {
            super::state::Owner::Branch { server } => Some(server),
            _ => None,
        }
    }
}
