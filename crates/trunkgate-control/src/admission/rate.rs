//! Call-rate limits per trunk and per account (`max_cps` with `cps_burst`) and the REGISTER
//! rate of all sources together (`[register]`). The REGISTER bucket is a governor direct
//! limiter; the call-rate buckets are [`CallBucket`]s: the same GCRA (a token bucket
//! refilled at the rate, holding the burst) on governor's clock, but a call that was never
//! placed can give its token back (a trunk's token when the trunk's account refuses).

use super::flood::{Direct, quota};
use governor::RateLimiter;
use governor::clock::{Clock, Reference};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use trunkgate_config::Register;

/// One call-rate bucket: holds `burst` calls and gains one every `1 / rate` seconds, as
/// GCRA: `tat` is the theoretical arrival time of the next call in nanoseconds since the
/// bucket was made; the bucket is full when `tat <= now` and a call fits while
/// `max(tat, now) + interval <= now + burst × interval`. Lock-free (one compare-exchange).
pub(crate) struct CallBucket<C: Clock> {
    clock: C,
    start: C::Instant,
    /// Nanoseconds per call: 1 s / rate.
    interval: u64,
    /// `burst × interval`.
    capacity: u64,
    tat: AtomicU64,
}

impl<C: Clock> CallBucket<C> {
    /// `rate` calls per second, `burst` in the bucket (both at least 1); full at start.
    pub fn new(rate: u32, burst: u32, clock: C) -> Self {
        let interval = 1_000_000_000 / u64::from(rate.max(1));
        CallBucket {
            start: clock.now(),
            clock,
            interval,
            capacity: interval.saturating_mul(u64::from(burst.max(1))),
            tat: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Take one call; `false` (nothing taken) when the bucket is empty.
    #[inline]
    pub fn try_take(&self) -> bool {
        let now = self.now();
        let limit = now.saturating_add(self.capacity);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            if next > limit {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Give back a call taken by [`CallBucket::try_take`] that was never placed. Never
    /// fills the bucket past `burst` (a bucket that refilled meanwhile stays full).
    #[inline]
    pub fn give_back(&self) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(self.interval))
            });
    }
}

/// One bucket and the `(max_cps, cps_burst)` it was built for.
pub(crate) type Bucket<C> = (Arc<CallBucket<C>>, (u32, u32));

/// One optional call-rate bucket per trunk (or account), by id. Buckets are shared (`Arc`)
/// so a reload hands those of unchanged ids to the new snapshot: their tokens carry over.
pub(crate) struct CallRates<C: Clock> {
    buckets: Vec<Option<Bucket<C>>>,
}

impl<C: Clock + Clone> CallRates<C> {
    /// `limits[i]`: id `i`'s `(max_cps, cps_burst)`, or `None` for no limit; `old`'s
    /// bucket is reused for every id whose limit is unchanged (a reload keeps its tokens).
    pub fn keeping(
        limits: impl IntoIterator<Item = Option<(u32, u32)>>,
        clock: &C,
        old: Option<&CallRates<C>>,
    ) -> Self {
        CallRates {
            buckets: limits
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    l.map(|limit| {
                        let kept = old
                            .and_then(|o| o.buckets.get(i))
                            .and_then(Option::as_ref)
                            .filter(|(_, was)| *was == limit)
                            .map(|(b, _)| b.clone());
                        let bucket = kept.unwrap_or_else(|| {
                            Arc::new(CallBucket::new(limit.0, limit.1, clock.clone()))
                        });
                        (bucket, limit)
                    })
                })
                .collect(),
        }
    }

    /// Take one call from id `i`'s bucket; `true` without a limit (or for an id this
    /// policy does not have).
    #[inline]
    pub fn try_take(&self, i: usize) -> bool {
        match self.buckets.get(i) {
            Some(Some((bucket, _))) => bucket.try_take(),
            _ => true,
        }
    }

    /// Give back a call taken from id `i`'s bucket that was never placed.
    #[inline]
    pub fn give_back(&self, i: usize) {
        if let Some(Some((bucket, _))) = self.buckets.get(i) {
            bucket.give_back();
        }
    }
}

/// The REGISTER bucket and the `Retry-After` window of a refusal.
pub(crate) struct RegisterRate<C: Clock> {
    limiter: Direct<C>,
    retry_min: u32,
    retry_max: u32,
}

impl<C: Clock + Clone> RegisterRate<C> {
    pub fn new(register: &Register, clock: &C) -> Self {
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1);
        let retry_min = secs(register.retry_after_min);
        RegisterRate {
            limiter: RateLimiter::direct_with_clock(
                quota(register.max_rate, register.burst),
                clock.clone(),
            ),
            retry_min,
            retry_max: secs(register.retry_after_max).max(retry_min),
        }
    }

    /// `None`: pass. `Some(secs)`: over the rate; answer `503` with `Retry-After: secs`,
    /// drawn uniformly from the window so refused phones do not return in lock-step.
    #[inline]
    pub fn try_take(&self) -> Option<u32> {
        match self.limiter.check() {
            Ok(()) => None,
            Err(_) => Some(rand::rng().random_range(self.retry_min..=self.retry_max)),
        }
    }
}
