//! Trunk selection strategies: given the usable trunks of a route in configured order, the
//! order to try them in. As in pingora's `selection`, the caller takes candidates one by one
//! and moves on while a candidate is unusable (at its limits) — failover is "next".
//! Health has already removed the trunks that are down or cooling down.
//!
//! Each strategy is one file; each writes every usable trunk exactly once, best first.

mod least_utilized;
mod priority;
mod round_robin;
mod weighted;

pub use least_utilized::LeastUtilized;
pub use priority::Priority;
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

use crate::TrunkId;
use trunkgate_config::Strategy;

/// A usable trunk of a route, with what strategies weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: TrunkId,
    /// Position in the route's configured trunk list.
    pub position: usize,
    pub weight: u32,
    /// Sessions in progress now.
    pub sessions: u32,
    pub max_sessions: Option<u32>,
}

/// A selection strategy.
pub trait Selection {
    /// Append the ids of `usable` (in configured order) to `out`, best first, each once.
    fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>);
}

/// The strategy of one route, with its state (a round-robin counter, weighted credits).
#[derive(Debug)]
pub(crate) enum Selector {
    Priority(Priority),
    RoundRobin(RoundRobin),
    Weighted(Weighted),
    LeastUtilized(LeastUtilized),
}

impl Selector {
    /// For a route of `len` trunks.
    pub fn new(strategy: Strategy, len: usize) -> Self {
        match strategy {
            Strategy::Priority => Selector::Priority(Priority),
            Strategy::RoundRobin => Selector::RoundRobin(RoundRobin::default()),
            Strategy::Weighted => Selector::Weighted(Weighted::new(len)),
            Strategy::LeastUtilized => Selector::LeastUtilized(LeastUtilized),
        }
    }

    pub fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>) {
        if usable.is_empty() {
            return;
        }
        match self {
            Selector::Priority(s) => s.order(usable, out),
            Selector::RoundRobin(s) => s.order(usable, out),
            Selector::Weighted(s) => s.order(usable, out),
            Selector::LeastUtilized(s) => s.order(usable, out),
        }
    }
}

/// Test helpers shared by the strategies' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Trunks `0..n` at positions `0..n` with `weights` (1 when short) and no load.
    pub fn trunks(n: u16, weights: &[u32]) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: TrunkId(i),
                position: usize::from(i),
                weight: weights.get(usize::from(i)).copied().unwrap_or(1),
                sessions: 0,
                max_sessions: None,
            })
            .collect()
    }

    pub fn order(s: &impl Selection, usable: &[Candidate]) -> Vec<u16> {
        let mut out = Vec::new();
        s.order(usable, &mut out);
        out.into_iter().map(|t| t.0).collect()
    }

    /// Every strategy: each usable trunk once, nothing for nothing.
    pub fn each_once(s: &impl Selection) {
        let usable = trunks(4, &[1, 5, 2, 2]);
        for _ in 0..10 {
            let mut got = order(s, &usable);
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2, 3]);
        }
        // A trunk health left out (down, cooling) is never written.
        let without_2: Vec<Candidate> = usable.iter().copied().filter(|c| c.id.0 != 2).collect();
        for _ in 0..10 {
            let mut got = order(s, &without_2);
            got.sort_unstable();
            assert_eq!(got, [0, 1, 3]);
        }
        assert!(order(s, &[]).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_with_nothing_usable_writes_nothing() {
        for s in [
            Strategy::Priority,
            Strategy::RoundRobin,
            Strategy::Weighted,
            Strategy::LeastUtilized,
        ] {
            let mut out = Vec::new();
            Selector::new(s, 3).order(&[], &mut out);
            assert!(out.is_empty(), "{s:?}");
        }
    }
}
