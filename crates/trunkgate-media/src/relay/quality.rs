//! Call quality on the relay threads: one-way audio and "no media after answer", and the
//! E-model ([`crate::quality`]) per leg, in intervals and at call end.
//!
//! Runs at the relay thread's sweep (at most every second) and when a call is deleted, never
//! per packet: the packet path only keeps what it kept before (the stream statistics, which
//! now also count loss bursts) plus the payload type and, once per RTCP report, a round trip.
//! Results reach the control side through single-writer atomics in `LegShared` (`/calls`)
//! and per-trunk counters written with `fetch_add` (several relay threads share a trunk).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::metrics::Histogram;
use super::shared::LegShared;
use crate::quality::{self, Codec, Impairments};
use crate::stats::ReceiveStats;

/// Upper bounds of the estimated-MOS histogram.
pub const MOS_BUCKETS: [f64; 11] = [1.0, 2.0, 2.5, 3.0, 3.25, 3.5, 3.75, 4.0, 4.2, 4.3, 4.4];
/// An interval with fewer expected RTP packets (≈ 0.5 s at 50 packets/s) gets no estimate.
const MIN_PACKETS: u64 = 25;
/// A side counts as sending when its newest RTP packet is younger than this (capped at half
/// of `one_way_after`).
const RECENT: Duration = Duration::from_secs(1);

/// `media.one_way_after`, `media.quality_interval`, `media.assumed_delay`.
#[derive(Debug, Clone, Copy)]
pub struct QualityConfig {
    /// Media from one side only (or from neither) this long after the answer (or after the
    /// end of a hold, or the newest SDP): the call is flagged.
    pub one_way_after: Duration,
    /// Length of the intervals the MOS is estimated over while the call is up.
    pub interval: Duration,
    /// One-way network delay assumed end to end when no RTCP round trip is known.
    pub assumed_delay: Duration,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            one_way_after: Duration::from_secs(5),
            interval: Duration::from_secs(10),
            assumed_delay: Duration::from_millis(40),
        }
    }
}

/// Which direction of a call's audio is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The PBX's audio does not arrive (side A silent, side B sending).
    PbxToTrunk,
    /// The trunk's audio does not arrive (side B silent, side A sending).
    TrunkToPbx,
    /// Neither side sends ("no media").
    Both,
}

impl Missing {
    pub const ALL: [Missing; 3] = [Missing::PbxToTrunk, Missing::TrunkToPbx, Missing::Both];

    /// The `direction` label of `trunkgate_media_one_way_total` and `/calls`.
    pub fn label(self) -> &'static str {
        match self {
            Missing::PbxToTrunk => "pbx_to_trunk",
            Missing::TrunkToPbx => "trunk_to_pbx",
            Missing::Both => "both",
        }
    }

    /// `one_way` (one direction missing) or `no_media` (both).
    pub fn reason(self) -> &'static str {
        match self {
            Missing::Both => "no_media",
            _ => "one_way",
        }
    }

    fn index(self) -> usize {
        match self {
            Missing::PbxToTrunk => 0,
            Missing::TrunkToPbx => 1,
            Missing::Both => 2,
        }
    }

    /// Packed into `LegShared::missing`: code in the top byte, silent-since nanos below.
    pub(crate) fn pack(self, since: u64) -> u64 {
        ((self.index() as u64 + 1) << 56) | (since & ((1 << 56) - 1))
    }

    pub(crate) fn unpack(v: u64) -> Option<(Missing, u64)> {
        let kind = match v >> 56 {
            1 => Missing::PbxToTrunk,
            2 => Missing::TrunkToPbx,
            3 => Missing::Both,
            _ => return None,
        };
        Some((kind, v & ((1 << 56) - 1)))
    }
}

/// Per trunk slot: the MOS histogram (per-bucket counts) and one-way counts.
#[derive(Debug, Default)]
pub(crate) struct SlotQuality {
    mos_buckets: [AtomicU64; MOS_BUCKETS.len()],
    mos_over: AtomicU64,
    mos_sum_milli: AtomicU64,
    one_way: [AtomicU64; 3],
    /// Anchored calls answered: the denominator of the one-way rate.
    pub answered: AtomicU64,
}

impl SlotQuality {
    fn observe(&self, mos: f64) {
        match MOS_BUCKETS.iter().position(|&le| mos <= le) {
            Some(i) => self.mos_buckets[i].fetch_add(1, Relaxed),
            None => self.mos_over.fetch_add(1, Relaxed),
        };
        self.mos_sum_milli
            .fetch_add((mos * 1000.0).round() as u64, Relaxed);
    }

    /// The histogram as the metrics snapshot wants it (cumulative).
    pub fn mos(&self) -> Histogram {
        let mut h = Histogram::new(&MOS_BUCKETS);
        let mut below = 0;
        for ((_, n), b) in h.buckets.iter_mut().zip(&self.mos_buckets) {
            below += b.load(Relaxed);
            *n = below;
        }
        h.count = below + self.mos_over.load(Relaxed);
        h.sum = self.mos_sum_milli.load(Relaxed) as f64 / 1000.0;
        h
    }

