//! Plain data for transactions (RFC 3261 §17) and dialogs. Behaviour lives in
//! `request.rs`, `response.rs` and `timer.rs`; this file only says what is remembered.

use crate::message::Method;
use crate::metrics::Direction;
use crate::routing::{FailoverPolicy, Party, Target, TrunkId};
use crate::transport::Flow;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// States of a server transaction past its final response (§17.2.1, §17.2.2, RFC 6026
/// `Accepted`), held by a [`FinishedServer`]. Before its final a server transaction is a
/// [`ServerTx`] (`Proceeding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// Final non-2xx sent; INVITE: waiting for ACK (Timer G/H); non-INVITE: absorbing
    /// retransmissions (Timer J).
    Completed,
    /// INVITE: ACK received, absorbing stray ACKs (Timer I).
    Confirmed,
    /// INVITE: 2xx sent; retransmitted INVITEs are absorbed (Timer L).
    Accepted,
}

/// The upstream side of a forwarded request, until its final response (`Proceeding`; then
/// it becomes a [`FinishedServer`]).
#[derive(Debug)]
pub(crate) struct ServerTx {
    /// Shared with the proxy's server index (one allocation for both).
    pub key: std::sync::Arc<[u8]>,
    pub method: Method,
    pub flow: Flow,
    pub source: SocketAddr,
    /// Our own copy of the request (the receive buffer is not pinned).
    pub request: Bytes,
    /// Last provisional response sent upstream, for retransmitted requests.
    pub last_response: Option<Bytes>,
    /// The client transaction currently carrying this request downstream (the current
    /// branch).
    pub client: Option<u64>,
    /// Out-of-dialog requests: the candidates still to try and what was tried.
    pub context: Option<Box<ResponseContext>>,
    /// When the request arrived.
    pub arrived: Instant,
    /// The dialog this request belongs to or creates.
    pub dialog: Option<u64>,
    /// A dialog-creating INVITE (its failure ends the dialog).
    pub initial: bool,
    /// CANCEL received from upstream.
    pub canceled: bool,
    /// In a dialog: the request came from the caller's side (its responses from the
    /// callee's), for media anchoring of SDP in responses.
    pub from_caller: bool,
    /// The request's CSeq number: responses relayed upstream carry it again, whatever the
    /// branch sent (a digest answer sends CSeq + 1).
    pub cseq: u32,
}

/// The response context of an out-of-dialog request (RFC 3261 §16.6–16.7, serially
/// forked): every way a branch ends reaches `Proxy::branch_ended`, which relays a final or
/// tries the next candidate from here.
#[derive(Debug)]
pub(crate) struct ResponseContext {
    /// Candidates not tried yet, best first.
    pub remaining: std::collections::VecDeque<Target>,
    /// Branches started so far.
    pub attempts: u8,
    pub route: Option<u16>,
    pub failover: FailoverPolicy,
    /// The body every branch carries (the anchored SDP offer), when it is not the request's.
    pub body: Option<Bytes>,
    /// The last failure relayable to the caller: its code and the response with our Via
    /// popped.
    pub last_failure: Option<(u16, Bytes)>,
    /// A provisional response (> 100) was relayed to the caller.
    pub ringing: bool,
}

/// Who a client transaction works for; decides where its responses go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A branch of a relayed request: responses go to server transaction `server`.
    Branch { server: u64 },
    /// An OPTIONS probe of ours to a trunk: the result is an event.
    Probe,
    /// A REGISTER of trunk `trunk`'s outbound registration (`register.rs`).
    Register { trunk: TrunkId },
    /// A request of our own (CANCEL, BYE on dead media or for an abandoned 2xx, ACK-less
    /// housekeeping): responses are absorbed.
    Own,
}

/// Client transaction states (§17.1.1, §17.1.2). There is no `Accepted`: an INVITE client
/// transaction ends at its first 2xx, later 2xx are relayed along the dialog. `Completed`
/// lasts only while its final is being handled: then the transaction becomes a
/// [`FinishedClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// INVITE `Calling` / non-INVITE `Trying`: retransmitting, no response yet.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final non-2xx arrived (INVITE: ACK sent, Timer D; non-INVITE: Timer K).
    Completed,
}

/// Which client transaction of a branch: the forwarded request itself, or the CANCEL we
/// sent for it (same branch, RFC 3261 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Sub {
    Main,
    Cancel,
}

