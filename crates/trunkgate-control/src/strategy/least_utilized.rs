//! `least-utilized`: try first the trunk with the lowest share of its `max_sessions` in use.
//!
//! Fallback until per-trunk session counters land in `trunkgate-control`: without utilisation
//! figures this behaves exactly like `priority` (configured order). Routes may already name it.

use super::Selection;

#[derive(Debug, Clone, Copy, Default)]
pub struct LeastUtilized;

impl Selection for LeastUtilized {
    fn start(&self, _len: usize) -> usize {
        0
    }
}