    /// Calls flagged, by [`Missing`] (`Missing::ALL` order).
    pub fn one_way(&self) -> [u64; 3] {
        self.one_way.each_ref().map(|c| c.load(Relaxed))
    }
}

/// Every trunk slot's quality counters (index = metrics slot).
pub(crate) type QualityCounters = Arc<[SlotQuality]>;

/// Relay-thread state of one leg's quality: the payload type, the open interval, the call
/// so far, and RTCP round trips.
#[derive(Debug, Clone, Default)]
pub(crate) struct LegQuality {
    /// Newest audio payload type from this side's peer (comfort noise excluded).
    pub pt: u8,
    /// Start of the open interval (relay nanos) and the stream figures then.
    t0: u64,
    expected0: u64,
    lost0: u64,
    events0: u64,
    /// Jitter of each finished interval, for the call's mean.
    jitter_sum: f64,
    jitter_n: u32,
    /// Newest SR from this side's peer: (NTP middle 32 bits, when it passed).
    pub sr: Option<(u32, u64)>,
    /// Round trip relay → this side's peer → relay, from its report on the other side's SR.
    pub rtt: Option<u64>,
}

/// A packet from `pt` on the packet path: remember the codec (comfort noise, 13, and the
/// dynamic types that carry DTMF events do not change it).
#[inline]
pub(crate) fn note_payload_type(q: &mut LegQuality, pt: u8) {
    if pt != 13 && pt < 96 {
        q.pt = pt;
    }
}

/// An RTCP report block from this leg's peer echoing `lsr` after `dlsr` (1/65536 s): if it
/// answers the other leg's newest SR, the round trip of this leg's path.
pub(crate) fn note_report(
    q: &mut LegQuality,
    shared: &LegShared,
    other_sr: Option<(u32, u64)>,
    lsr: u32,
    dlsr: u32,
    now: u64,
) {
    let Some((mid, at)) = other_sr else { return };
    if lsr == 0 || lsr != mid {
        return;
    }
    let held = u64::from(dlsr) * 1_000_000_000 / 65_536;
    let rtt = now.saturating_sub(at).saturating_sub(held);
    q.rtt = Some(rtt);
    shared.rtt_micros.store(rtt / 1000 + 1, Relaxed);
}

/// One leg as the quality tick sees it.
pub(crate) struct LegView<'a> {
    pub stats: &'a ReceiveStats,
    pub q: &'a mut LegQuality,
    pub shared: &'a LegShared,
}

fn delay_of(cfg: &QualityConfig, rtt: [Option<u64>; 2]) -> f64 {
    let half_assumed = cfg.assumed_delay.as_secs_f64() / 2.0;
    rtt.iter()
        .map(|r| r.map_or(half_assumed, |ns| ns as f64 / 2e9))
        .sum()
}

fn store_mos(v: &AtomicU64, mos: f64) {
    v.store((mos * 1000.0).round() as u64, Relaxed);
}

/// The estimate over `expected`/`lost`/`events` at `jitter`, `None` below [`MIN_PACKETS`].
fn estimate(
    pt: u8,
    expected: u64,
    lost: u64,
    events: u64,
    jitter: f64,
    delay: f64,
) -> Option<quality::Estimate> {
    if expected < MIN_PACKETS {
        return None;
    }
    let loss_ratio = lost.min(expected) as f64 / expected as f64;
    Some(quality::estimate(&Impairments {
        codec: Codec::from_payload_type(pt),
        loss_ratio,
        burst_ratio: quality::burst_ratio(lost, events, loss_ratio),
        jitter,
        delay,
    }))
}