/// The downstream side of a forwarded (or locally generated) request.
#[derive(Debug)]
pub(crate) struct ClientTx {
    pub method: Method,
    pub state: ClientState,
    /// Exactly what we sent (retransmitted verbatim; parsed again for ACK/CANCEL).
    pub request: Bytes,
    pub flow: Flow,
    pub destination: SocketAddr,
    pub party: Party,
    pub retransmit: Duration,
    pub owner: Owner,
    /// When the request was first sent.
    pub sent: Instant,
    /// When its first provisional response arrived.
    pub first_provisional: Option<Instant>,
    /// Given up by its server transaction (failover, CANCEL, setup timeout): responses are
    /// no longer relayed; a provisional gets a CANCEL, a 2xx an ACK and a BYE.
    pub abandoned: bool,
    /// A provisional response arrived (a CANCEL may be sent).
    pub provisional: bool,
    /// Upstream cancelled before any provisional arrived: send CANCEL on the first one.
    pub cancel_pending: bool,
    /// INVITE: Timer C's current deadline (pushed back by each provisional response).
    pub timer_c: Option<std::time::Instant>,
    /// Digest answers this branch already carries (0: the request as relayed).
    pub auth_tries: u8,
}

impl ClientTx {
    /// The server transaction of a relayed branch.
    pub fn server(&self) -> Option<u64> {
        match self.owner {
            Owner::Branch { server } => Some(server),
            Owner::Probe | Owner::Own | Owner::Register { .. } => None,
        }
    }
}

/// A server transaction that sent its final response, waiting out Timer H/I/J/L: only what
/// a retransmitted request (or ACK) needs — its key, to match it, and for `Completed` the
/// final to send again. The request copy, the response context and the rest of the
/// [`ServerTx`] are gone ("Memory: finished transactions" in docs/design/sip.md).
#[derive(Debug)]
pub(crate) struct FinishedServer {
    /// The key in the proxy's server index (removed with this record; the same allocation).
    pub key: std::sync::Arc<[u8]>,
    pub state: ServerState,
    /// The final non-2xx response and where it went (`Completed`, and `Confirmed`, where
    /// it is no longer sent again but a late 2xx still goes upstream the same way). `None`
    /// in `Accepted`: nothing is sent from here after a 2xx.
    pub answer: Option<Box<Answer>>,
}

/// The final response a `Completed` server transaction sends again: for each retransmitted
/// request, and for an INVITE over UDP by Timer G until the ACK.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The bytes as first sent (shared, not copied).
    pub response: Bytes,
    pub flow: Flow,
    pub source: SocketAddr,
    /// Timer G's current interval (INVITE over UDP).
    pub retransmit: Duration,
    /// The request's CSeq number (a late 2xx relayed upstream carries it, RFC 3261 §16.7).
    pub cseq: u32,
}

/// A client transaction that got its final response, waiting out Timer D/K: absorbs
/// retransmissions of that final, and for an INVITE sends its ACK again for each one
/// (RFC 3261 §17.1.1.2). The request copy and the rest of the [`ClientTx`] are gone.
#[derive(Debug)]
pub(crate) struct FinishedClient {
    pub owner: Owner,
    pub invite: bool,
    /// Given up by its server transaction before its final (a late 2xx is ended with BYE).
    pub abandoned: bool,
    /// INVITE: the ACK for its non-2xx final and where it went. `None` for other methods.
    pub ack: Option<Box<SentAck>>,
}

/// The ACK of a finished INVITE client transaction, sent again for each retransmitted final.
#[derive(Debug)]
pub(crate) struct SentAck {
    /// As built by the core (before topology hiding, which `send` applies again, the same
    /// way each time).
    pub data: Bytes,
    pub flow: Flow,
    pub destination: SocketAddr,
    pub party: Party,
}

/// One side of a dialog.
#[derive(Debug, Clone)]
pub(crate) struct Leg {
    pub party: Party,
    /// Where requests to this side go.
    pub address: SocketAddr,
    pub flow: Flow,
    /// This side's Contact URI (the remote target), when known.
    pub contact: Option<Box<[u8]>>,
    /// Added to the CSeq of every request (and 2xx ACK) sent to this side, and taken off
    /// the responses it sends back: how many of our digest answers to this side bumped the
    /// CSeq (RFC 3261 §22.2). Zero on every leg that never challenged.
    pub cseq_offset: u32,
}

/// What a dialog is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialogKind {
    /// A call (INVITE): counted as a session, anchored, reported in events.
    Call,
    /// A second 2xx of a forked INVITE (another callee tag): routed on its own until the
    /// caller hangs it up; not a session, no media, no events (RFC 3261 §12.1.2).
    Fork,
    /// Created by an out-of-dialog SUBSCRIBE or REFER (RFC 6665): NOTIFYs and refreshes
    /// are routed; no session, no media, no events; idle at most `idle_limit`.
    Subscription,
}

