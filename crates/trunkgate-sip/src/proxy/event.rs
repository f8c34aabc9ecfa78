//! What the core tells the world, beside the messages it sends: `Proxy::poll_event()` hands
//! these out in order (like `poll_transmit()`). Health consumes branch outcomes and probe
//! results; metrics and, later, call records consume the rest. Times are the core's
//! durations; an event happened during the call that produced it, so the shell stamps it
//! with its own clock when it drains the queue (and maps that to wall-clock time).

use crate::message::Method;
use crate::routing::{Party, TrunkId};
use std::net::SocketAddr;
use std::time::Duration;

/// How one branch (one candidate tried for a request) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response with this code (2xx: answered).
    Final(u16),
    /// No final response in time (Timer B/F, or Timer C after ringing).
    Timeout,
    /// No provisional response within the route's `try_timeout`.
    TryTimeout,
    /// The connection to the candidate could not be opened or broke.
    Transport,
    /// Given up by us: the caller cancelled, the setup time ran out, or another branch
    /// answered.
    Abandoned,
}

impl Outcome {
    /// The `reason` label of a failover this outcome caused.
    pub fn reason(self, retry_after: bool) -> &'static str {
        match self {
            Outcome::Final(_) if retry_after => "retry-after",
            Outcome::Final(_) => "code",
            Outcome::Timeout | Outcome::TryTimeout => "timeout",
            Outcome::Transport => "transport",
            Outcome::Abandoned => "abandoned",
        }
    }

    /// Did the candidate itself fail (a timeout, a transport error, a 5xx)? A 4xx/6xx is the
    /// callee's answer, not the trunk's failure.
    pub fn is_trunk_failure(self) -> bool {
        match self {
            Outcome::Final(code) => (500..600).contains(&code) || code == 408,
            Outcome::Timeout | Outcome::TryTimeout | Outcome::Transport => true,
            Outcome::Abandoned => false,
        }
    }
}

/// The result of one OPTIONS probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Reply(u16),
    Timeout,
    Transport,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// BYE from the caller (`from_caller`) or the callee.
    Bye { from_caller: bool },
    /// Refused or failed before an answer (the final code sent to the caller).
    Rejected(u16),
    /// The caller cancelled before an answer.
    Cancelled,
    /// No media for `media.timeout`: we sent BYE both ways.
    MediaTimeout,
    /// No in-dialog request for `sip.dialog_timeout`.
    Expired,
    /// 408/481 to an in-dialog request.
    InDialogFailure,
    /// Replaced by a new INVITE with the same Call-ID and tag, or similar bookkeeping.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new INVITE was accepted for routing (a call attempt).
    CallAttempt {
        dialog: u64,
        call_id: Box<[u8]>,
        from: Party,
        /// Where the INVITE came from (tells PBX nodes apart).
        source: SocketAddr,
        route: Option<u16>,
        /// The parties, for call records: see [`CallParties`].
        parties: Box<CallParties>,
        /// One of Trunkgate's own test calls: not real traffic (no call record, no busy-hour
        /// statistics; sessions and call rate only with `count_limits`).
        test: bool,
    },
    /// A new INVITE refused by Trunkgate itself before any branch: no route, no candidate
    /// under its limits, shutting down, no listener to reach the target. (Requests dropped
    /// by admission before parsing — floods, unknown sources, scanners — are not calls and
    /// make no event.)
    CallRejected {
        call_id: Box<[u8]>,
        from: Party,
        source: SocketAddr,
        route: Option<u16>,
        /// The trunk that had no room (the source trunk of an inbound call, else the first
        /// candidate refused); `None` when no trunk was involved.
        trunk: Option<TrunkId>,
        /// The final code sent (404, 503, …).
        code: u16,
        refusal: Refusal,
        parties: Box<CallParties>,
        /// Refused test call (see `CallAttempt::test`).
        test: bool,
    },
    /// A branch of a new (out-of-dialog) request was sent to `to` (attempt 1, 2, …).
    /// In-dialog requests have no branches to choose between and make no branch events.
    BranchStarted {
        dialog: Option<u64>,
        method: Method,
        to: Party,
        /// Where the branch went (tells PBX nodes apart).
        address: SocketAddr,
        attempt: u8,
    },
    /// A branch ended. `first_provisional`/`duration` are measured from when the branch was
    /// sent (post-dial delay per trunk). `failover`: the next candidate is tried.
    BranchEnded {
        dialog: Option<u64>,
        method: Method,
        to: Party,
        address: SocketAddr,
        route: Option<u16>,
        outcome: Outcome,
        /// The final carried `Retry-After` (seconds), if any.
        retry_after: Option<u32>,
        first_provisional: Option<Duration>,
        duration: Duration,
        failover: bool,
    },
    /// A call was answered (2xx relayed to the caller). `setup`: from the INVITE's arrival.
    CallAnswered {
        dialog: u64,
        to: Party,
        setup: Duration,
    },
    /// A call ended (answered or not).
    CallEnded {
        dialog: u64,
        trunk: Option<TrunkId>,
        reason: EndReason,
    },
    /// An OPTIONS probe to `to` (a trunk, or a PBX node at `address`) finished.
    Probe {
        to: Party,
        address: SocketAddr,
        result: ProbeResult,
        rtt: Duration,
    },
    /// A REGISTER of trunk `trunk`'s outbound registration ended (after any digest
    /// answer). `changed`: the registration went up or down (or ended) with this result.
    /// `code`/`reason`: the registrar's final (408/503 with our own text for a timeout or a
    /// connection failure).
    Registration {
        trunk: crate::routing::TrunkId,
        result: RegistrationResult,
        up: bool,
        changed: bool,
        code: u16,
        reason: Box<str>,
        /// Granted expiry (registered only).
        expires: Option<Duration>,
    },
}

