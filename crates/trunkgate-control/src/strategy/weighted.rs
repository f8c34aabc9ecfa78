//! `weighted`: first picks in proportion to the trunks' `weight`, by smooth weighted
//! round-robin (nginx's algorithm): each call, every usable trunk's credit grows by its
//! weight, the trunk with the most credit (ties: configured order) goes first and pays
//! back the total weight. Picks interleave (5:1:1 gives a a b a c a a, not a a a a a b c)
//! and are deterministic: the same sequence of calls gives the same picks. The other
//! usable trunks follow by descending weight, ties in configured order.
//!
//! A trunk that is not usable earns no credit, so its share goes to the others. The
//! credits sit behind a mutex (one short lock per call on this route).

use super::{Candidate, Selection};
use crate::TrunkId;
use smallvec::SmallVec;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Weighted {
    /// Credit per trunk, by position in the route.
    credit: Mutex<Vec<i64>>,
}

impl Weighted {
    /// For a route of `len` trunks.
    pub fn new(len: usize) -> Self {
        Weighted {
            credit: Mutex::new(vec![0; len]),
        }
    }

    /// The position in `usable` of this call's first pick.
    fn pick(&self, usable: &[Candidate]) -> usize {
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        let total: i64 = usable.iter().map(|c| i64::from(c.weight)).sum();
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in usable.iter().enumerate() {
            if credit.len() <= c.position {
                credit.resize(c.position + 1, 0);
            }
            let Some(slot) = credit.get_mut(c.position) else {
                continue;
            };
            *slot += i64::from(c.weight);
            if best.is_none_or(|(_, b)| *slot > b) {
                best = Some((i, *slot));
            }
        }
        let (i, _) = best.unwrap_or((0, 0));
        if let Some(slot) = usable.get(i).and_then(|c| credit.get_mut(c.position)) {
            *slot -= total;
        }
        i
    }
}

impl Selection for Weighted {
    fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>) {
        let first = self.pick(usable);
        let mut rest: SmallVec<[&Candidate; 8]> = usable
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != first)
            .map(|(_, c)| c)
            .collect();
        // Stable: equal weights keep configured order.
        rest.sort_by_key(|c| std::cmp::Reverse(c.weight));
        out.extend(usable.get(first).map(|c| c.id));
        out.extend(rest.iter().map(|c| c.id));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{each_once, order, trunks};
    use super::*;

    #[test]
    fn three_to_one_over_4000_calls() {
        let w = Weighted::new(2);
        let usable = trunks(2, &[3, 1]);
        let mut firsts = [0u32; 2];
        for _ in 0..4000 {
            let o = order(&w, &usable);
            assert_eq!(o.len(), 2);
            firsts[usize::from(o[0])] += 1;
        }
        // ±3 % of 75/25 asked; smooth WRR is exact.
        assert_eq!(firsts, [3000, 1000]);
    }

    #[test]
    fn picks_interleave_and_repeat() {
        let w = Weighted::new(3);
        let usable = trunks(3, &[5, 1, 1]);
        let firsts: Vec<u16> = (0..7).map(|_| order(&w, &usable)[0]).collect();
        assert_eq!(firsts, [0, 0, 1, 0, 2, 0, 0]);
        let again = Weighted::new(3);
        let firsts2: Vec<u16> = (0..7).map(|_| order(&again, &usable)[0]).collect();
        assert_eq!(firsts, firsts2, "deterministic");
    }

    #[test]
    fn the_rest_follow_by_descending_weight_ties_in_order() {
        let w = Weighted::new(4);
        let usable = trunks(4, &[1, 5, 2, 2]);
        // The first pick is trunk 1 (most credit); then 2 and 3 (weight 2, in order), then 0.
        assert_eq!(order(&w, &usable), [1, 2, 3, 0]);
        each_once(&Weighted::new(4));
    }

    #[test]
    fn a_down_trunks_share_goes_to_the_others() {
        let w = Weighted::new(3);
        let all = trunks(3, &[2, 1, 1]);
        let without_0: Vec<Candidate> = all[1..].to_vec();
        let mut firsts = [0u32; 3];
        for _ in 0..400 {
            firsts[usize::from(order(&w, &without_0)[0])] += 1;
        }
        assert_eq!(firsts, [0, 200, 200]);
        // Back up: the 2:1:1 split resumes.
        let mut firsts = [0u32; 3];
        for _ in 0..400 {
            firsts[usize::from(order(&w, &all)[0])] += 1;
        }
        assert_eq!(firsts, [200, 100, 100]);
    }
}
