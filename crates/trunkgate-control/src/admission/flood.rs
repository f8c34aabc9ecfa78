//! Per-source flood protection (`[flood]`): a governor keyed limiter per source key, bans
//! for sources over it, and a shared overflow bucket for sources beyond `max_sources`.
//!
//! A source key is an IPv4 address or an IPv6 prefix (`flood.ipv6_prefix`, default /64: one
//! customer's subnet, which an attacker owns whole). Memory is bounded twice: the limiter
//! holds at most about `max_sources` keys (see [`CountingStore`]) and the ban map at most
//! `max_sources` entries; `maintain` drops idle keys and expired bans and gives the memory
//! back.

use super::store::CountingStore;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use trunkgate_config::Flood;

/// What the flood limiter is keyed by: an IPv4 address, or an IPv6 address masked to
/// `flood.ipv6_prefix` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4(u32),
    V6(u128),
}

impl SourceKey {
    /// The key of `ip` (already canonical: IPv4-mapped IPv6 is IPv4).
    #[inline]
    pub fn of(ip: IpAddr, v6_mask: u128) -> SourceKey {
        match ip {
            IpAddr::V4(a) => SourceKey::V4(a.to_bits()),
            IpAddr::V6(a) => SourceKey::V6(a.to_bits() & v6_mask),
        }
    }

    /// The network this key stands for, for log lines.
    pub fn net(self, v6_prefix: u8) -> IpNet {
        match self {
            SourceKey::V4(a) => IpNet::from(IpAddr::V4(Ipv4Addr::from_bits(a))),
            SourceKey::V6(a) => IpNet::new(IpAddr::V6(Ipv6Addr::from_bits(a)), v6_prefix)
                .unwrap_or_else(|_| IpNet::from(IpAddr::V6(Ipv6Addr::from_bits(a)))),
        }
    }
}

/// The mask of an IPv6 prefix length (0..=128).
fn v6_mask(prefix: u8) -> u128 {
    match u32::from(prefix.min(128)) {
        0 => 0,
        p => u128::MAX << (128 - p),
    }
}

/// A network as integers of its family, for an allocation-free containment test.
#[derive(Debug, Clone, Copy)]
enum Net {
    V4 { mask: u32, net: u32 },
    V6 { mask: u128, net: u128 },
}

impl Net {
    fn of(n: &IpNet) -> Net {
        match n.trunc() {
            IpNet::V4(n) => Net::V4 {
                mask: n.netmask().to_bits(),
                net: n.network().to_bits(),
            },
            IpNet::V6(n) => Net::V6 {
                mask: n.netmask().to_bits(),
                net: n.network().to_bits(),
            },
        }
    }

    #[inline]
    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Net::V4 { mask, net }, IpAddr::V4(a)) => a.to_bits() & mask == net,
            (Net::V6 { mask, net }, IpAddr::V6(a)) => a.to_bits() & mask == net,
            _ => false,
        }
    }
}

type Keyed<C> =
    RateLimiter<SourceKey, CountingStore<SourceKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;
pub(crate) type Direct<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A quota of `per_second` cells per second with a bucket of `burst` (both at least 1).
pub(crate) fn quota(per_second: u32, burst: u32) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(one))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
}

/// The flood verdict for one datagram from a non-exempt source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloodVerdict {
    Within,
    /// Banned, just banned, or refused by the shared overflow bucket.
    Drop,
}

pub(crate) struct FloodGuard<C: Clock> {
    clock: C,
    exempt: Vec<Net>,
    v6_mask: u128,
    v6_prefix: u8,
    rate: u32,
    burst: u32,
    ban: Nanos,
    ban_for: Duration,
    max_bans: usize,
    limiter: Keyed<C>,
    store: CountingStore<SourceKey>,
    /// Judges every source not tracked because the store is full: `rate`×10, `burst`×10.
    overflow: Direct<C>,
    bans: Mutex<HashMap<SourceKey, C::Instant>>,
    /// `bans.len()`, readable without the lock: no bans (the usual case) costs one load.
    ban_count: AtomicUsize,
}

