//! Admission control (ARCHITECTURE principle 4, "admission before work"): the decisions
//! made on a datagram before it is parsed, and on a new call or REGISTER before any
//! transaction state exists.
//!
//! - [`AdmissionControl::datagram`]: per-source flood limit and bans (`[flood]`), and the
//!   allow-list policy for unknown sources (`security.unknown_source`).
//! - [`AdmissionControl::blocked_user_agent`]: scanner signatures (`security.block_user_agents`).
//! - [`AdmissionControl::try_call_rate`] / [`AdmissionControl::trunk_limits`]: per-trunk
//!   `max_cps` buckets and session limits (sessions are *counted* by the SIP core).
//! - [`AdmissionControl::trunk_account`], [`AdmissionControl::account_limits`],
//!   [`AdmissionControl::try_account_rate`]: the same for `[[account]]`s, which several
//!   trunks share; [`AdmissionControl::give_back_call_rate`] returns a trunk's token when
//!   its account refuses the call.
//! - [`AdmissionControl::try_register`]: the REGISTER rate, with a randomised `Retry-After`.
//!
//! Token buckets are GCRA on governor's clock (call rates: our own refundable
//! `CallBucket`; floods and REGISTER: governor's limiters); tests substitute
//! `governor::clock::FakeRelativeClock` through [`AdmissionControl::with_clock`]. Every
//! method takes `&self`: the SIP core calls it per datagram while the binary's maintenance
//! task calls [`AdmissionControl::maintain`] every second. The only lock is the ban map's,
//! taken only while bans exist and held for one lookup.

mod flood;
mod rate;
mod store;
mod user_agent;

#[cfg(test)]
mod tests;

use crate::{AccountId, RoutingTable, Source, TrunkId};
use flood::{FloodGuard, FloodVerdict};
use governor::clock::{Clock, DefaultClock};
use rate::{CallRates, RegisterRate};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use trunkgate_config::Policy;
pub use trunkgate_config::UnknownSource;
use user_agent::UserAgents;

/// What happens to a datagram before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramVerdict {
    Pass,
    /// Dropped silently: the source is banned, was just banned for going over
    /// `flood.rate`/`flood.burst`, or is untracked (beyond `flood.max_sources`) while the
    /// shared overflow bucket is empty. Reason `flood`.
    DropBanned,
    /// Dropped silently: the source is in no allow list and `security.unknown_source` is
    /// `drop`. Reason `unknown_source`.
    DropUnknown,
}

/// Concurrent-session limits of one trunk (`None` = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkLimits {
    pub max_sessions: Option<u32>,
    /// Within `max_sessions`: calls from the trunk to the PBX.
    pub max_inbound: Option<u32>,
    /// Within `max_sessions`: calls from the PBX to the trunk.
    pub max_outbound: Option<u32>,
}

/// The admission decisions of one policy snapshot. A reload builds a new one with
/// [`AdmissionControl::rebuild`], which keeps the flood limiter and bans (when `[flood]` is
/// unchanged), the REGISTER bucket (when `[register]` is) and the call-rate bucket of every
/// trunk whose `max_cps`/`cps_burst` are, keyed by trunk id.
pub struct AdmissionControl<C: Clock = DefaultClock> {
    exempt_peers: bool,
    unknown_source: UnknownSource,
    flood: Arc<FloodGuard<C>>,
    flood_settings: trunkgate_config::Flood,
    user_agents: UserAgents,
    limits: Vec<TrunkLimits>,
    call_rates: CallRates<C>,
    /// By trunk id: the trunk's account.
    trunk_accounts: Vec<Option<AccountId>>,
    /// By account id: its session limits and its call-rate bucket.
    account_limits: Vec<TrunkLimits>,
    account_rates: CallRates<C>,
    register: Arc<RegisterRate<C>>,
    register_settings: trunkgate_config::Register,
    overflow_retry_after: u32,
    clock: C,
}

impl AdmissionControl {
    /// Build from `policy` and the routing table built from the same policy (trunk ids
    /// are the table's), on governor's default clock.
    pub fn new(policy: &Policy, table: &RoutingTable) -> Self {
        Self::with_clock(policy, table, DefaultClock::default())
    }
}

