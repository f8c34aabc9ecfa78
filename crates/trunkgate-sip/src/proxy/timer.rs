//! Deadlines: a hierarchical timing wheel (6 levels of 64 slots, 1 ms to 64^6 ms ≈ 2.2
//! years). A timer is never cancelled, it is checked against its transaction's state when it
//! fires (stale ones are no-ops); arming and firing are O(1), and `Proxy::compact_timers`
//! drops stale entries when they dominate.
//!
//! Why not the binary heap this replaces: at 4,000 calls/s the heap held every timer armed in
//! the last 32–180 s (Timer B/F/D/J wait 32 s, Timer C 180 s, nearly all stale), and each pop
//! walked ~20 levels of it: 8 % of the core's samples in `benches/core_calls` went to
//! `BinaryHeap::pop`/`sift_up`.
//!
//! Order is the heap's: timers fire in `(deadline, arming order)`; [`TimerHeap::next_deadline`]
//! is never later than the earliest timer (it may be earlier: the start of a coarse slot
//! whose timers are then moved to finer slots, and the next call says more).

use super::state::Sub;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Timer G: retransmit the final response upstream.
    ServerRetransmit(u64),
    /// Timer H: no ACK for our final response.
    ServerTimeout(u64),
    /// Timers I, J, L: forget the server transaction.
    ServerExpire(u64),
    /// Timers A, E: retransmit the request downstream.
    ClientRetransmit(u64, Sub),
    /// Timers B, F: no final response downstream.
    ClientTimeout(u64, Sub),
    /// Timers D, K, M: forget the client transaction.
    ClientExpire(u64, Sub),
    /// `sip.dialog_timeout` after a confirmed dialog's last in-dialog request.
    DialogExpire(u64),
    /// 200 ms after an INVITE arrived: send 100 Trying if nothing was sent upstream yet.
    Trying(u64),
    /// Timer C: a proxied INVITE got no final response in time.
    TimerC(u64),
    /// 64*T1 after we sent CANCEL: an INVITE still without a final response is given up
    /// (RFC 3261 §9.1), so no transaction outlives a peer that never answers.
    CancelGuard(u64),
    /// `route.try_timeout` after a branch was sent: no provisional yet → next candidate.
    TryTimeout(u64),
    /// `route.setup_timeout` after a request arrived: no new candidates after this.
    SetupTimeout(u64),
    /// A probe's own timeout (`probe.timeout`, shorter than Timer F).
    ProbeTimeout(u64),
    /// A trunk's registration: refresh, or retry after a failure (`register.rs`).
    Register(crate::routing::TrunkId),
}

/// One armed timer: its deadline, its arming number (ties fire in arming order), what it is.
type Entry = (Instant, u64, Timer);

/// Slots per level, as a bit count.
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const LEVELS: usize = 6;
/// Ticks (ms) the wheel spans from its current tick: beyond, timers wait in `far`.
const SPAN_BITS: u32 = BITS * LEVELS as u32;

#[derive(Debug)]
struct Level {
    slots: Vec<Vec<Entry>>,
    /// Bit `i`: slot `i` holds entries.
    occupied: u64,
}

