//! The RTP/RTCP port-pair pool (`media.ports`), with quarantine on release.
//!
//! A pair is `(p, p + 1)` with `p` even: RTP on `p`, RTCP on `p + 1` (RFC 3550 §11). A
//! released pair is quarantined for `quarantine` so that late packets of the old call can
//! not land in a new one; after that it goes to the back of the free queue, so a port is
//! reused as late as possible.
//!
//! What is here: bookkeeping only. Binding the sockets is the caller's `try_bind`; the
//! clock is the caller's `now`. Nothing here touches a socket or reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// State of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Free,
    InUse,
    Quarantined,
}

/// The even/odd port-pair pool. Memory is O(pairs): one state byte, one free-queue slot
/// and at most one quarantine entry per pair.
#[derive(Debug)]
pub struct PortPool {
    /// RTP port of pair 0 (even).
    base: u16,
    state: Vec<PairState>,
    /// Free pairs, least recently freed first. `take` pops the front, so a freed pair goes
    /// behind every other free one: round-robin order that reuses a port as late as possible.
    free: VecDeque<u16>,
    /// `(pair index, free again at)`, in release order.
    quarantine: VecDeque<(u16, Instant)>,
    quarantine_for: Duration,
    in_use: usize,
}

/// `take` gives up after this many refused binds (ports held by another program).
const MAX_BIND_FAILURES: usize = 64;

impl PortPool {
    /// Pairs `(p, p+1)` with `p` even, `first <= p`, `p+1 <= last`. Empty pool if the
    /// range holds no pair.
    pub fn new(first: u16, last: u16, quarantine: Duration) -> PortPool {
        let base = u32::from(first) + u32::from(first) % 2;
        let pairs = if base < u32::from(last) {
            (u32::from(last) - base - 1) / 2 + 1
        } else {
            0
        };
        // `pairs` <= 32768, so pair indexes fit a u16 and `base` fits when pairs > 0.
        let pairs = pairs as usize;
        PortPool {
            base: u16::try_from(base).unwrap_or(0),
            state: vec![PairState::Free; pairs],
            free: (0..pairs).filter_map(|i| u16::try_from(i).ok()).collect(),
            quarantine: VecDeque::new(),
            quarantine_for: quarantine,
            in_use: 0,
        }
    }

    /// Next free pair, in round-robin order (least recently freed first), skipping pairs in
    /// use or still quarantined at `now`. Each candidate's RTP port goes to `try_bind`; when
    /// it returns false (port taken by another program) the next pair is tried, up to 64
    /// failed binds or one full lap. Returns the RTP (even) port, now marked in use.
    pub fn take(&mut self, now: Instant, mut try_bind: impl FnMut(u16) -> bool) -> Option<u16> {
        self.expire(now);
        let lap = self.free.len();
        let mut failures = 0;
        for _ in 0..lap {
            let idx = self.free.pop_front()?;
            let port = self.port_of(idx);
            if try_bind(port) {
                self.state[usize::from(idx)] = PairState::InUse;
                self.in_use += 1;
                return Some(port);
            }
            // Still free as far as we are concerned; try it again last.
            self.free.push_back(idx);
            failures += 1;
            if failures >= MAX_BIND_FAILURES {
                break;
            }
        }
        None
    }

    /// The pair of `rtp_port` is quarantined until `now + quarantine`, then free again.
    /// Ports outside the pool, odd ports and pairs not in use are ignored (a double release
    /// does not restart or duplicate the quarantine).
    pub fn release(&mut self, rtp_port: u16, now: Instant) {
        let Some(idx) = self.index_of(rtp_port) else {
            return;
        };
        let slot = &mut self.state[usize::from(idx)];
        if *slot != PairState::InUse {
            return;
        }
        *slot = PairState::Quarantined;
        self.in_use -= 1;
        let until = now
            .checked_add(self.quarantine_for)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        self.quarantine.push_back((idx, until));
    }

