//! Session and call-rate limits for new calls: which candidate trunk may take a call
//! (overflow to the next one), counted exactly against the core's own session counts, per
//! trunk and per provider account (`[[account]]`: limits several trunks share).
//!
//! The order of the checks for one candidate trunk ([`Proxy::take_trunk`]): the trunk's
//! sessions, its account's sessions, the trunk's call rate, the account's call rate. The
//! session checks read counts and take nothing, so they go first; a call-rate token is
//! taken only when every check before it passed, and when the account's bucket refuses,
//! the trunk's token is given back: a refused call spends no trunk's rate.

use super::Proxy;
use crate::admission::{AccountId, RejectReason, TrunkLimits};
use crate::metrics::Direction;
use crate::routing::{Party, Target, TrunkId};
use std::collections::VecDeque;

impl Proxy {
    /// Take the first target of a new call from `candidates`: for an outbound call the
    /// first candidate trunk under its own and its account's session and call-rate limits
    /// (the ones before it are skipped, each skip counted; the ones after it stay for
    /// failover), so a full account sends the call to another provider rather than to a
    /// sibling trunk of the same account; for an inbound call the source trunk's (and its
    /// account's) limits, then the first candidate. `Err` when none can take it
    /// (answered 503 with Retry-After): the first trunk that refused and why.
    pub(super) fn admit_call(
        &mut self,
        from: Party,
        candidates: &mut VecDeque<Target>,
    ) -> Result<Target, Option<(TrunkId, RejectReason)>> {
        if let Party::Trunk(t) = from {
            if let Err(reason) = self.take_trunk(t, Direction::Inbound, None) {
                self.metrics.reject(from.metric_index(), reason);
                return Err(Some((t, reason)));
            }
            return candidates.pop_front().ok_or(None);
        }
        let mut first = None;
        while let Some(target) = candidates.pop_front() {
            let Party::Trunk(t) = target.party else {
                return Ok(target);
            };
            match self.take_trunk(t, Direction::Outbound, None) {
                Ok(()) => return Ok(target),
                Err(reason) => {
                    self.metrics.reject(target.party.metric_index(), reason);
                    first = first.or(Some((t, reason)));
                }
            }
        }
        Err(first)
    }

    /// May trunk `t` take a new call in `direction`? On `Ok` the trunk's and the account's
    /// call-rate tokens are taken; on `Err` nothing is (the reason is the first limit that
    /// refused). `holding`: the account in which the call already holds a session (a call
    /// failing over to a sibling trunk of its account needs no second one).
    pub(super) fn take_trunk(
        &self,
        t: TrunkId,
        direction: Direction,
        holding: Option<AccountId>,
    ) -> Result<(), RejectReason> {
        if !self.trunk_has_room(t, direction) {
            return Err(RejectReason::Sessions);
        }
        let account = self.admission.trunk_account(t);
        if let Some(a) = account {
            if holding != Some(a) && !self.account_has_room(a, direction) {
                return Err(RejectReason::AccountSessions);
            }
        }
        if !self.admission.try_call_rate(t) {
            return Err(RejectReason::Cps);
        }
        if let Some(a) = account {
            if !self.admission.try_account_rate(a) {
                self.admission.give_back_call_rate(t);
                return Err(RejectReason::AccountCps);
            }
        }
        Ok(())
    }

    /// Is trunk `t` under `max_sessions` and its per-direction limit?
    pub(super) fn trunk_has_room(&self, t: TrunkId, direction: Direction) -> bool {
        has_room(
            self.admission.trunk_limits(t),
            self.sessions_of(t),
            direction,
        )
    }

    /// Is account `a` (all its trunks together) under its limits?
    fn account_has_room(&self, a: AccountId, direction: Direction) -> bool {
        has_room(
            self.admission.account_limits(a),
            self.account_sessions_of(a),
            direction,
        )
    }
}

/// `counts` (by [`Direction::index`]) leave room for one more call in `direction`.
fn has_room(limits: TrunkLimits, counts: [u32; 2], direction: Direction) -> bool {
    let total = counts[0] + counts[1];
    let directional = match direction {
        Direction::Outbound => limits.max_outbound,
        Direction::Inbound => limits.max_inbound,
    };
    limits.max_sessions.is_none_or(|max| total < max)
        && directional.is_none_or(|max| counts[direction.index()] < max)
}