impl<C: Clock + Clone> AdmissionControl<C> {
    /// As [`AdmissionControl::new`], on `clock` (tests: `FakeRelativeClock`).
    pub fn with_clock(policy: &Policy, table: &RoutingTable, clock: C) -> Self {
        Self::build(policy, table, clock, None)
    }

    /// The admission of a reloaded `policy`, keeping `old`'s state where its settings did
    /// not change (see the type's doc).
    pub fn rebuild(policy: &Policy, table: &RoutingTable, old: &Self) -> Self {
        Self::build(policy, table, old.clock.clone(), Some(old))
    }

    fn build(policy: &Policy, table: &RoutingTable, clock: C, old: Option<&Self>) -> Self {
        // Dense by trunk id (ids are handed out in sequence; a gap is a trunk this policy
        // no longer has: no limits).
        let slots = table
            .trunks()
            .iter()
            .map(|t| usize::from(t.id.0) + 1)
            .max()
            .unwrap_or(0);
        let by_id: Vec<Option<&crate::TrunkEntry>> = (0..slots)
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|id| table.trunk(TrunkId(id)))
            })
            .collect();
        // Dense by account id, the same way.
        let account_slots = table
            .accounts()
            .iter()
            .map(|a| usize::from(a.id.0) + 1)
            .max()
            .unwrap_or(0);
        let accounts: Vec<Option<&crate::AccountEntry>> = (0..account_slots)
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|id| table.account(AccountId(id)))
            })
            .collect();
        let flood = old
            .filter(|o| o.flood_settings == policy.flood)
            .map(|o| o.flood.clone())
            .unwrap_or_else(|| Arc::new(FloodGuard::new(&policy.flood, clock.clone())));
        let register = old
            .filter(|o| o.register_settings == policy.register)
            .map(|o| o.register.clone())
            .unwrap_or_else(|| Arc::new(RegisterRate::new(&policy.register, &clock)));
        AdmissionControl {
            exempt_peers: policy.flood.exempt_peers,
            unknown_source: policy.security.unknown_source,
            flood,
            flood_settings: policy.flood.clone(),
            user_agents: UserAgents::new(&policy.security.block_user_agents),
            limits: by_id
                .iter()
                .map(|t| {
                    t.map(|t| TrunkLimits {
                        max_sessions: t.max_sessions,
                        max_inbound: t.max_inbound,
                        max_outbound: t.max_outbound,
                    })
                    .unwrap_or_default()
                })
                .collect(),
            call_rates: CallRates::keeping(
                by_id.iter().map(|t| {
                    t.and_then(|t| t.max_cps.map(|cps| (cps, t.cps_burst.unwrap_or(cps))))
                }),
                &clock,
                old.map(|o| &o.call_rates),
            ),
            trunk_accounts: by_id.iter().map(|t| t.and_then(|t| t.account)).collect(),
            account_limits: accounts
                .iter()
                .map(|a| {
                    a.map(|a| TrunkLimits {
                        max_sessions: a.max_sessions,
                        max_inbound: a.max_inbound,
                        max_outbound: a.max_outbound,
                    })
                    .unwrap_or_default()
                })
                .collect(),
            account_rates: CallRates::keeping(
                accounts.iter().map(|a| {
                    a.and_then(|a| a.max_cps.map(|cps| (cps, a.cps_burst.unwrap_or(cps))))
                }),
                &clock,
                old.map(|o| &o.account_rates),
            ),
            register,
            register_settings: policy.register.clone(),
            clock,
            overflow_retry_after: u32::try_from(policy.sip.overflow_retry_after.as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
        }
    }

    /// Is `source` one of the peers that `flood.exempt_peers` exempts?
    #[inline]
    fn exempt_peer(&self, source: Source) -> bool {
        self.exempt_peers && source != Source::Unknown
    }

    /// Every datagram, before parsing. `source` is [`RoutingTable::classify`] of `ip`.
    ///
    /// The PBX and the trunks (with `flood.exempt_peers`, the default) pass without touching
    /// any limiter. Any other source is flood-accounted unless it is in `flood.exempt`, then
    /// judged by `security.unknown_source` if it is in no allow list.
    #[inline]
    pub fn datagram(&self, ip: IpAddr, source: Source) -> DatagramVerdict {
        if self.exempt_peer(source) {
            return DatagramVerdict::Pass;
        }
        let ip = ip.to_canonical();
        if !self.flood.is_exempt(ip) && self.flood.check(ip) == FloodVerdict::Drop {
            return DatagramVerdict::DropBanned;
        }
        match (source, self.unknown_source) {
            (Source::Unknown, UnknownSource::Drop) => DatagramVerdict::DropUnknown,
            _ => DatagramVerdict::Pass,
        }
    }

    /// Housekeeping, every ~1 s from the binary (never from the SIP core's thread in a
    /// hurry: it walks the tables). Drops limiter keys that are idle (their bucket is full
    /// again), gives back the memory, and lifts expired bans (one `info` line each).
    pub fn maintain(&self) {
        self.flood.maintain();
    }

    /// Sources banned now (the `trunkgate_banned_sources` gauge).
    pub fn banned_sources(&self) -> usize {
        self.flood.banned()
    }

    /// Source keys the flood limiter holds now (at most about `flood.max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.flood.tracked()
    }

    /// What a request from a source in no allow list gets.
    pub fn unknown_source(&self) -> UnknownSource {
        self.unknown_source
    }

    /// Is `user_agent` on `security.block_user_agents` (ASCII-case-insensitive substring)?
    /// Always `false` for the PBX and the trunks under `flood.exempt_peers`.
    pub fn blocked_user_agent(&self, source: Source, user_agent: &[u8]) -> bool {
        !self.exempt_peer(source) && self.user_agents.matches(user_agent)
    }

    /// Session limits of trunk `trunk`; no limits for an id the policy does not have.
    pub fn trunk_limits(&self, trunk: TrunkId) -> TrunkLimits {
        self.limits
            .get(usize::from(trunk.0))
            .copied()
            .unwrap_or_default()
    }

    /// Take one call from trunk `trunk`'s `max_cps` bucket (size `cps_burst`). `false`: over
    /// the rate, nothing taken. `true` for a trunk without `max_cps`.
    #[inline]
    pub fn try_call_rate(&self, trunk: TrunkId) -> bool {
        self.call_rates.try_take(usize::from(trunk.0))
    }

    /// Give back a token taken by [`AdmissionControl::try_call_rate`] for a call that was
    /// not placed (its account refused it): the trunk's rate is not spent on it.
    #[inline]
    pub fn give_back_call_rate(&self, trunk: TrunkId) {
        self.call_rates.give_back(usize::from(trunk.0));
    }

    /// The `[[account]]` trunk `trunk` belongs to, if any.
    #[inline]
    pub fn trunk_account(&self, trunk: TrunkId) -> Option<AccountId> {
        self.trunk_accounts
            .get(usize::from(trunk.0))
            .copied()
            .flatten()
    }

    /// Session limits of account `account` (all its trunks together); none for an id the
    /// policy does not have.
    pub fn account_limits(&self, account: AccountId) -> TrunkLimits {
        self.account_limits
            .get(usize::from(account.0))
            .copied()
            .unwrap_or_default()
    }

    /// Take one call from account `account`'s `max_cps` bucket. `false`: over the rate,
    /// nothing taken. `true` for an account without `max_cps`.
    #[inline]
    pub fn try_account_rate(&self, account: AccountId) -> bool {
        self.account_rates.try_take(usize::from(account.0))
    }

    /// A REGISTER (from any source; all share one `[register]` bucket). `None`: pass.
    /// `Some(secs)`: refuse with `503` and `Retry-After: secs`, uniformly random within
    /// `[retry_after_min, retry_after_max]`.
    pub fn try_register(&self, _source: Source) -> Option<u32> {
        self.register.try_take()
    }

    /// `Retry-After` seconds of a `503` when no trunk can take a call.
    pub fn overflow_retry_after(&self) -> u32 {
        self.overflow_retry_after
    }
}

impl<C: Clock + Clone> fmt::Debug for AdmissionControl<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionControl")
            .field("exempt_peers", &self.exempt_peers)
            .field("unknown_source", &self.unknown_source)
            .field("tracked_sources", &self.tracked_sources())
            .field("banned_sources", &self.banned_sources())
            .field("limits", &self.limits)
            .field("trunk_accounts", &self.trunk_accounts)
            .field("account_limits", &self.account_limits)
            .finish_non_exhaustive()
    }
}
