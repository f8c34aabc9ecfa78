//! `priority`: the trunks in the order the route lists them; the first usable one wins.

use super::Selection;

#[derive(Debug, Clone, Copy, Default)]
pub struct Priority;

impl Selection for Priority {
    fn start(&self, _len: usize) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_starts_at_the_first() {
        assert_eq!(Priority.start(3), 0);
        assert_eq!(Priority.start(3), 0);
    }
}
