//! Session and call-rate limits for new calls: which candidate trunk may take a call
//! (overflow to the next one), counted exactly against the core's own session counts.

use super::Proxy;
use crate::admission::RejectReason;
use crate::metrics::Direction;
use crate::routing::{Party, Target};
use std::collections::VecDeque;

impl Proxy {
    /// Take the first target of a new call from `candidates`: for an outbound call the
    /// first candidate trunk under its session and call-rate limits (the ones before it are
    /// skipped, each skip counted; the ones after it stay for failover); for an inbound call
    /// the source trunk's own limits, then the first candidate. `None` when none can take
    /// it (answered 503 with Retry-After).
    pub(super) fn admit_call(
        &mut self,
        from: Party,
        candidates: &mut VecDeque<Target>,
    ) -> Option<Target> {
        if let Party::Trunk(t) = from {
            if !self.trunk_has_room(t, Direction::Inbound) {
                self.metrics
                    .reject(from.metric_index(), RejectReason::Sessions);
                return None;
            }
            if !self.admission.try_call_rate(t) {
                self.metrics.reject(from.metric_index(), RejectReason::Cps);
                return None;
            }
            return candidates.pop_front();
        }
        while let Some(target) = candidates.pop_front() {
            let Party::Trunk(t) = target.party else {
                return Some(target);
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
            return Some(target);
        }
        None
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