impl Level {
    fn new() -> Level {
        Level {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct TimerHeap {
    /// Tick 0 (set by the first timer armed); a tick is 1 ms.
    origin: Option<Instant>,
    /// Every slot of ticks below this has been emptied into `ready`.
    elapsed: u64,
    levels: Vec<Level>,
    /// Due or nearly due (ticks below `elapsed`), sorted with the earliest last.
    ready: Vec<Entry>,
    /// Beyond the wheel's span (a deadline years away): a heap, practically always empty.
    far: BinaryHeap<Reverse<Entry>>,
    len: usize,
    seq: u64,
}

impl Default for TimerHeap {
    fn default() -> TimerHeap {
        TimerHeap {
            origin: None,
            elapsed: 0,
            levels: (0..LEVELS).map(|_| Level::new()).collect(),
            ready: Vec::new(),
            far: BinaryHeap::new(),
            len: 0,
            seq: 0,
        }
    }
}

fn level_of(tick: u64, elapsed: u64) -> usize {
    let differ = tick ^ elapsed;
    if differ == 0 {
        0
    } else {
        ((63 - differ.leading_zeros()) / BITS) as usize
    }
}

fn slot_of(tick: u64, level: usize) -> usize {
    ((tick >> (BITS * level as u32)) & (SLOTS as u64 - 1)) as usize
}

impl TimerHeap {
    pub fn arm(&mut self, when: Instant, timer: Timer) {
        self.seq = self.seq.wrapping_add(1);
        self.len += 1;
        self.place((when, self.seq, timer));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the wheel has allocated for entries.
    pub fn allocated_bytes(&self) -> usize {
        let slots: usize = self
            .levels
            .iter()
            .flat_map(|l| l.slots.iter())
            .map(|s| s.capacity())
            .sum();
        (slots + self.ready.capacity() + self.far.capacity()) * std::mem::size_of::<Entry>()
            + LEVELS * SLOTS * std::mem::size_of::<Vec<Entry>>()
    }

    /// Drop every timer for which `live` says it would do nothing when it fires. O(n); the
    /// caller runs it only when stale entries dominate (see `Proxy::compact_timers`).
    pub fn retain(&mut self, mut live: impl FnMut(&Timer) -> bool) {
        let mut len = 0;
        for level in &mut self.levels {
            for (i, slot) in level.slots.iter_mut().enumerate() {
                slot.retain(|(_, _, timer)| live(timer));
                if slot.is_empty() {
                    level.occupied &= !(1 << i);
                }
                slot.shrink_to(slot.len() * 2);
                len += slot.len();
            }
        }
        self.ready.retain(|(_, _, timer)| live(timer));
        self.far.retain(|Reverse((_, _, timer))| live(timer));
        self.len = len + self.ready.len() + self.far.len();
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let far = self.far.peek().map(|Reverse((when, _, _))| *when);
        if let Some((when, _, _)) = self.ready.last() {
            return Some(far.map_or(*when, |f| f.min(*when)));
        }
        let wheel = self.next_slot().map(|(level, slot, start)| {
            if level == 0 {
                // One millisecond's timers: the exact earliest.
                self.levels[0].slots[slot]
                    .iter()
                    .map(|(when, _, _)| *when)
                    .min()
                    .unwrap_or_else(|| self.instant(start))
            } else {
                // Not later than any timer in the slot (they start at its first tick).
                self.instant(start)
            }
        });
        [wheel, far].into_iter().flatten().min()
    }

    /// Pop one timer due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if !self.far.is_empty() {
            self.pull_far();
        }
        let target = self.tick(now);
        loop {
            if let Some(&(when, _, timer)) = self.ready.last() {
                if when > now {
                    return None;
                }
                self.ready.pop();
                self.len -= 1;
                return Some(timer);
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= target => self.open(level, slot, start),
                _ => break,
            }
        }
        // Only a deadline years away can be due with the wheel empty up to now.
        match self.far.peek() {
            Some(Reverse((when, _, _))) if *when <= now => {
                self.len -= 1;
                self.far.pop().map(|Reverse((_, _, timer))| timer)
            }
            _ => None,
        }
    }

    fn tick(&self, when: Instant) -> u64 {
        self.origin.map_or(0, |o| {
            u64::try_from(when.saturating_duration_since(o).as_millis()).unwrap_or(u64::MAX)
        })
    }

    fn instant(&self, tick: u64) -> Instant {
        let origin = self.origin.unwrap_or_else(Instant::now);
        origin
            .checked_add(Duration::from_millis(tick))
            .unwrap_or(origin)
    }

    fn place(&mut self, entry: Entry) {
        let origin = *self.origin.get_or_insert(entry.0);
        let tick = u64::try_from(entry.0.saturating_duration_since(origin).as_millis())
            .unwrap_or(u64::MAX);
        if tick < self.elapsed {
            // Its millisecond is already open: in order among the ready ones.
            let key = (entry.0, entry.1);
            let at = self.ready.partition_point(|e| (e.0, e.1) > key);
            self.ready.insert(at, entry);
            return;
        }
        if (tick ^ self.elapsed) >> SPAN_BITS != 0 {
            self.far.push(Reverse(entry));
            return;
        }
        let level = level_of(tick, self.elapsed);
        let slot = slot_of(tick, level);
        let l = &mut self.levels[level];
        l.slots[slot].push(entry);
        l.occupied |= 1 << slot;
    }

    /// The slot to open next: (level, slot, its first tick). The one starting first; on a
    /// tie the higher level (the wheel has just entered that coarse slot, whose timers may
    /// come before anything at the finer levels).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let current = slot_of(self.elapsed, level);
            let ahead = l.occupied & (u64::MAX << current);
            // Nothing lies behind the current slot of a level (placement is relative to
            // `elapsed`); wrapped bits would be a bug: take them as the next turn.
            let (slot, turn) = if ahead != 0 {
                (ahead.trailing_zeros() as usize, 0)
            } else {
                (l.occupied.trailing_zeros() as usize, 1)
            };
            let shift = BITS * level as u32;
            let block = 1u64 << (shift + BITS);
            let base = (self.elapsed & !(block - 1)).saturating_add(turn * block);
            let start = (base | ((slot as u64) << shift)).max(self.elapsed);
            if best.is_none_or(|(_, _, s)| start <= s) {
                best = Some((level, slot, start));
            }
        }
        best
    }

    /// Timers armed beyond the wheel's span go into it once they fit.
    fn pull_far(&mut self) {
        while let Some(Reverse((when, _, _))) = self.far.peek() {
            if (self.tick(*when) ^ self.elapsed) >> SPAN_BITS != 0 {
                return;
            }
            if let Some(Reverse(entry)) = self.far.pop() {
                self.place(entry);
            }
        }
    }

