//! The SIP core driven in process, no sockets: whole calls (INVITE, 180, 200, ACK, BYE,
//! 200 — six messages into the core, six out) from a PBX through the proxy to a trunk, with
//! a simulated clock that advances 250 µs per call (4,000 calls/s) so timers fire and
//! finished transactions expire as they would in production (steady state, not a growing
//! table). Only the time spent inside the core (`handle_input`, `handle_timeout`,
//! `poll_transmit`, `poll_event`) is measured; building the peers' messages is not. The
//! peers are in `support/mod.rs` (shared with the memory bench, `core_memory.rs`).
//!
//! `cargo bench -p trunkgate-sip --bench core_calls`: calls per second per core, the same
//! over a trunk with topology hiding (`call_one_core_hiding`), and the same with the calls
//! sharded by Call-ID over 2 threads, one `Proxy` each (the design in docs/design/sip.md,
//! "Past one core"). A call that does not complete fails the bench (a panic naming it), as
//! does a bench function that runs past its time budget.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use support::{Bench, STEP};

/// Warm a core to steady state (32 s of simulated calls: Timer J/K tables full). `hide`:
/// the trunk has `topology_hiding` on.
fn warmed(hide: bool) -> (Bench, u64) {
    let mut b = Bench::new(hide);
    let warm = (Duration::from_secs(34).as_micros() / STEP.as_micros()) as u64;
    for n in 0..warm {
        b.call(n);
    }
    check(&b, "warm-up");
    (b, warm)
}

/// Fail loudly rather than measure something else: every call completed (each message
/// arrived where it should, hidden when the trunk hides).
fn check(b: &Bench, what: &str) {
    assert_eq!(b.broken, 0, "{what}: {} calls did not complete", b.broken);
}

/// Wall time one bench function may take, warm-up and criterion's sampling included. The
/// peers' message building is not in the measured time, so criterion can ask for more
/// calls than the measurement time suggests; past this the bench stops with a panic
/// instead of running on.
const BUDGET: Duration = Duration::from_secs(120);

/// Whole calls on one core, core time only; `hide`: over a trunk with topology hiding.
fn one_core(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    hide: bool,
) {
    let started = Instant::now();
    let (mut b, mut n) = warmed(hide);
    group.bench_function(name, |bencher| {
        bencher.iter_custom(|iters| {
            assert!(
                started.elapsed() < BUDGET,
                "{name}: over its {BUDGET:?} budget ({iters} calls asked)"
            );
            b.core = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                b.call(n);
            }
            check(&b, name);
            b.core
        });
    });
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    one_core(&mut group, "call_one_core", false);
    // The same calls over a trunk with topology hiding (Via, Record-Route, Contact,
    // Call-ID, identity hosts and product strings rewritten toward it and mapped back).
    one_core(&mut group, "call_one_core_hiding", true);
    // Sharded by Call-ID: each thread owns a core of its own (no shared state on the call
    // path). Wall time of whole calls, the peers' message building included, for 1 and 2
    // shards: the ratio is what a second core gives when SIPp does not take it.
    for shards in [1u64, 2] {
        let mut benches: Vec<(Bench, u64)> = (0..shards).map(|_| warmed(false)).collect();
        group.bench_function(format!("call_wall_{shards}_shards"), |bencher| {
            bencher.iter_custom(|iters| {
                let per = iters.div_ceil(shards);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for (b, n) in benches.iter_mut() {
                        scope.spawn(move || {
                            for _ in 0..per {
                                *n += 1;
                                b.call(*n);
                            }
                        });
                    }
                });
                for (b, _) in &benches {
                    check(b, "sharded");
                }
                started.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(core_calls, benches);
criterion_main!(core_calls);
