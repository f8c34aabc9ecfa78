//! `round-robin`: each new call starts one usable trunk further along the route's list,
//! then fails over in list order from there. The counter is one relaxed atomic per route:
//! no lock.

use super::{Candidate, Selection};
use crate::TrunkId;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selection for RoundRobin {
    fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>) {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % usable.len().max(1);
        let (head, tail) = usable.split_at(start.min(usable.len()));
        out.extend(tail.iter().chain(head).map(|c| c.id));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{each_once, order, trunks};
    use super::*;

    #[test]
    fn rotates_through_every_start() {
        let rr = RoundRobin::default();
        let usable = trunks(3, &[]);
        let orders: Vec<Vec<u16>> = (0..4).map(|_| order(&rr, &usable)).collect();
        assert_eq!(orders, [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]);
        each_once(&RoundRobin::default());
    }

    #[test]
    fn a_down_trunk_is_left_out_of_the_rotation() {
        let rr = RoundRobin::default();
        let usable: Vec<Candidate> = trunks(3, &[]).into_iter().filter(|c| c.id.0 != 1).collect();
        let firsts: Vec<u16> = (0..4).map(|_| order(&rr, &usable)[0]).collect();
        assert_eq!(firsts, [0, 2, 0, 2]);
    }
}