    /// The pair of `rtp_port` is free again at once, at the back of the queue (so it is
    /// still reused as late as possible): for pairs that never received a datagram, which no
    /// late packet can follow (rejected and challenged INVITEs would otherwise fill the
    /// quarantine at the call-attempt rate). Same guards as [`PortPool::release`].
    pub fn release_now(&mut self, rtp_port: u16) {
        let Some(idx) = self.index_of(rtp_port) else {
            return;
        };
        let slot = &mut self.state[usize::from(idx)];
        if *slot != PairState::InUse {
            return;
        }
        *slot = PairState::Free;
        self.in_use -= 1;
        self.free.push_back(idx);
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    /// Pairs taken and not released.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Pairs released and still quarantined at `now`.
    pub fn quarantined(&self, now: Instant) -> usize {
        self.quarantine
            .iter()
            .filter(|&&(_, until)| until > now)
            .count()
    }

    /// Moves pairs whose quarantine has ended to the back of the free queue. Entries are in
    /// release order; with a monotonic `now` that is also expiry order, so this stops at the
    /// first one still quarantined. (A `now` that went backwards only delays reuse.)
    fn expire(&mut self, now: Instant) {
        while let Some(&(idx, until)) = self.quarantine.front() {
            if until > now {
                break;
            }
            self.quarantine.pop_front();
            self.state[usize::from(idx)] = PairState::Free;
            self.free.push_back(idx);
        }
    }

    fn port_of(&self, idx: u16) -> u16 {
        // In range by construction: base + 2 * (pairs - 1) + 1 <= last.
        self.base.wrapping_add(idx.wrapping_mul(2))
    }

    fn index_of(&self, rtp_port: u16) -> Option<u16> {
        let off = rtp_port.checked_sub(self.base)?;
        if off % 2 != 0 {
            return None;
        }
        let idx = off / 2;
        (usize::from(idx) < self.state.len()).then_some(idx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const Q: Duration = Duration::from_secs(10);

    fn ok(_: u16) -> bool {
        true
    }

    #[test]
    fn pairs_are_even_and_inside_the_range() {
        let pool = PortPool::new(10000, 10009, Q);
        assert_eq!(pool.capacity(), 5);
        // Odd first port: the first pair starts at the next even port.
        let mut pool = PortPool::new(10001, 10010, Q);
        assert_eq!(pool.capacity(), 4); // 10002, 10004, 10006, 10008 (10010 has no 10011)
        let now = Instant::now();
        let mut got = Vec::new();
        while let Some(p) = pool.take(now, ok) {
            got.push(p);
        }
        assert_eq!(got, [10002, 10004, 10006, 10008]);
    }

    #[test]
    fn ranges_without_a_pair_are_empty() {
        let now = Instant::now();
        for (first, last) in [(10000, 10000), (10001, 10002), (10, 5), (65535, 65535)] {
            let mut pool = PortPool::new(first, last, Q);
            assert_eq!(pool.capacity(), 0, "{first}-{last}");
            assert_eq!(pool.take(now, ok), None);
        }
        let mut pool = PortPool::new(65534, 65535, Q);
        assert_eq!(pool.capacity(), 1);
        assert_eq!(pool.take(now, ok), Some(65534));
        let pool = PortPool::new(0, 65535, Q);
        assert_eq!(pool.capacity(), 32768);
    }

    #[test]
    fn exhaustion_returns_none() {
        let now = Instant::now();
        let mut pool = PortPool::new(20000, 20007, Q);
        for _ in 0..4 {
            assert!(pool.take(now, ok).is_some());
        }
        assert_eq!(pool.in_use(), 4);
        assert_eq!(pool.take(now, ok), None);
    }

    #[test]
    fn quarantine_holds_then_frees() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(20000, 20003, Q);
        let a = pool.take(t0, ok).unwrap();
        let b = pool.take(t0, ok).unwrap();
        pool.release(a, t0);
        assert_eq!((pool.in_use(), pool.quarantined(t0)), (1, 1));
        assert_eq!(pool.take(t0 + Q - Duration::from_millis(1), ok), None);
        assert_eq!(pool.take(t0 + Q, ok), Some(a));
        assert_eq!(pool.quarantined(t0 + Q), 0);
        // Double release and releases of foreign or odd ports change nothing.
        pool.release(b, t0);
        pool.release(b, t0);
        pool.release(b + 1, t0);
        pool.release(30000, t0);
        assert_eq!((pool.in_use(), pool.quarantined(t0)), (1, 1));
    }

    #[test]
    fn unused_pairs_skip_the_quarantine() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(20000, 20003, Q);
        let a = pool.take(t0, ok).unwrap();
        let b = pool.take(t0, ok).unwrap();
        pool.release_now(a);
        assert_eq!((pool.in_use(), pool.quarantined(t0)), (1, 0));
        assert_eq!(pool.take(t0, ok), Some(a));
        // Guards as for release: double, odd, foreign.
        pool.release_now(b);
        pool.release_now(b);
        pool.release_now(b + 1);
        pool.release_now(30000);
        assert_eq!(pool.in_use(), 1);
        pool.release(a, t0);
        pool.release_now(a);
        assert_eq!(
            (pool.in_use(), pool.quarantined(t0)),
            (0, 1),
            "quarantine kept"
        );
    }

    #[test]
    fn reuse_is_as_late_as_possible() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(20000, 20009, Duration::ZERO);
        let first = pool.take(t0, ok).unwrap();
        pool.release(first, t0);
        // Every other pair goes before the one just released.
        let next: Vec<u16> = (0..5).map(|_| pool.take(t0, ok).unwrap()).collect();
        assert_eq!(next, [20002, 20004, 20006, 20008, 20000]);
    }

