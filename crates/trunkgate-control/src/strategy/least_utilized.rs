//! `least-utilized`: first the trunk with the lowest share of its `max_sessions` in use
//! (sessions / max_sessions, ascending; ties in configured order). A trunk without
//! `max_sessions` counts as sessions / u32::MAX, i.e. practically empty: it is preferred
//! over any trunk with a limit and some load, and among such trunks the least loaded wins.
//! Shares are compared exactly (cross-multiplied in u64), never as floats.

use super::{Candidate, Selection};
use crate::TrunkId;
use smallvec::SmallVec;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, Default)]
pub struct LeastUtilized;

/// `a`'s share of its limit against `b`'s.
fn by_share(a: &Candidate, b: &Candidate) -> Ordering {
    let limit = |c: &Candidate| u64::from(c.max_sessions.unwrap_or(u32::MAX).max(1));
    (u64::from(a.sessions) * limit(b)).cmp(&(u64::from(b.sessions) * limit(a)))
}

impl Selection for LeastUtilized {
    fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>) {
        let mut sorted: SmallVec<[&Candidate; 8]> = usable.iter().collect();
        // Stable: equal shares keep configured order.
        sorted.sort_by(|a, b| by_share(a, b));
        out.extend(sorted.iter().map(|c| c.id));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{each_once, order, trunks};
    use super::*;

    #[test]
    fn long_calls_split_by_capacity() {
        let mut usable = trunks(2, &[]);
        usable[0].max_sessions = Some(100);
        usable[1].max_sessions = Some(300);
        for _ in 0..400 {
            let first = order(&LeastUtilized, &usable)[0];
            // The call never ends: its session stays on the trunk it took.
            usable[usize::from(first)].sessions += 1;
        }
        let (a, b) = (f64::from(usable[0].sessions), f64::from(usable[1].sessions));
        assert!(
            (a - 100.0).abs() <= 10.0 && (b - 300.0).abs() <= 30.0,
            "{a}:{b}"
        );
        assert_eq!((usable[0].sessions, usable[1].sessions), (100, 300));
    }

    #[test]
    fn ties_keep_configured_order_and_no_limit_is_nearly_empty() {
        let mut usable = trunks(3, &[]);
        assert_eq!(order(&LeastUtilized, &usable), [0, 1, 2]);
        usable[0].max_sessions = Some(10);
        usable[0].sessions = 1;
        usable[1].sessions = 50; // no limit: 50 / u32::MAX
        assert_eq!(order(&LeastUtilized, &usable), [2, 1, 0]);
        each_once(&LeastUtilized);
    }
}
