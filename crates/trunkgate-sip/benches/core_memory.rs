//! Heap bytes the SIP core holds per established dialog and per finished transaction, and
//! its whole heap after a sustained call rate. A counting global allocator (this binary
//! only) reports the bytes live; the core runs with the peers of `core_calls` and the same
//! simulated clock. Only the core's own allocations are live at each reading (the peers'
//! messages are dropped before), so the figures are the core's.
//!
//! `cargo bench -p trunkgate-sip --bench core_memory` (about 20 s; prints a table).
//!
//! - per dialog: N and 2N calls set up (INVITE, 180, 200, ACK, no BYE), then 40 s of
//!   simulated time so every transaction has expired; the difference of the two readings
//!   over N (fixed costs cancel; the hash tables are equally full at N and 2N).
//! - per finished transaction: N and 2N whole calls (BYE included) within a few tens of
//!   ms of simulated time, then 1 s so the retransmission timers are gone: what is left are the transactions waiting
//!   out Timers J/K/L (32 s, 5 s, 32 s). Reported with and without the timer heap.
//! - steady state: 12,000 calls/s of 1 s calls for 15 s of simulated time (the target:
//!   ≤ 200 MB of process memory): the core's live heap at the end and its peak.

// A global allocator is an `unsafe impl` by nature; it only counts and defers to `System`.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;
use support::Bench;
use trunkgate_sip::proxy::Footprint;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn add(delta: isize) {
    let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 {
        PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Fail loudly: a bench whose calls broke measures something else.
fn check(b: &Bench, what: &str) {
    assert_eq!(b.broken, 0, "{what}: {} calls did not complete", b.broken);
}

/// Live bytes after `n` calls set up and 40 s later (transactions gone).
fn dialogs(n: u64) -> (isize, Footprint) {
    let mut b = Bench::new(false);
    let before = live();
    for i in 0..n {
        b.answer(i);
        b.tick();
    }
    for _ in 0..40 {
        b.advance(Duration::from_secs(1));
    }
    check(&b, "dialogs");
    assert_eq!(b.proxy.active_dialogs() as u64, n);
    (live() - before, b.proxy.footprint())
}

/// Live bytes after `n` whole calls and 1 s (transactions waiting for Timers J/K/L).
fn finished(n: u64) -> (isize, Footprint) {
    let mut b = Bench::new(false);
    let before = live();
    for i in 0..n {
        // All within a few tens of ms of simulated time: none reaches Timer K (5 s).
        if b.answer(i) {
            b.hang_up(i);
        }
        b.advance(Duration::from_micros(1));
    }
    b.advance(Duration::from_secs(1));
    check(&b, "finished");
    assert_eq!(b.proxy.active_dialogs(), 0);
    (live() - before, b.proxy.footprint())
}

/// 12,000 calls/s of 1 s calls for `seconds`: (live bytes at the end, peak, footprint).
fn steady(seconds: u64) -> (isize, usize, Footprint) {
    const RATE: u64 = 12_000;
    let step = Duration::from_secs(1) / RATE as u32;
    let mut b = Bench::new(false);
    let before = live();
    PEAK.store(0, Ordering::Relaxed);
    let base = before.max(0) as usize;
    let mut up = std::collections::VecDeque::new();
    for i in 0..RATE * seconds {
        if b.answer(i) {
            up.push_back(i);
        }
        // Calls last 1 s: hang up the one set up RATE calls ago.
        if up.len() as u64 > RATE {
            if let Some(old) = up.pop_front() {
                b.hang_up(old);
            }
        }
        b.advance(step);
    }
    check(&b, "steady");
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (live() - before, peak, b.proxy.footprint())
}

fn per(a: isize, b: isize, n: usize) -> f64 {
    (b - a) as f64 / n.max(1) as f64
}

fn main() {
    // `cargo bench` passes `--bench`; other flags (a filter) are not used here.
    const N: u64 = 20_000;
    let (d1, f1) = dialogs(N);
    let (d2, f2) = dialogs(2 * N);
    println!(
        "established dialog: {:.0} bytes each ({} timer entries per dialog, {:.0} bytes of them)",
        per(d1, d2, (f2.dialogs - f1.dialogs).max(1)),
        (f2.timers - f1.timers) as f64 / N as f64,
        per(f1.timer_bytes as isize, f2.timer_bytes as isize, N as usize),
    );
    let (t1, g1) = finished(N);
    let (t2, g2) = finished(2 * N);
    let tx = |f: &Footprint| f.servers + f.finished_servers + f.clients + f.finished_clients;
    let servers = |f: &Footprint| f.servers + f.finished_servers;
    let clients = |f: &Footprint| f.clients + f.finished_clients;
    let n_tx = tx(&g2) - tx(&g1);
    let timer_delta = g2.timer_bytes as isize - g1.timer_bytes as isize;
    println!(
        "finished transaction: {:.0} bytes each without the timer heap, {:.0} with it \
         ({:.2} transactions per call: {:.2} server, {:.2} client; {:.1} timer entries per call)",
        per(t1, t2 - timer_delta, n_tx),
        per(t1, t2, n_tx),
        n_tx as f64 / N as f64,
        (servers(&g2) - servers(&g1)) as f64 / N as f64,
        (clients(&g2) - clients(&g1)) as f64 / N as f64,
        (g2.timers - g1.timers) as f64 / N as f64,
    );
    let seconds = 15;
    let (end, peak, f) = steady(seconds);
    println!(
        "steady state, 12,000 calls/s of 1 s calls for {seconds} s: {:.1} MB live at the end, \
         {:.1} MB peak ({} dialogs, {} server + {} client transactions ({} and {} of them \
         finished), {} timer entries = {:.1} MB)",
        end as f64 / 1e6,
        peak as f64 / 1e6,
        f.dialogs,
        f.servers + f.finished_servers,
        f.clients + f.finished_clients,
        f.finished_servers,
        f.finished_clients,
        f.timers,
        f.timer_bytes as f64 / 1e6,
    );
}
