//! The addresses of trunks that have several (a DNS name: RFC 3263 SRV targets and A/AAAA
//! records). One address failing takes that address out for the breaker cooldown — calls
//! and probes go to the next one at once — and counts against the trunk only when no other
//! address of it is usable: a trunk is down when all its addresses are.

use super::{BranchOutcome, Health, ProbeOutcome, StateChange};
use crate::TrunkId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Failed addresses and until when they are skipped.
#[derive(Debug, Clone, Default)]
pub(super) struct Nodes {
    down: HashMap<(TrunkId, SocketAddr), Instant>,
}

impl Nodes {
    fn usable(&self, now: Instant, trunk: TrunkId, address: SocketAddr) -> bool {
        self.down
            .get(&(trunk, address))
            .is_none_or(|&until| until <= now)
    }

    fn failed(&mut self, now: Instant, trunk: TrunkId, address: SocketAddr, hold: Duration) {
        // Bounded by the policy: only addresses of multi-address trunks get here, and
        // `retain` drops the ones a new table no longer has.
        self.down.insert((trunk, address), now + hold);
    }

    fn succeeded(&mut self, trunk: TrunkId, address: SocketAddr) {
        self.down.remove(&(trunk, address));
    }

    pub(super) fn retain(&mut self, keep: impl Fn(TrunkId, SocketAddr) -> bool) {
        self.down.retain(|&(t, a), _| keep(t, a));
    }
}

impl Health {
    /// Is `address` of `trunk` worth trying now (not failed within the breaker cooldown)?
    pub fn address_usable(&self, now: Instant, trunk: TrunkId, address: SocketAddr) -> bool {
        self.nodes.usable(now, trunk, address)
    }

    /// `addresses` in order, the usable ones only — or all of them when none is (the
    /// trunk's own breaker decides then), into `out` (cleared first).
    pub fn usable_addresses(
        &self,
        now: Instant,
        trunk: TrunkId,
        addresses: &[SocketAddr],
        out: &mut Vec<SocketAddr>,
    ) {
        out.clear();
        out.extend(
            addresses
                .iter()
                .copied()
                .filter(|&a| self.nodes.usable(now, trunk, a)),
        );
        if out.is_empty() {
            out.extend_from_slice(addresses);
        }
    }

    /// A branch to `address`, one of `trunk`'s `addresses`, ended with `outcome`. With one
    /// address this is [`Health::on_branch`]; with several, a failure takes the address out
    /// for the breaker cooldown and reaches the trunk's breaker only when no other address
    /// is usable; a success clears the address and reaches the breaker.
    pub fn on_address_branch(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        address: SocketAddr,
        addresses: &[SocketAddr],
        outcome: BranchOutcome,
    ) -> Option<StateChange> {
        if addresses.len() > 1 && addresses.contains(&address) {
            match outcome.failed() {
                Some(true) if !self.address_failed(now, trunk, address, addresses) => {
                    return None;
                }
                Some(false) => self.nodes.succeeded(trunk, address),
                _ => {}
            }
        }
        self.on_branch(now, trunk, outcome)
    }

    /// [`Health::on_address_branch`] for probes: a probe that fails at one address while
    /// another is usable only takes that address out (the next probe goes to the next).
    pub fn on_address_probe(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        address: SocketAddr,
        addresses: &[SocketAddr],
        outcome: ProbeOutcome,
        rtt: Option<Duration>,
    ) -> Option<StateChange> {
        if addresses.len() > 1 && addresses.contains(&address) {
            let reachable = match (outcome, self.record(trunk).and_then(|r| r.probe.as_ref())) {
                (ProbeOutcome::Reply(code), Some(p)) => p.reachable(code),
                (ProbeOutcome::Reply(_), None) => true,
                _ => false,
            };
            if reachable {
                self.nodes.succeeded(trunk, address);
            } else if !self.address_failed(now, trunk, address, addresses) {
                return None;
            }
        }
        self.on_probe(now, trunk, outcome, rtt)
    }

    /// Take `address` out; `true` when it was the last usable one of `addresses`.
    fn address_failed(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        address: SocketAddr,
        addresses: &[SocketAddr],
    ) -> bool {
        let hold = self.settings.breaker_cooldown;
        self.nodes.failed(now, trunk, address, hold);
        !addresses.iter().any(|&a| self.nodes.usable(now, trunk, a))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::RoutingTable;
    use trunkgate_config::Policy;

    fn health() -> Health {
        let policy = Policy::embedded_default().unwrap();
        let table = RoutingTable::new(&policy, &mut crate::TrunkIds::default(), |_, _| {
            Err(std::io::Error::other("no DNS in tests"))
        })
        .unwrap();
        Health::new(&table, &policy.health, Instant::now())
    }

    #[test]
    fn one_failed_address_is_skipped_and_the_trunk_stays_up_until_all_fail() {
        let mut h = health();
        let t = TrunkId(0);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
        );
        let all = [a, b];
        let now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..20 {
            assert_eq!(
                h.on_address_branch(now, t, a, &all, BranchOutcome::Timeout),
                None
            );
        }
        assert!(h.usable(now, t), "one address down is not the trunk down");
        h.usable_addresses(now, t, &all, &mut out);
        assert_eq!(out, [b]);
        // The last one failing reaches the breaker (and, with every address down, both are
        // offered again: the breaker decides).
        h.on_address_branch(now, t, b, &all, BranchOutcome::Timeout);
        h.usable_addresses(now, t, &all, &mut out);
        assert_eq!(out, [a, b]);
        // After the cooldown the first address is tried again; success clears it.
        let later = now + h.settings().breaker_cooldown + Duration::from_millis(1);
        h.usable_addresses(later, t, &all, &mut out);
        assert_eq!(out, [a, b]);
        h.on_address_branch(now, t, b, &all, BranchOutcome::Answered);
        h.usable_addresses(now, t, &all, &mut out);
        assert_eq!(out, [b]);
    }

    #[test]
    fn a_single_address_trunk_goes_straight_to_the_breaker() {
        let mut h = health();
        let t = TrunkId(0);
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let now = Instant::now();
        let mut change = None;
        for _ in 0..h.settings().breaker_failures {
            change = h.on_address_branch(now, t, a, &[a], BranchOutcome::Timeout);
        }
        assert!(change.is_some(), "the breaker opens as for any trunk");
        assert!(!h.usable(now, t));
    }
}
