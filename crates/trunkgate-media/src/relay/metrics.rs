//! Per-trunk media metrics, read by the binary's Prometheus collector at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{Control, CtlStream, WALK_CHUNK};

/// Upper bounds of the jitter histogram, in seconds.
pub const JITTER_BUCKETS: [f64; 9] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
/// Upper bounds of the loss-ratio histogram (lost / expected).
pub const LOSS_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];

/// A Prometheus-style histogram: observations counted into fixed upper bounds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// `(le, cumulative count of observations <= le)`, ascending; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub(crate) fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            buckets: bounds.iter().map(|&b| (b, 0)).collect(),
            sum: 0.0,
            count: 0,
        }
    }
    pub(crate) fn observe(&mut self, v: f64) {
        for (le, n) in &mut self.buckets {
            if v <= *le {
                *n += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Counters of one trunk slot, monotonic across scrapes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrunkMedia {
    /// `None` for slot 0 (calls that touch no trunk), else the trunk's name.
    pub trunk: Option<String>,
    /// Datagrams (RTP + RTCP) relayed, by side of origin: `[from A (PBX), from B (trunk)]`.
    pub packets: [u64; 2],
    /// Bytes relayed (UDP payload), by side of origin.
    pub bytes: [u64; 2],
    /// RTP packets lost (sequence gaps) before reaching the relay, by side of origin.
    pub lost: [u64; 2],
    /// Datagrams dropped: spoofed/late source, no destination known, failed send.
    pub dropped: u64,
    /// Sessions reported dead ([`crate::Event::Timeout`], counted once per session).
    pub timeouts: u64,
    /// Interarrival jitter per stream direction, observed at delete (seconds).
    pub jitter: Histogram,
    /// Loss ratio per stream direction, observed at delete.
    pub loss_ratio: Histogram,
    /// Estimated MOS per stream direction and quality interval ([`super::MOS_BUCKETS`]).
    pub mos: Histogram,
    /// Calls flagged one-way / without media, by [`super::Missing::ALL`] order.
    pub one_way: [u64; 3],
    /// Anchored calls answered ([`crate::Relay::answered`]).
    pub answered: u64,
}

/// One scrape's worth of media metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MediaMetricsSnapshot {
    /// Slot 0 (no trunk) first, then each named trunk slot in slot order.
    pub trunks: Vec<TrunkMedia>,
    /// Live anchored sessions (calls).
    pub sessions: u64,
    /// Live streams (m= lines with sockets).
    pub streams: u64,
    /// Port pairs (RTP + RTCP) bound by live streams (two per stream).
    pub port_pairs_in_use: u64,
    /// Port pairs released and not yet reusable.
    pub port_pairs_quarantined: u64,
    /// Port pairs in the configured range.
    pub port_pairs_capacity: u64,
}

/// Shared media metrics. Call [`MediaMetrics::snapshot`] at scrape time: it returns, per trunk
/// slot, the totals folded in by deleted calls plus the live figures of the current ones,
/// summed [`WALK_CHUNK`] sessions per hold of the relay's control lock (never touched per
/// packet), so the SIP thread waits for one chunk at most.
///
/// Counters (monotonic; clamped so a scrape never goes below the previous one):
/// `packets[side]`, `bytes[side]`, `lost[side]` (side of origin: 0 = A/PBX, 1 = B/trunk),
/// `dropped`, `timeouts`. Histograms (observed once per stream direction at delete):
/// `jitter` (s, [`JITTER_BUCKETS`]), `loss_ratio` ([`LOSS_BUCKETS`]). Gauges: `sessions`,
/// `streams`, `port_pairs_in_use`, `port_pairs_quarantined`, `port_pairs_capacity`.
pub struct MediaMetrics {
    pub(crate) control: Arc<Mutex<Control>>,
    /// One scrape walks the sessions at a time (there is one [`Walk`] slot).
    pub(crate) scrape: Mutex<()>,
    /// Written by relay threads when they emit the first timeout of a session.
    pub(crate) timeouts: Arc<[AtomicU64]>,
    /// Written by relay threads at quality ticks.
    pub(crate) quality: super::quality::QualityCounters,
    pub(crate) trunk_names: super::TrunkNames,
    /// The forwarding path in use, and the kernel's per-outcome counters when it is.
    pub(crate) fastpath: crate::fastpath::FastPathMode,
    pub(crate) kernel: Option<Arc<crate::fastpath::KernelPath>>,
}

impl MediaMetrics {
    /// `trunkgate_media_fastpath{mode}`: the path latched RTP takes.
    pub fn fastpath(&self) -> crate::fastpath::FastPathMode {
        self.fastpath
    }

    /// Datagrams that matched a kernel entry, by outcome (`forwarded`, or why the kernel
    /// left them to userspace): `None` in userspace mode.
    pub fn kernel_outcomes(&self) -> Option<Vec<(&'static str, u64)>> {
        let k = self.kernel.as_ref()?;
        Some(
            crate::fastpath::OUTCOMES
                .iter()
                .copied()
                .zip(k.outcomes())
                .collect(),
        )
    }
}

impl std::fmt::Debug for MediaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMetrics")
            .field("trunks", &*super::read_names(&self.trunk_names))
            .finish()
    }
}

