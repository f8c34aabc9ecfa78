//! Deadlines. One binary heap of `(when, seq, Timer)`; a timer is never cancelled, it is
//! checked against the transaction's state when it fires (stale ones are no-ops), which keeps
//! arming O(log n) and cancelling free.

use super::state::Sub;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

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

#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl TimerHeap {
    pub fn arm(&mut self, when: Instant, timer: Timer) {
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Reverse((when, self.seq, timer)));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Bytes the heap has allocated.
    pub fn allocated_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Reverse<(Instant, u64, Timer)>>()
    }

    /// Drop every timer for which `live` says it would do nothing when it fires. O(n); the
    /// caller runs it only when stale entries dominate (see `Proxy::compact_timers`).
    pub fn retain(&mut self, mut live: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse((_, _, timer))| live(timer));
        self.heap.shrink_to(self.heap.len() * 2);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Pop one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => {
                self.heap.pop().map(|Reverse((_, _, timer))| timer)
            }
            _ => None,
        }
    }
}