/// Who a call is between, as the INVITE named them (user parts: phone numbers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallParties {
    /// From URI user part.
    pub caller: Box<[u8]>,
    /// Request-URI user part.
    pub callee: Box<[u8]>,
    /// The INVITE carried Referred-By, Replaces or Diversion (a transfer or a forward).
    pub transfer: bool,
}

/// Why Trunkgate refused a new call itself ([`Event::CallRejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route matched (404).
    NoRoute,
    /// A session or call-rate limit (503): capacity.
    Limit(crate::admission::RejectReason),
    /// Shutting down (503).
    ShuttingDown,
    /// No listener to reach the target (503).
    Unreachable,
    /// The media relay could not take the call (488/503).
    Media,
}

impl Refusal {
    /// The record's `reject` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoRoute => "no-route",
            Refusal::Limit(r) => match r {
                crate::admission::RejectReason::Sessions => "sessions",
                crate::admission::RejectReason::AccountSessions => "account-sessions",
                crate::admission::RejectReason::Cps => "cps",
                crate::admission::RejectReason::AccountCps => "account-cps",
                _ => "limit",
            },
            Refusal::ShuttingDown => "shutting-down",
            Refusal::Unreachable => "unreachable",
            Refusal::Media => "media",
        }
    }
}

/// How one registration attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationResult {
    /// 2xx: registered (or refreshed).
    Registered,
    /// The registrar refused our credentials (challenged the answer again, or a challenge
    /// we cannot answer).
    AuthFailed,
    /// Any other final ≥ 300.
    Refused,
    /// No final response (Timer F).
    Timeout,
    /// The connection to the registrar failed.
    Unreachable,
    /// `Expires: 0` answered (or given up): the registration is over.
    Deregistered,
}

impl RegistrationResult {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationResult::Registered => "registered",
            RegistrationResult::AuthFailed => "auth_failed",
            RegistrationResult::Refused => "refused",
            RegistrationResult::Timeout => "timeout",
            RegistrationResult::Unreachable => "unreachable",
            RegistrationResult::Deregistered => "deregistered",
        }
    }
}
