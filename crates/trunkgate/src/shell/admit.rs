//! Admission of stream connections, decided at accept before a byte is read: the peer is
//! classified by the routing table (as a datagram's source is in the core), a source in no
//! allow list or under a flood ban is closed at once, and an allowed one must fit both the
//! global connection cap (the SIP share of the descriptor budget) and its per-source cap.
//!
//! A [`Slot`] is what an admitted connection (accepted or outgoing) holds while its
//! descriptor is open; dropping it gives the place back. Refusals are logged at most once
//! per source per minute through [`RefusalLog`], whose memory is bounded.

use crate::metrics::CloseReason;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use trunkgate_sip::{Admission, Party, RejectReason, Routing, Verdict};

/// A refused source is logged again after this long at the earliest.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most sources the refusal log remembers; beyond it refusals are summed up once a minute.
pub const LOGGED_SOURCES: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The accept-time decisions and the counts they need.
pub struct Admit {
    /// Swapped whole on a policy reload.
    policy: arc_swap::ArcSwap<AdmitPolicy>,
    /// Connections holding a descriptor now (accepted and outgoing).
    open: AtomicUsize,
    max_connections: usize,
    per_source: u32,
    /// Accepted connections per allowed source (entries removed at 0: at most
    /// `max_connections` entries).
    sources: Mutex<HashMap<IpAddr, u32>>,
    log: Mutex<RefusalLog>,
}

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admit")
            .field("open", &self.open())
            .field("max_connections", &self.max_connections)
            .field("per_source", &self.per_source)
            .finish_non_exhaustive()
    }
}

/// What accept asks: who the source is, and whether it may connect.
struct AdmitPolicy {
    routing: Arc<dyn Routing>,
    admission: Arc<dyn Admission>,
}

/// A connection's place under the caps; given back on drop.
#[derive(Debug)]
pub struct Slot {
    admit: Arc<Admit>,
    /// Counted against this source's cap (accepted connections only).
    source: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admit.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.source {
            let mut sources = lock(&self.admit.sources);
            if let Some(n) = sources.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    sources.remove(&ip);
                }
            }
        }
    }
}

impl Admit {
    pub fn new(
        routing: Arc<dyn Routing>,
        admission: Arc<dyn Admission>,
        max_connections: usize,
        per_source: u32,
    ) -> Admit {
        Admit {
            policy: arc_swap::ArcSwap::from_pointee(AdmitPolicy { routing, admission }),
            open: AtomicUsize::new(0),
            max_connections,
            per_source,
            sources: Mutex::new(HashMap::new()),
            log: Mutex::new(RefusalLog::default()),
        }
    }

    /// A reloaded policy judges the next connections.
    pub fn set_policy(&self, routing: Arc<dyn Routing>, admission: Arc<dyn Admission>) {
        self.policy
            .store(Arc::new(AdmitPolicy { routing, admission }));
    }