/// Close the open interval of both legs of a stream at `now`: estimate each direction,
/// observe it in `slot` (unless the stream is on hold), refresh the call-so-far figure, and
/// open the next interval. At call end (`last`) a partial interval counts as well.
pub(crate) fn close_intervals(
    cfg: &QualityConfig,
    legs: [LegView<'_>; 2],
    held: bool,
    slot: Option<&SlotQuality>,
    now: u64,
) -> [Option<f64>; 2] {
    let delay = delay_of(cfg, [legs[0].q.rtt, legs[1].q.rtt]);
    legs.map(|l| {
        let (s, q) = (l.stats, l.q);
        let (expected, lost, events) = (s.expected(), s.lost(), s.loss_events());
        let jitter = s.jitter_seconds();
        let interval = estimate(
            q.pt,
            expected.saturating_sub(q.expected0),
            lost.saturating_sub(q.lost0),
            events.saturating_sub(q.events0),
            jitter,
            delay,
        );
        if let (Some(e), false) = (interval, held) {
            store_mos(&l.shared.mos_milli, e.mos);
            if let Some(slot) = slot {
                slot.observe(e.mos);
            }
            q.jitter_sum += jitter;
            q.jitter_n += 1;
        }
        let mean_jitter = if q.jitter_n > 0 {
            q.jitter_sum / f64::from(q.jitter_n)
        } else {
            jitter
        };
        let call = estimate(q.pt, expected, lost, events, mean_jitter, delay);
        if let Some(e) = call {
            store_mos(&l.shared.mos_call_milli, e.mos);
        }
        q.t0 = now;
        q.expected0 = expected;
        q.lost0 = lost;
        q.events0 = events;
        call.map(|e| e.mos)
    })
}

/// Is the open interval due?
pub(crate) fn interval_due(cfg: &QualityConfig, q: &LegQuality, now: u64) -> bool {
    if q.t0 == 0 {
        return false;
    }
    now.saturating_sub(q.t0) >= nanos(cfg.interval)
}

/// Start the first interval when the stream's first packet is seen (not at stream creation:
/// a call that rings for 20 s would otherwise make a short first interval look empty).
pub(crate) fn start_if_new(q: &mut LegQuality, s: &ReceiveStats, now: u64) {
    if q.t0 == 0 && s.expected() > 0 {
        q.t0 = now;
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Session-level one-way state on the relay thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionQuality {
    /// SIP Call-ID, for the log lines.
    pub call_id: Option<Arc<str>>,
    /// When the call was answered (relay nanos); no one-way check before.
    pub answered: Option<u64>,
    /// The one-way clock starts here: answer, end of a hold, newest SDP.
    pub watch_from: u64,
    /// The current flag.
    pub flagged: Option<Missing>,
    /// Already counted in `trunkgate_media_one_way_total` for this call, by [`Missing`].
    counted: [bool; 3],
}

/// Is the missing side of `m` sending again?
fn resumed(m: Missing, sending: [bool; 2]) -> bool {
    match m {
        Missing::PbxToTrunk => sending[0],
        Missing::TrunkToPbx => sending[1],
        Missing::Both => sending[0] || sending[1],
    }
}

/// What changed at a one-way check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneWayChange {
    None,
    /// Newly flagged; `silent` = how long the missing direction has been silent.
    Flagged {
        missing: Missing,
        silent: Duration,
    },
    Cleared(Missing),
}

/// The one-way check of a session at `now`, from its first active RTP stream's two legs'
/// newest arrivals (`None`: never). `held`: any active stream is on hold; `last_update`: the
/// newest SDP. Counts a new flag in `slot` (once per call and kind) and writes it to both
/// legs' `missing`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_one_way(
    cfg: &QualityConfig,
    sq: &mut SessionQuality,
    newest: [Option<u64>; 2],
    shared: [&LegShared; 2],
    held: bool,
    last_update: u64,
    slot: Option<&SlotQuality>,
    now: u64,
) -> OneWayChange {
    let Some(answered) = sq.answered else {
        return OneWayChange::None;
    };
    if held {
        sq.watch_from = now;
    }
    sq.watch_from = sq.watch_from.max(answered).max(last_update);
    let after = nanos(cfg.one_way_after);
    let recent = nanos(RECENT.min(cfg.one_way_after / 2));
    let since = newest.map(|t| t.unwrap_or(0).max(sq.watch_from));
    let silent = since.map(|t| now.saturating_sub(t) >= after);
    let sending = newest.map(|t| t.is_some_and(|t| now.saturating_sub(t) < recent));
    let verdict = if held {
        None
    } else {
        match (silent, sending) {
            ([true, true], _) => Some(Some(Missing::Both)),
            ([true, false], [_, true]) => Some(Some(Missing::PbxToTrunk)),
            ([false, true], [true, _]) => Some(Some(Missing::TrunkToPbx)),
            ([false, false], _) => Some(None),
            // One side silent, the other neither silent nor sending now: undecided.
            _ => Option::None,
        }
    };
    let next = match verdict {
        // Only media from the missing side clears a flag: a new SDP (a session refresh)
        // restarts the clock for new flags but proves nothing about the audio.
        Some(None) => match sq.flagged {
            Some(m) if !resumed(m, sending) => sq.flagged,
            _ => None,
        },
        Some(v) => v,
        None if held => None,
        None => sq.flagged,
    };
    if next == sq.flagged {
        return OneWayChange::None;
    }
    let previous = sq.flagged;
    sq.flagged = next;
    match next {
        None => {
            for s in shared {
                s.missing.store(0, Relaxed);
            }
            previous.map_or(OneWayChange::None, OneWayChange::Cleared)
        }
        Some(m) => {
            let silent_since = match m {
                Missing::PbxToTrunk => since[0],
                Missing::TrunkToPbx => since[1],
                Missing::Both => since[0].max(since[1]),
            };
            for s in shared {
                s.missing.store(m.pack(silent_since), Relaxed);
            }
            if !sq.counted[m.index()] {
                sq.counted[m.index()] = true;
                if let Some(slot) = slot {
                    slot.one_way[m.index()].fetch_add(1, Relaxed);
                }
            }
            OneWayChange::Flagged {
                missing: m,
                silent: Duration::from_nanos(now.saturating_sub(silent_since)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