    #[test]
    fn bind_failure_skips_the_pair() {
        let now = Instant::now();
        let mut pool = PortPool::new(20000, 20009, Q);
        assert_eq!(pool.take(now, |p| p != 20000 && p != 20002), Some(20004));
        assert_eq!(pool.in_use(), 1);
        // The refused pairs stay free and come back later.
        let rest: HashSet<u16> = (0..4).map(|_| pool.take(now, ok).unwrap()).collect();
        assert_eq!(rest, HashSet::from([20000, 20002, 20006, 20008]));
    }

    #[test]
    fn gives_up_after_64_refusals_or_a_lap() {
        let now = Instant::now();
        let mut pool = PortPool::new(20000, 29999, Q);
        let mut tries = 0;
        assert_eq!(
            pool.take(now, |_| {
                tries += 1;
                false
            }),
            None
        );
        assert_eq!(tries, 64);
        let mut pool = PortPool::new(20000, 20009, Q);
        let mut tries = 0;
        assert_eq!(
            pool.take(now, |_| {
                tries += 1;
                false
            }),
            None
        );
        assert_eq!(tries, 5);
        assert_eq!(pool.in_use(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take { refuse: bool },
        Release(usize),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<bool>().prop_map(|r| Op::Take { refuse: r }),
            any::<usize>().prop_map(Op::Release),
            (0u64..3000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn never_hands_out_a_pair_twice(ops in proptest::collection::vec(op(), 1..300)) {
            let q = Duration::from_secs(1);
            let t0 = Instant::now();
            let mut now = t0;
            let mut pool = PortPool::new(40001, 40022, q);
            let mut held: Vec<u16> = Vec::new();
            let mut released_at: std::collections::HashMap<u16, Instant> = Default::default();
            for op in ops {
                match op {
                    Op::Take { refuse } => {
                        let mut calls = 0;
                        let got = pool.take(now, |_| { calls += 1; !(refuse && calls == 1) });
                        if let Some(p) = got {
                            prop_assert!(p % 2 == 0 && (40002..=40020).contains(&p));
                            prop_assert!(!held.contains(&p), "{p} handed out twice");
                            if let Some(&at) = released_at.get(&p) {
                                prop_assert!(now >= at + q, "{p} reused in quarantine");
                            }
                            held.push(p);
                        } else {
                            // None only when nothing is free (or the one free pair refused).
                            let quarantined = pool.quarantined(now);
                            prop_assert!(held.len() + quarantined >= pool.capacity() - usize::from(refuse));
                        }
                    }
                    Op::Release(i) if !held.is_empty() => {
                        let p = held.swap_remove(i % held.len());
                        pool.release(p, now);
                        released_at.insert(p, now);
                    }
                    Op::Release(_) => {}
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                }
                prop_assert_eq!(pool.in_use(), held.len());
                prop_assert!(pool.in_use() + pool.quarantined(now) <= pool.capacity());
            }
        }
    }
}