impl<C: Clock + Clone> FloodGuard<C> {
    pub fn new(flood: &Flood, clock: C) -> Self {
        let max_sources = usize::try_from(flood.max_sources).unwrap_or(usize::MAX);
        let store = CountingStore::new(max_sources);
        let q = quota(flood.rate, flood.burst);
        FloodGuard {
            exempt: flood.exempt.iter().map(Net::of).collect(),
            v6_mask: v6_mask(flood.ipv6_prefix),
            v6_prefix: flood.ipv6_prefix,
            rate: flood.rate,
            burst: flood.burst,
            ban: Nanos::from(flood.ban),
            ban_for: flood.ban,
            max_bans: max_sources,
            limiter: RateLimiter::new(q, store.handle(), clock.clone()),
            store,
            overflow: RateLimiter::direct_with_clock(
                quota(
                    flood.rate.saturating_mul(10),
                    flood.burst.saturating_mul(10),
                ),
                clock.clone(),
            ),
            clock,
            bans: Mutex::new(HashMap::new()),
            ban_count: AtomicUsize::new(0),
        }
    }

    /// Is `ip` (canonical) in `flood.exempt`?
    #[inline]
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(ip))
    }

    fn bans(&self) -> MutexGuard<'_, HashMap<SourceKey, C::Instant>> {
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        self.bans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Account one datagram from `ip` (canonical, not exempt).
    #[inline]
    pub fn check(&self, ip: IpAddr) -> FloodVerdict {
        let key = SourceKey::of(ip, self.v6_mask);
        if self.ban_count.load(Ordering::Relaxed) > 0 {
            let now = self.clock.now();
            if self.bans().get(&key).is_some_and(|until| *until > now) {
                return FloodVerdict::Drop;
            }
        }
        if self.store.is_full() && !self.store.contains(&key) {
            // Not tracked: one shared bucket judges them all, and nobody is banned by it.
            return match self.overflow.check() {
                Ok(()) => FloodVerdict::Within,
                Err(_) => FloodVerdict::Drop,
            };
        }
        if self.limiter.check_key(&key).is_ok() {
            return FloodVerdict::Within;
        }
        self.ban_source(key, ip);
        FloodVerdict::Drop
    }

    #[cold]
    fn ban_source(&self, key: SourceKey, ip: IpAddr) {
        let now = self.clock.now();
        let until = now + self.ban;
        let newly = {
            let mut bans = self.bans();
            // Full: the limiter keeps dropping this source's excess; it just is not banned.
            let room = bans.len() < self.max_bans || bans.contains_key(&key);
            // A ban that expired but was not swept yet counts as new.
            let newly = room && bans.insert(key, until).is_none_or(|old| old <= now);
            self.ban_count.store(bans.len(), Ordering::Relaxed);
            newly
        };
        if newly {
            tracing::warn!(
                %ip,
                source = %key.net(self.v6_prefix),
                rate = self.rate,
                burst = self.burst,
                ban = ?self.ban_for,
                "source banned"
            );
        }
    }

    /// Drop idle limiter keys and expired bans, and give their memory back.
    pub fn maintain(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = self.clock.now();
        let mut expired = Vec::new();
        {
            let mut bans = self.bans();
            bans.retain(|key, until| {
                let keep = *until > now;
                if !keep {
                    expired.push(*key);
                }
                keep
            });
            if bans.capacity() > 4 * bans.len().max(16) {
                bans.shrink_to_fit();
            }
            self.ban_count.store(bans.len(), Ordering::Relaxed);
        }
        for key in expired {
            tracing::info!(source = %key.net(self.v6_prefix), "source unbanned");
        }
    }

    pub fn banned(&self) -> usize {
        self.ban_count.load(Ordering::Relaxed)
    }

    pub fn tracked(&self) -> usize {
        self.store.keys()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v6_masks() {
        assert_eq!(v6_mask(0), 0);
        assert_eq!(v6_mask(128), u128::MAX);
        assert_eq!(v6_mask(64), (u128::from(u64::MAX)) << 64);
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let key = SourceKey::of(a, v6_mask(64));
        assert_eq!(key.net(64).to_string(), "2001:db8:1:2::/64");
        let v4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(
            SourceKey::of(v4, v6_mask(64)).net(64).to_string(),
            "192.0.2.7/32"
        );
    }
}
