//! `round-robin`: each new call starts one trunk further along the route's list, then fails
//! over in list order from there. The counter is one relaxed atomic per route: no lock.

use super::Selection;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selection for RoundRobin {
    fn start(&self, len: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % len.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_through_every_start() {
        let rr = RoundRobin::default();
        let starts: Vec<usize> = (0..7).map(|_| rr.start(3)).collect();
        assert_eq!(starts, [0, 1, 2, 0, 1, 2, 0]);
    }
}