/// The counters of one trunk slot, by side of origin.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub lost: [u64; 2],
    pub dropped: u64,
}

impl Counts {
    /// Add what stream `st` relayed so far (its legs' figures now).
    pub fn add(&mut self, st: &CtlStream) {
        for side in 0..2 {
            let rx = &st.legs[side].shared;
            // relayed from `side` = sent to the other side's peer
            let tx = &st.legs[1 - side].shared;
            self.packets[side] += tx.tx_packets.load(Relaxed);
            self.bytes[side] += tx.tx_bytes.load(Relaxed);
            self.lost[side] += rx.lost.load(Relaxed);
            self.dropped += rx.dropped.load(Relaxed);
        }
    }

    fn add_counts(&mut self, o: &Counts) {
        for side in 0..2 {
            self.packets[side] += o.packets[side];
            self.bytes[side] += o.bytes[side];
            self.lost[side] += o.lost[side];
        }
        self.dropped += o.dropped;
    }

    /// Never below the previous scrape's figure (`last`), which becomes this one's.
    fn clamp(&mut self, last: &mut Counts) {
        let [p0, p1] = &mut self.packets;
        let [b0, b1] = &mut self.bytes;
        let [l0, l1] = &mut self.lost;
        let [q0, q1] = &mut last.packets;
        let [c0, c1] = &mut last.bytes;
        let [m0, m1] = &mut last.lost;
        let pairs = [
            (p0, q0),
            (p1, q1),
            (b0, c0),
            (b1, c1),
            (l0, m0),
            (l1, m1),
            (&mut self.dropped, &mut last.dropped),
        ];
        for (v, l) in pairs {
            *v = (*v).max(*l);
            *l = *v;
        }
    }
}

/// Totals folded in at delete, per trunk slot (kept inside the control state).
#[derive(Debug, Clone)]
pub(crate) struct Folded {
    pub counts: Counts,
    pub jitter: Histogram,
    pub loss_ratio: Histogram,
}

impl Folded {
    pub fn new() -> Folded {
        Folded {
            counts: Counts::default(),
            jitter: Histogram::new(&JITTER_BUCKETS),
            loss_ratio: Histogram::new(&LOSS_BUCKETS),
        }
    }
}

/// A scrape in progress, on the scraping thread (its [`Walk`] is in the control state).
pub(super) struct Scrape {
    /// The folded totals when the walk began.
    folded: Vec<Folded>,
    /// Per trunk slot: the visited sessions' figures.
    live: Vec<Counts>,
    /// The next chunk starts at this id.
    from: u64,
    /// Set by the step that ended the walk: sessions and streams, the pool gauges, the
    /// clamped counts.
    end: Option<([usize; 2], [usize; 3], Vec<Counts>)>,
}

/// A scrape's walk over the sessions, in id order, a chunk per hold of the control lock.
/// The scrape took the folded totals when it began; a session deleted meanwhile is folded
/// into them after that, so it must be counted by the walk exactly once: by its visit when
/// the walk had passed it (its figures then), else here at its final figures.
#[derive(Debug)]
pub(crate) struct Walk {
    /// Sessions with ids from this on are not visited yet.
    pub next: u64,
    /// Per trunk slot: final figures of sessions deleted before the walk reached them.
    pub late: Vec<Counts>,
}

impl MediaMetrics {
    /// Trunk names by slot − 1 (slot 0 has no name; `""`: no trunk has that id now).
    pub fn trunk_names(&self) -> Vec<String> {
        super::read_names(&self.trunk_names).clone()
    }