    /// Connections holding a descriptor now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Judge a connection accepted from `peer`. The flood limiter sees it as one request of
    /// the source (exempt peers pass without touching it).
    pub fn accept(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, CloseReason> {
        let peer = peer.to_canonical();
        let policy = self.policy.load();
        let party = policy.routing.classify(peer);
        match policy.admission.datagram(peer, party) {
            Verdict::Drop(RejectReason::Flood) => return Err(CloseReason::Banned),
            Verdict::Drop(_) => return Err(CloseReason::UnknownSource),
            // Under `security.unknown_source = "reject"` a datagram gets its 403; a stream
            // from a stranger is still not worth a descriptor.
            Verdict::Pass if party == Party::Unknown => return Err(CloseReason::UnknownSource),
            Verdict::Pass => {}
        }
        self.take_global()?;
        let mut sources = lock(&self.sources);
        let n = sources.entry(peer).or_insert(0);
        if *n >= self.per_source {
            drop(sources);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(CloseReason::PerSourceCap);
        }
        *n += 1;
        Ok(Slot {
            admit: self.clone(),
            source: Some(peer),
        })
    }

    /// A place for an outgoing connection (only the global cap applies).
    pub fn outgoing(self: &Arc<Self>) -> Result<Slot, CloseReason> {
        self.take_global()?;
        Ok(Slot {
            admit: self.clone(),
            source: None,
        })
    }

    fn take_global(&self) -> Result<(), CloseReason> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(CloseReason::GlobalCap);
        }
        Ok(())
    }

    /// Log a refusal unless this source was logged less than [`LOG_EVERY`] ago.
    pub fn log_refusal(&self, peer: IpAddr, reason: CloseReason, now: Instant) {
        match lock(&self.log).judge(peer.to_canonical(), now) {
            Logged::Yes => tracing::warn!(
                source = %peer,
                reason = reason.as_str(),
                "TCP connection refused at accept (logged once per source per minute)"
            ),
            Logged::Summary(unlogged) => tracing::warn!(
                unlogged,
                reason = reason.as_str(),
                "TCP connections refused at accept from sources too many to log one by one"
            ),
            Logged::No => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Logged {
    Yes,
    No,
    /// Log a summary of this many refusals not logged by source.
    Summary(u64),
}

/// When each refused source was last logged; at most [`LOGGED_SOURCES`] of them.
#[derive(Debug)]
struct RefusalLog {
    last: HashMap<IpAddr, Instant>,
    swept: Option<Instant>,
    unlogged: u64,
    summarised: Option<Instant>,
}

impl Default for RefusalLog {
    fn default() -> RefusalLog {
        RefusalLog {
            last: HashMap::with_capacity(LOGGED_SOURCES),
            swept: None,
            unlogged: 0,
            summarised: None,
        }
    }
}

fn older(t: Option<Instant>, now: Instant, by: Duration) -> bool {
    t.is_none_or(|t| now.saturating_duration_since(t) >= by)
}

impl RefusalLog {
    fn judge(&mut self, peer: IpAddr, now: Instant) -> Logged {
        if let Some(at) = self.last.get_mut(&peer) {
            if older(Some(*at), now, LOG_EVERY) {
                *at = now;
                return Logged::Yes;
            }
            return Logged::No;
        }
        // Full: forget sources not logged for a minute (at most once a second: the sweep
        // walks the table).
        if self.last.len() >= LOGGED_SOURCES && older(self.swept, now, Duration::from_secs(1)) {
            self.swept = Some(now);
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < LOG_EVERY);
        }
        if self.last.len() < LOGGED_SOURCES {
            self.last.insert(peer, now);
            return Logged::Yes;
        }
        self.unlogged += 1;
        if older(self.summarised, now, LOG_EVERY) {
            self.summarised = Some(now);
            return Logged::Summary(std::mem::take(&mut self.unlogged));
        }
        Logged::No
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trunkgate_sip::{NoAdmission, Target};

    /// `.2` is the PBX, `.3` a trunk, everything else unknown.
    struct Table;
    impl Routing for Table {
        fn classify(&self, source: IpAddr) -> Party {
            match source {
                IpAddr::V4(a) if a.octets()[3] == 2 => Party::Pbx,
                IpAddr::V4(a) if a.octets()[3] == 3 => Party::Trunk(0),
                _ => Party::Unknown,
            }
        }
        fn candidates(
            &self,
            _: std::time::Instant,
            _: Party,
            _: Option<&[u8]>,
            _: &dyn trunkgate_sip::TrunkLoad,
            _: &mut Vec<Target>,
        ) -> trunkgate_sip::RouteChoice {
            trunkgate_sip::RouteChoice::default()
        }
    }

    /// Every source over its flood limit.
    struct Banned;
    impl Admission for Banned {
        fn datagram(&self, _: IpAddr, _: Party) -> Verdict {
            Verdict::Drop(RejectReason::Flood)
        }
        fn unknown_source(&self) -> trunkgate_sip::UnknownSource {
            trunkgate_sip::UnknownSource::Drop
        }
        fn blocked_user_agent(&self, _: Party, _: &[u8]) -> bool {
            false
        }
        fn trunk_limits(&self, _: u16) -> trunkgate_sip::TrunkLimits {
            trunkgate_sip::TrunkLimits::default()
        }
        fn try_call_rate(&self, _: u16) -> bool {
            true
        }
        fn try_register(&self, _: Party) -> Option<u32> {
            None
        }
        fn overflow_retry_after(&self) -> u32 {
            1
        }
    }

    fn admit(max: usize, per_source: u32) -> Arc<Admit> {
        Arc::new(Admit::new(
            Arc::new(Table),
            Arc::new(NoAdmission),
            max,
            per_source,
        ))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn strangers_and_banned_sources_are_refused_without_a_place() {
        let a = admit(10, 10);
        assert_eq!(a.accept(ip(9)).unwrap_err(), CloseReason::UnknownSource);
        let banned = Arc::new(Admit::new(Arc::new(Table), Arc::new(Banned), 10, 10));
        assert_eq!(banned.accept(ip(2)).unwrap_err(), CloseReason::Banned);
        assert_eq!((a.open(), banned.open()), (0, 0));
    }

    #[test]
    fn per_source_cap_and_global_cap_give_places_back() {
        let a = admit(3, 2);
        let s1 = a.accept(ip(2)).unwrap();
        let _s2 = a.accept(ip(2)).unwrap();
        assert_eq!(a.accept(ip(2)).unwrap_err(), CloseReason::PerSourceCap);
        assert_eq!(a.open(), 2);
        let _t = a.accept(ip(3)).unwrap();
        assert_eq!(a.outgoing().unwrap_err(), CloseReason::GlobalCap);
        assert_eq!(a.accept(ip(3)).unwrap_err(), CloseReason::GlobalCap);
        drop(s1);
        assert_eq!(a.open(), 2);
        let _s3 = a.accept(ip(2)).unwrap();
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn slots_forget_sources_at_zero() {
        let a = admit(10, 10);
        let s = a.accept(ip(2)).unwrap();
        drop(s);
        assert!(lock(&a.sources).is_empty());
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn refusals_are_logged_once_per_source_per_minute_in_bounded_memory() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.judge(ip(9), t0), Logged::Yes);
        assert_eq!(log.judge(ip(9), t0 + Duration::from_secs(59)), Logged::No);
        assert_eq!(log.judge(ip(9), t0 + LOG_EVERY), Logged::Yes);
        let mut summaries = 0;
        for i in 0..(LOGGED_SOURCES as u32 * 3) {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            match log.judge(source, t0 + LOG_EVERY) {
                Logged::Summary(_) => summaries += 1,
                Logged::Yes | Logged::No => {}
            }
        }
        assert_eq!(log.last.len(), LOGGED_SOURCES);
        assert_eq!(
            summaries, 1,
            "one summary line a minute past the table's size"
        );
        // A minute later the old entries are swept and new sources are logged again.
        let later = t0 + LOG_EVERY * 2 + Duration::from_secs(1);
        assert_eq!(log.judge(ip(200), later), Logged::Yes);
        assert!(log.last.len() <= LOGGED_SOURCES);
    }
}