    /// Move the wheel to `start` and empty `slot` of `level`: level 0 into `ready`, higher
    /// levels into finer slots.
    fn open(&mut self, level: usize, slot: usize, start: u64) {
        let l = &mut self.levels[level];
        let entries = std::mem::take(&mut l.slots[slot]);
        l.occupied &= !(1 << slot);
        self.elapsed = start;
        if level == 0 {
            self.elapsed = start + 1;
            let mut entries = entries;
            entries.sort_unstable_by_key(|e| Reverse((e.0, e.1)));
            if self.ready.is_empty() {
                self.ready = entries;
            } else {
                for e in entries {
                    let key = (e.0, e.1);
                    let at = self.ready.partition_point(|r| (r.0, r.1) > key);
                    self.ready.insert(at, e);
                }
            }
            return;
        }
        // The slot's allocation goes with it: kept, every slot would hold the capacity of its
        // fullest turn (measured: 2.4× the live entries' bytes at 12,000 calls/s).
        for e in entries {
            self.place(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The heap the wheel replaced: the reference for order.
    #[derive(Default)]
    struct Heap {
        heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
        seq: u64,
    }

    impl Heap {
        fn arm(&mut self, when: Instant, timer: Timer) {
            self.seq += 1;
            self.heap.push(Reverse((when, self.seq, timer)));
        }
        fn pop_due(&mut self, now: Instant) -> Option<Timer> {
            match self.heap.peek() {
                Some(Reverse((when, _, _))) if *when <= now => {
                    self.heap.pop().map(|Reverse((_, _, t))| t)
                }
                _ => None,
            }
        }
        fn next(&self) -> Option<Instant> {
            self.heap.peek().map(|Reverse((w, _, _))| *w)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Arm a timer this many µs after the clock (log-spread: µs to days).
        Arm(u64),
        /// Advance the clock by this many µs, firing what is due.
        Advance(u64),
        /// Advance to the wheel's next deadline (as the shell and SimNet do).
        Next,
        /// Keep only timers with an even id.
        Retain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..51).prop_flat_map(|b| 0u64..(1u64 << b)).prop_map(Op::Arm),
            2 => (0u32..47).prop_flat_map(|b| 0u64..(1u64 << b)).prop_map(Op::Advance),
            2 => Just(Op::Next),
            1 => Just(Op::Retain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Fires exactly what the heap fires, in the heap's order; its deadline is never
        /// later than the heap's, and stepping by it reaches the heap's.
        #[test]
        fn fires_like_the_heap(ops in proptest::collection::vec(op(), 1..300)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut wheel = TimerHeap::default();
            let mut heap = Heap::default();
            let mut id = 0u64;
            let fire = |wheel: &mut TimerHeap, heap: &mut Heap, now: Instant| -> Result<(), TestCaseError> {
                loop {
                    let (a, b) = (wheel.pop_due(now), heap.pop_due(now));
                    prop_assert_eq!(a, b);
                    if a.is_none() {
                        return Ok(());
                    }
                }
            };
            for op in ops {
                match op {
                    Op::Arm(us) => {
                        id += 1;
                        let when = now + Duration::from_micros(us);
                        wheel.arm(when, Timer::Trying(id));
                        heap.arm(when, Timer::Trying(id));
                    }
                    Op::Advance(us) => {
                        now += Duration::from_micros(us);
                        fire(&mut wheel, &mut heap, now)?;
                    }
                    Op::Next => {
                        let mut steps = 0;
                        loop {
                            let want = heap.next();
                            let got = wheel.next_deadline();
                            prop_assert_eq!(got.is_some(), want.is_some());
                            let (Some(got), Some(want)) = (got, want) else { break };
                            prop_assert!(got <= want, "deadline {got:?} after the heap's {want:?}");
                            // A coarse slot start (possibly already past): firing what is
                            // due there opens it and refines the deadline.
                            now = now.max(got);
                            fire(&mut wheel, &mut heap, now)?;
                            if got == want {
                                break;
                            }
                            steps += 1;
                            prop_assert!(steps <= LEVELS + 1, "no progress toward {want:?}");
                        }
                    }
                    Op::Retain => {
                        let keep = |t: &Timer| matches!(t, Timer::Trying(i) if i % 2 == 0);
                        wheel.retain(keep);
                        heap.heap.retain(|Reverse((_, _, t))| keep(t));
                    }
                }
                prop_assert_eq!(wheel.len(), heap.heap.len());
            }
            now += Duration::from_micros(1 << 52);
            fire(&mut wheel, &mut heap, now)?;
            prop_assert_eq!(wheel.len(), 0);
            prop_assert_eq!(wheel.next_deadline(), None);
        }
    }

    #[test]
    fn timers_armed_in_the_past_fire_at_once_in_order() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut wheel = TimerHeap::default();
        wheel.arm(t0, Timer::Trying(1));
        wheel.arm(t0 - Duration::from_secs(5), Timer::Trying(2));
        wheel.arm(t0 - Duration::from_secs(1), Timer::Trying(3));
        assert_eq!(wheel.next_deadline(), Some(t0 - Duration::from_secs(5)));
        assert_eq!(wheel.pop_due(t0), Some(Timer::Trying(2)));
        assert_eq!(wheel.pop_due(t0), Some(Timer::Trying(3)));
        assert_eq!(wheel.pop_due(t0), Some(Timer::Trying(1)));
        assert_eq!(wheel.pop_due(t0), None);
    }
}