    /// Read every figure (see the type's documentation).
    pub fn snapshot(&self) -> MediaMetricsSnapshot {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let mut scrape = self.begin();
        while !self.step(&mut scrape) {
            // Let a waiting SIP thread take the lock between chunks: std's mutex lets the
            // releasing thread take it straight back, so without this the walk could hold
            // the SIP thread through many chunks.
            std::thread::yield_now();
        }
        self.finish(scrape)
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        match self.control.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Take the folded totals and start the walk (one short hold).
    pub(super) fn begin(&self) -> Scrape {
        let mut ctl = self.control();
        let slots = ctl.folded.len();
        ctl.walk = Some(Walk {
            next: 0,
            late: vec![Counts::default(); slots],
        });
        Scrape {
            folded: ctl.folded.clone(),
            live: vec![Counts::default(); slots],
            from: 0,
            end: None,
        }
    }

    /// Sum the next chunk of sessions under one hold; the hold that reaches the end also
    /// ends the walk (adds the late sessions, clamps, reads the gauges). `true`: done.
    pub(super) fn step(&self, sc: &mut Scrape) -> bool {
        let mut ctl = self.control();
        let slots = sc.live.len();
        let mut last = None;
        let mut visited = 0;
        for (&id, s) in ctl.sessions.range(sc.from..).take(WALK_CHUNK) {
            let t = &mut sc.live[s.slot.min(slots - 1)];
            for st in s.streams.iter().flatten() {
                t.add(st);
            }
            last = Some(id);
            visited += 1;
        }
        if let Some(next) = last.and_then(|id| id.checked_add(1))
            && visited == WALK_CHUNK
        {
            sc.from = next;
            if let Some(w) = ctl.walk.as_mut() {
                w.next = next;
            }
            return false;
        }
        let late = ctl.walk.take().map(|w| w.late).unwrap_or_default();
        for (t, l) in sc.live.iter_mut().zip(&late) {
            t.add_counts(l);
        }
        // Monotonic clamp: RTP loss can shrink when a late packet fills a gap; a call moved
        // to another trunk during the walk, or created behind it, shows at the next scrape.
        let mut counts: Vec<Counts> = sc.folded.iter().map(|f| f.counts).collect();
        for (c, l) in counts.iter_mut().zip(&sc.live) {
            c.add_counts(l);
        }
        let prev = &mut ctl.last_scrape;
        if prev.len() < counts.len() {
            prev.resize(counts.len(), Counts::default());
        }
        for (c, p) in counts.iter_mut().zip(prev.iter_mut()) {
            c.clamp(p);
        }
        let now = Instant::now();
        let pool = [
            ctl.pool.in_use(),
            ctl.pool.quarantined(now),
            ctl.pool.capacity(),
        ];
        sc.end = Some(([ctl.sessions.len(), ctl.streams], pool, counts));
        true
    }

    /// Build the snapshot (without the lock).
    pub(super) fn finish(&self, sc: Scrape) -> MediaMetricsSnapshot {
        let names = self.trunk_names();
        let ([sessions, streams], pool, mut counts) = sc.end.unwrap_or_default();
        counts.resize(sc.folded.len(), Counts::default());
        let folded = sc.folded;
        let mut trunks: Vec<TrunkMedia> = folded
            .into_iter()
            .zip(counts.iter_mut())
            .enumerate()
            .map(|(i, (f, c))| TrunkMedia {
                trunk: if i == 0 {
                    None
                } else {
                    names.get(i - 1).filter(|n| !n.is_empty()).cloned()
                },
                packets: c.packets,
                bytes: c.bytes,
                lost: c.lost,
                dropped: c.dropped,
                timeouts: self.timeouts.get(i).map_or(0, |t| t.load(Relaxed)),
                jitter: f.jitter,
                loss_ratio: f.loss_ratio,
                mos: self.quality.get(i).map_or_else(
                    || Histogram::new(&super::MOS_BUCKETS),
                    super::quality::SlotQuality::mos,
                ),
                one_way: self.quality.get(i).map_or([0; 3], |q| q.one_way()),
                answered: self.quality.get(i).map_or(0, |q| q.answered.load(Relaxed)),
            })
            .collect();
        // Slots no trunk has now (room for reloads, drained trunks) are not exported.
        let mut slot = 0;
        trunks.retain(|t| {
            let keep = slot == 0 || t.trunk.is_some();
            slot += 1;
            keep
        });
        MediaMetricsSnapshot {
            trunks,
            sessions: sessions as u64,
            streams: streams as u64,
            port_pairs_in_use: pool[0] as u64,
            port_pairs_quarantined: pool[1] as u64,
            port_pairs_capacity: pool[2] as u64,
        }
    }
}
