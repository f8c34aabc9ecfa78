//! `priority`: the trunks in the order the route lists them; the first usable one wins.

use super::{Candidate, Selection};
use crate::TrunkId;

#[derive(Debug, Clone, Copy, Default)]
pub struct Priority;

impl Selection for Priority {
    fn order(&self, usable: &[Candidate], out: &mut Vec<TrunkId>) {
        out.extend(usable.iter().map(|c| c.id));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{each_once, order, trunks};
    use super::*;

    #[test]
    fn configured_order_every_time() {
        let usable = trunks(3, &[]);
        for _ in 0..3 {
            assert_eq!(order(&Priority, &usable), [0, 1, 2]);
        }
        assert_eq!(order(&Priority, &usable[1..]), [1, 2], "the first is down");
        each_once(&Priority);
    }
}
