//! The questions the core asks of admission policy (ARCHITECTURE principle 4, "admission
//! before work"): may this datagram be looked at at all, may this new call take this trunk,
//! may this REGISTER pass. Implemented by the binary on top of `trunkgate-control` (governor
//! token buckets, bans), and by simple fakes in tests. Session *counting* is not here: the
//! core counts sessions exactly in its dialog table (per trunk and per account); this trait
//! only gives the limits, which trunk belongs to which account, and the call-rate buckets.

use std::net::IpAddr;

use crate::routing::{Party, TrunkId};

/// A provider account's stable id (`[[account]]`): limits shared by several trunks. Dense
/// (0, 1, 2, …) like [`TrunkId`]s, so per-account tables are vectors.
pub type AccountId = u16;

/// What happens to a datagram before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Dropped without an answer: a banned flooder (`Flood`) or an unknown source under
    /// `drop` (`UnknownSource`).
    Drop(RejectReason),
}

/// `security.unknown_source`: what a request from a source in no allow list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSource {
    /// No answer at all, so scanners learn nothing (default).
    #[default]
    Drop,
    /// `403 Forbidden`.
    Reject,
}

/// Concurrent-session limits of one trunk, or of one account (all its trunks together);
/// `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkLimits {
    pub max_sessions: Option<u32>,
    /// Within `max_sessions`: calls from the trunk to the PBX.
    pub max_inbound: Option<u32>,
    /// Within `max_sessions`: calls from the PBX to the trunk.
    pub max_outbound: Option<u32>,
}

/// Why a request was refused or dropped; the `reason` label of `trunkgate_rejects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Sessions,
    Cps,
    /// The trunk's account is at its `max_sessions` (or per-direction share).
    AccountSessions,
    /// The trunk's account is over its `max_cps`.
    AccountCps,
    Flood,
    UnknownSource,
    UserAgent,
    RegisterRate,
    TooLarge,
    Malformed,
    /// A well-formed request asking for what Trunkgate does not do: a Request-URI scheme it
    /// cannot route (`416`), a `Proxy-Require` option it does not know (`420`).
    Unsupported,
}

impl RejectReason {
    pub const COUNT: usize = 11;
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Sessions,
        RejectReason::Cps,
        RejectReason::AccountSessions,
        RejectReason::AccountCps,
        RejectReason::Flood,
        RejectReason::UnknownSource,
        RejectReason::UserAgent,
        RejectReason::RegisterRate,
        RejectReason::TooLarge,
        RejectReason::Malformed,
        RejectReason::Unsupported,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Sessions => "sessions",
            RejectReason::Cps => "cps",
            RejectReason::AccountSessions => "account_sessions",
            RejectReason::AccountCps => "account_cps",
            RejectReason::Flood => "flood",
            RejectReason::UnknownSource => "unknown_source",
            RejectReason::UserAgent => "user_agent",
            RejectReason::RegisterRate => "register_rate",
            RejectReason::TooLarge => "too_large",
            RejectReason::Malformed => "malformed",
            RejectReason::Unsupported => "unsupported",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

pub trait Admission: Send + Sync {
    /// Every datagram, before parsing: flood accounting for `source` (classified as
    /// `party`), and whether it is banned. Exempt parties (by default the PBX and the
    /// trunks) must pass without touching any limiter.
    fn datagram(&self, source: IpAddr, party: Party) -> Verdict;

    /// What a request from a source in no allow list gets.
    fn unknown_source(&self) -> UnknownSource;

    /// Is this User-Agent on `security.block_user_agents`? (Only asked for requests from
    /// non-exempt sources.)
    fn blocked_user_agent(&self, party: Party, user_agent: &[u8]) -> bool;

    /// Session limits of trunk `trunk` (index in the policy's trunk list).
    fn trunk_limits(&self, trunk: u16) -> TrunkLimits;

    /// Take one token from the trunk's call-rate bucket (`max_cps`, `cps_burst`); `false`
    /// when the trunk is over its rate (the token is not taken).
    fn try_call_rate(&self, trunk: u16) -> bool;

    /// Give back the token [`Admission::try_call_rate`] took for a call that was not placed
    /// after all (its account refused it), so the trunk's own rate is not spent on it.
    fn give_back_call_rate(&self, _trunk: TrunkId) {}

    /// The account (`[[account]]`) trunk `trunk` belongs to, if any. Asked per new call:
    /// an array lookup, no allocation.
    fn trunk_account(&self, _trunk: TrunkId) -> Option<AccountId> {
        None
    }

    /// Session limits of account `account`: all its trunks together.
    fn account_limits(&self, _account: AccountId) -> TrunkLimits {
        TrunkLimits::default()
    }

    /// Take one token from the account's call-rate bucket; `false` when the account is over
    /// its rate (nothing taken). Asked only after the trunk's own checks passed.
    fn try_account_rate(&self, _account: AccountId) -> bool {
        true
    }

    /// A REGISTER from `party`: `None` passes, `Some(secs)` refuses it with `503` and
    /// `Retry-After: secs` (randomised within the policy's window).
    fn try_register(&self, party: Party) -> Option<u32>;

    /// `Retry-After` seconds for a `503` when no trunk can take a call.
    fn overflow_retry_after(&self) -> u32;
}

/// No limits at all: every datagram passes, unknown sources are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAdmission;

impl Admission for NoAdmission {
    fn datagram(&self, _source: IpAddr, party: Party) -> Verdict {
        if party == Party::Unknown {
            Verdict::Drop(RejectReason::UnknownSource)
        } else {
            Verdict::Pass
        }
    }
    fn unknown_source(&self) -> UnknownSource {
        UnknownSource::Drop
    }
    fn blocked_user_agent(&self, _party: Party, _user_agent: &[u8]) -> bool {
        false
    }
    fn trunk_limits(&self, _trunk: u16) -> TrunkLimits {
        TrunkLimits::default()
    }
    fn try_call_rate(&self, _trunk: u16) -> bool {
        true
    }
    fn try_register(&self, _party: Party) -> Option<u32> {
        None
    }
    fn overflow_retry_after(&self) -> u32 {
        30
    }
}
