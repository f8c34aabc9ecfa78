//! Session and call-rate limits for new calls: which candidate trunk may take a call
//! (overflow to the next one), counted exactly against the core's own session counts.

use super::Proxy;
use crate::admission::RejectReason;
use crate::metrics::Direction;
use crate::routing::{Party, Target};

impl Proxy {
    /// Pick the target of a new call: for an outbound call the first candidate trunk under
    /// its session and call-rate limits (the others overflow to the next, each skip
    /// counted); for an inbound call the source trunk's own limits. `Err` when none can take
    /// it (answered 503 with Retry-After).
    pub(super) fn admit_call(&mut self, from: Party, candidates: &[Target]) -> Result<Target, ()> {
        if let Party::Trunk(t) = from {
            if !self.trunk_has_room(t, Direction::Inbound) {
                self.metrics
                    .reject(from.metric_index(), RejectReason::Sessions);
                return Err(());
            }
            if !self.admission.try_call_rate(t) {
                self.metrics.reject(from.metric_index(), RejectReason::Cps);
                return Err(());
            }
            return candidates.first().cloned().ok_or(());
        }
        for target in candidates {
            let Party::Trunk(t) = target.party else {
                return Ok(target.clone());
            };
            if !self.trunk_has_room(t, Direction::Outbound) {
                self.metrics
                    .reject(target.party.metric_index(), RejectReason::Sessions);
                continue;
            }
            if !self.admission.try_call_rate(t) {
                self.metrics
                    .reject(target.party.metric_index(), RejectReason::Cps);
                continue;
            }
            return Ok(target.clone());
        }
        Err(())
    }

    /// Is trunk `t` under `max_sessions` and its per-direction limit?
    pub(super) fn trunk_has_room(&self, t: u16, direction: Direction) -> bool {
        let limits = self.admission.trunk_limits(t);
        let counts = self.sessions_of(t);
        let total = counts[0] + counts[1];
        let directional = match direction {
            Direction::Outbound => limits.max_outbound,
            Direction::Inbound => limits.max_inbound,
        };
        limits.max_sessions.is_none_or(|max| total < max)
            && directional.is_none_or(|max| counts[direction.index()] < max)
    }
}
