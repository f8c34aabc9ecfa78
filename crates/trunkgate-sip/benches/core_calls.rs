//! The SIP core driven in process, no sockets: whole calls (INVITE, 180, 200, ACK, BYE,
//! 200 — six messages into the core, six out) from a PBX through the proxy to a trunk, with
//! a simulated clock that advances 250 µs per call (4,000 calls/s) so timers fire and
//! finished transactions expire as they would in production (steady state, not a growing
//! table). Only the time spent inside the core (`handle_input`, `handle_timeout`,
//! `poll_transmit`, `poll_event`) is measured; building the peers' messages is not. The
//! peers are in `support/mod.rs` (shared with the memory bench, `core_memory.rs`).
//!
//! `cargo bench -p trunkgate-sip --bench core_calls`: calls per second per core, and the
//! same with the calls sharded by Call-ID over 2 threads, one `Proxy` each (the design in
//! docs/design/sip.md, "Past one core").

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use support::{Bench, STEP};

/// Warm a core to steady state (32 s of simulated calls: Timer J/K tables full).
fn warmed() -> (Bench, u64) {
    let mut b = Bench::new(false);
    let warm = (Duration::from_secs(34).as_micros() / STEP.as_micros()) as u64;
    for n in 0..warm {
        b.call(n);
    }
    (b, warm)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("call_one_core", |bencher| {
        let (mut b, mut n) = warmed();
        bencher.iter_custom(|iters| {
            b.core = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                b.call(n);
            }
            b.core
        });
    });
    // Sharded by Call-ID: each thread owns a core of its own (no shared state on the call
    // path). Wall time of whole calls, the peers' message building included, for 1 and 2
    // shards: the ratio is what a second core gives when SIPp does not take it.
    for shards in [1u64, 2] {
        let mut benches: Vec<(Bench, u64)> = (0..shards).map(|_| warmed()).collect();
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
                started.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(core_calls, benches);
criterion_main!(core_calls);
