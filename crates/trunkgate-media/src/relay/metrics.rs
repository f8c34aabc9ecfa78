//! Per-trunk media metrics, read by the binary's Prometheus collector at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Control;

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

/// Shared media metrics. Call [`MediaMetrics::snapshot`] at scrape time: it takes the relay's
/// control lock briefly (never touched per packet) and returns, per trunk slot, the totals
/// folded in by deleted calls plus the live figures of the current ones.
///
/// Counters (monotonic; clamped so a scrape never goes below the previous one):
/// `packets[side]`, `bytes[side]`, `lost[side]` (side of origin: 0 = A/PBX, 1 = B/trunk),
/// `dropped`, `timeouts`. Histograms (observed once per stream direction at delete):
/// `jitter` (s, [`JITTER_BUCKETS`]), `loss_ratio` ([`LOSS_BUCKETS`]). Gauges: `sessions`,
/// `streams`, `port_pairs_in_use`, `port_pairs_quarantined`, `port_pairs_capacity`.
pub struct MediaMetrics {
    pub(crate) control: Arc<Mutex<Control>>,
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

/// Totals folded in at delete, per trunk slot (kept inside the control state).
#[derive(Debug, Clone)]
pub(crate) struct Folded {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub lost: [u64; 2],
    pub dropped: u64,
    pub jitter: Histogram,
    pub loss_ratio: Histogram,
}

impl Folded {
    pub fn new() -> Folded {
        Folded {
            packets: [0; 2],
            bytes: [0; 2],
            lost: [0; 2],
            dropped: 0,
            jitter: Histogram::new(&JITTER_BUCKETS),
            loss_ratio: Histogram::new(&LOSS_BUCKETS),
        }
    }
}

impl MediaMetrics {
    /// Trunk names by slot − 1 (slot 0 has no name; `""`: no trunk has that id now).
    pub fn trunk_names(&self) -> Vec<String> {
        super::read_names(&self.trunk_names).clone()
    }

    /// Read every figure (see the type's documentation).
    pub fn snapshot(&self) -> MediaMetricsSnapshot {
        let now = Instant::now();
        let mut ctl = match self.control.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let slots = ctl.folded.len();
        let names = self.trunk_names();
        let mut trunks: Vec<TrunkMedia> = (0..slots)
            .map(|i| {
                let f = &ctl.folded[i];
                TrunkMedia {
                    trunk: if i == 0 {
                        None
                    } else {
                        names.get(i - 1).filter(|n| !n.is_empty()).cloned()
                    },
                    packets: f.packets,
                    bytes: f.bytes,
                    lost: f.lost,
                    dropped: f.dropped,
                    timeouts: self.timeouts.get(i).map_or(0, |t| t.load(Relaxed)),
                    jitter: f.jitter.clone(),
                    loss_ratio: f.loss_ratio.clone(),
                    mos: self.quality.get(i).map_or_else(
                        || Histogram::new(&super::MOS_BUCKETS),
                        super::quality::SlotQuality::mos,
                    ),
                    one_way: self.quality.get(i).map_or([0; 3], |q| q.one_way()),
                    answered: self.quality.get(i).map_or(0, |q| q.answered.load(Relaxed)),
                }
            })
            .collect();
        let mut streams = 0u64;
        for s in ctl.sessions.values() {
            let t = &mut trunks[s.slot.min(slots - 1)];
            for st in s.streams.iter().flatten() {
                streams += 1;
                for side in 0..2 {
                    let rx = &st.legs[side].shared;
                    // relayed from `side` = sent to the other side's peer
                    let tx = &st.legs[1 - side].shared;
                    t.packets[side] += tx.tx_packets.load(Relaxed);
                    t.bytes[side] += tx.tx_bytes.load(Relaxed);
                    t.lost[side] += rx.lost.load(Relaxed);
                    t.dropped += rx.dropped.load(Relaxed);
                }
            }
        }
        // Monotonic clamp: RTP loss can shrink when a late packet fills a gap.
        let prev = &mut ctl.last_scrape;
        if prev.len() < trunks.len() {
            prev.resize(trunks.len(), [0; 7]);
        }
        for (t, p) in trunks.iter_mut().zip(prev.iter_mut()) {
            let [p0, p1] = &mut t.packets;
            let [b0, b1] = &mut t.bytes;
            let [l0, l1] = &mut t.lost;
            let vals = [p0, p1, b0, b1, l0, l1, &mut t.dropped];
            for (v, last) in vals.into_iter().zip(p.iter_mut()) {
                *v = (*v).max(*last);
                *last = *v;
            }
        }
        // Slots no trunk has now (room for reloads, drained trunks) are not exported.
        let mut slot = 0;
        trunks.retain(|t| {
            let keep = slot == 0 || t.trunk.is_some();
            slot += 1;
            keep
        });
        MediaMetricsSnapshot {
            trunks,
            sessions: ctl.sessions.len() as u64,
            streams,
            port_pairs_in_use: ctl.pool.in_use() as u64,
            port_pairs_quarantined: ctl.pool.quarantined(now) as u64,
            port_pairs_capacity: ctl.pool.capacity() as u64,
        }
    }
}