impl Leg {
    /// The leg of the side that sent a dialog-creating request from `source` over `flow`
    /// with Contact `contact`: over UDP its requests go back to the source address (it may
    /// be NATed); over TCP to its Contact, where it listens (the connection's port is an
    /// ephemeral one), or the source when the Contact is not an IP literal.
    pub fn caller(party: Party, flow: Flow, source: SocketAddr, contact: Option<Box<[u8]>>) -> Leg {
        let address = if flow.transport.is_stream() {
            contact
                .as_deref()
                .and_then(super::addressing::uri_socket_addr)
                .unwrap_or(source)
        } else {
            source
        };
        Leg {
            party,
            address,
            flow,
            contact,
            cseq_offset: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Dialog {
    pub kind: DialogKind,
    /// Forgotten after this long without an in-dialog request (`None`:
    /// `sip.dialog_timeout`).
    pub idle_limit: Option<std::time::Duration>,
    /// The key in the proxy's dialog index (`Call`, `Subscription`: Call-ID + caller tag)
    /// or fork index (`Fork`: Call-ID + caller tag + callee tag).
    pub index_key: Vec<u8>,
    pub callee_tag: Option<Box<[u8]>>,
    pub confirmed: bool,
    /// Last in-dialog request (or the confirmation): `sip.dialog_timeout` counts from here.
    pub last_activity: std::time::Instant,
    pub direction: Direction,
    /// Metric slot of the trunk this dialog is counted against.
    pub metric_peer: usize,
    /// The trunk whose session limits this dialog counts against.
    pub trunk: Option<TrunkId>,
    /// That trunk's account when the dialog was counted (set with `trunk`): the account
    /// count this dialog gives back when it ends or moves.
    pub account: Option<crate::admission::AccountId>,
    pub caller: Leg,
    pub callee: Leg,
    /// Set when the call's media is anchored: what a BYE of our own needs.
    pub media: Option<Box<MediaDialog>>,
    /// One of Trunkgate's own test calls ([`super::InternalOrigin`]).
    pub test: bool,
    /// Counted in the session limits, call rate and dialog gauges: every real call; a test
    /// call only with `count_limits`.
    pub counted: bool,
}

impl Dialog {
    /// The leg a request goes to: the callee's for requests from the caller.
    pub fn toward(&self, from_caller: bool) -> &Leg {
        if from_caller {
            &self.callee
        } else {
            &self.caller
        }
    }

    pub fn toward_mut(&mut self, from_caller: bool) -> &mut Leg {
        if from_caller {
            &mut self.callee
        } else {
            &mut self.caller
        }
    }
}

/// An anchored call's identity, for the BYEs Trunkgate sends itself when its media dies.
#[derive(Debug)]
pub(crate) struct MediaDialog {
    pub call_id: Box<[u8]>,
    /// The caller's From value (with its tag), as in the INVITE.
    pub from: Box<[u8]>,
    /// The callee's To value (with its tag), from the 2xx.
    pub to: Option<Box<[u8]>>,
    /// Highest CSeq seen in requests from each side.
    pub caller_cseq: u32,
    pub callee_cseq: u32,
    /// Route sets for requests we send ourselves (RFC 3261 §12.1): toward the caller, the
    /// Record-Route entries the INVITE arrived with; toward the callee, the 2xx's entries
    /// above ours, reversed. Comma-joined `Route` values; empty when there are none.
    pub caller_route: Box<[u8]>,
    pub callee_route: Box<[u8]>,
    /// The newest SDP each side sent (caller, callee) that the relay took.
    pub sdp: [Box<[u8]>; 2],
    /// While a re-INVITE/UPDATE offer from that side is pending: the SDP it replaced, put
    /// back if the offer is refused (RFC 3261 §14.1: the session stays as it was).
    pub rollback: [Option<Box<[u8]>>; 2],
}

/// Build the dialog index key: Call-ID, NUL, caller's From tag.
/// On the stack for lookups (no allocation per message); `.to_vec()` to store it.
pub(crate) fn dialog_key(call_id: &[u8], caller_tag: &[u8]) -> Key {
    let mut key = Key::new();
    key.extend_from_slice(call_id);
    key.push(0);
    key.extend_from_slice(caller_tag);
    key
}

/// Key of a forked dialog: Call-ID, caller tag and callee tag.
pub(crate) fn fork_key(call_id: &[u8], caller_tag: &[u8], callee_tag: &[u8]) -> Key {
    let mut key = dialog_key(call_id, caller_tag);
    key.push(0);
    key.extend_from_slice(callee_tag);
    key
}

/// A transaction or dialog key being built: inline up to 128 bytes.
pub(crate) type Key = smallvec::SmallVec<[u8; 128]>;
