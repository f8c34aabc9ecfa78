//! Call-rate limits per trunk (`max_cps` with `cps_burst`) and the REGISTER rate of all
//! sources together (`[register]`), each a governor direct limiter (GCRA: a token bucket
//! refilled at the rate, holding the burst).

use super::flood::{Direct, quota};
use governor::RateLimiter;
use governor::clock::Clock;
use rand::Rng;
use std::sync::Arc;
use trunkgate_config::Register;

/// One trunk's bucket and the `(max_cps, cps_burst)` it was built for.
pub(crate) type Bucket<C> = (Arc<Direct<C>>, (u32, u32));

/// One optional call-rate bucket per trunk, by trunk index. Buckets are shared (`Arc`) so a
/// reload hands those of unchanged trunks to the new snapshot: their tokens carry over.
pub(crate) struct CallRates<C: Clock> {
    trunks: Vec<Option<Bucket<C>>>,
}

impl<C: Clock + Clone> CallRates<C> {
    /// `limits[i]`: trunk `i`'s `(max_cps, cps_burst)`, or `None` for no limit; `old`'s
    /// bucket is reused for every trunk whose limit is unchanged.
    pub fn keeping(
        limits: impl IntoIterator<Item = Option<(u32, u32)>>,
        clock: &C,
        old: Option<&CallRates<C>>,
    ) -> Self {
        CallRates {
            trunks: limits
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    l.map(|limit| {
                        let kept = old
                            .and_then(|o| o.trunks.get(i))
                            .and_then(Option::as_ref)
                            .filter(|(_, was)| *was == limit)
                            .map(|(b, _)| b.clone());
                        let bucket = kept.unwrap_or_else(|| {
                            Arc::new(RateLimiter::direct_with_clock(
                                quota(limit.0, limit.1),
                                clock.clone(),
                            ))
                        });
                        (bucket, limit)
                    })
                })
                .collect(),
        }
    }

    /// Take one call from trunk `trunk`'s bucket; `true` without a limit (or for an index
    /// this policy does not have).
    #[inline]
    pub fn try_take(&self, trunk: usize) -> bool {
        match self.trunks.get(trunk) {
            Some(Some((limiter, _))) => limiter.check().is_ok(),
            _ => true,
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
