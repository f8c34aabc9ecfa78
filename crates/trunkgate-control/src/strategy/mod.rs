//! Trunk selection strategies: given a route's trunks in configured order, the order to try
//! them in. As in pingora's `selection`, the caller takes candidates one by one and moves on
//! while a candidate is unusable (down, drained, at its limits) — failover is "next".
//!
//! Each strategy is one file. For now every order is a rotation of the configured list (a
//! start index); strategies that need more (weights, utilisation) will widen [`Candidates`].

mod least_utilized;
mod priority;
mod round_robin;
mod weighted;

pub use least_utilized::LeastUtilized;
pub use priority::Priority;
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

use trunkgate_config::Strategy;

/// A selection strategy: where in the configured list the candidates start.
pub trait Selection {
    /// The index of the first candidate among `len` trunks (`len` ≥ 1).
    fn start(&self, len: usize) -> usize;
}

/// The strategy of one route, with its state (e.g. a round-robin counter).
#[derive(Debug)]
pub(crate) enum Selector {
    Priority(Priority),
    RoundRobin(RoundRobin),
    Weighted(Weighted),
    LeastUtilized(LeastUtilized),
}

impl Selector {
    pub fn new(strategy: Strategy) -> Self {
        match strategy {
            Strategy::Priority => Selector::Priority(Priority),
            Strategy::RoundRobin => Selector::RoundRobin(RoundRobin::default()),
            Strategy::Weighted => Selector::Weighted(Weighted),
            Strategy::LeastUtilized => Selector::LeastUtilized(LeastUtilized),
        }
    }

    pub fn candidates<'r>(&self, trunks: &'r [usize]) -> Candidates<'r> {
        let start = match trunks.len() {
            0 => 0,
            len => match self {
                Selector::Priority(s) => s.start(len),
                Selector::RoundRobin(s) => s.start(len),
                Selector::Weighted(s) => s.start(len),
                Selector::LeastUtilized(s) => s.start(len),
            },
        };
        Candidates {
            trunks,
            start,
            taken: 0,
        }
    }
}

/// Trunk indices (into `Policy::trunks`) in the order to try them; each exactly once.
#[derive(Debug, Clone)]
pub struct Candidates<'r> {
    trunks: &'r [usize],
    start: usize,
    taken: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.taken >= self.trunks.len() {
            return None;
        }
        let i = (self.start + self.taken) % self.trunks.len();
        self.taken += 1;
        self.trunks.get(i).copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.trunks.len() - self.taken;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Candidates<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_rotate_and_end() {
        let trunks = [4, 7, 9];
        let c = Candidates {
            trunks: &trunks,
            start: 1,
            taken: 0,
        };
        assert_eq!(c.len(), 3);
        assert_eq!(c.collect::<Vec<_>>(), [7, 9, 4]);
        assert_eq!(Selector::new(Strategy::Priority).candidates(&[]).count(), 0);
    }
}
