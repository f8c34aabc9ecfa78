//! `weighted`: spread calls over trunks in proportion to their weights.
//!
//! Fallback until trunk weights land in the policy schema: there are no weights to use yet,
//! so this behaves exactly like `priority` (configured order). Routes may already name it.

use super::Selection;

#[derive(Debug, Clone, Copy, Default)]
pub struct Weighted;

impl Selection for Weighted {
    fn start(&self, _len: usize) -> usize {
        0
    }
}
