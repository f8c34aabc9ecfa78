//! One process-wide clock: CLOCK_MONOTONIC in nanoseconds (vDSO, no system call).
//!
//! Send timestamps written into packets, receive timestamps, pacing deadlines and the
//! timerfd deadlines all come from this clock, so differences are meaningful across threads.

use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts_to_ns(&ts),
        Err(_) => 0,
    }
}

fn ts_to_ns(ts: &TimeSpec) -> u64 {
    let s = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let n = u64::try_from(ts.tv_nsec()).unwrap_or(0);
    s.saturating_mul(1_000_000_000).saturating_add(n)
}

/// A CLOCK_MONOTONIC absolute time as a `TimeSpec` (for `TFD_TIMER_ABSTIME`).
pub fn ns_to_ts(ns: u64) -> TimeSpec {
    TimeSpec::from_duration(std::time::Duration::from_nanos(ns))
}

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;
