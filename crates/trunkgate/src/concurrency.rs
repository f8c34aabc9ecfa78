//! Concurrency history for the status page: per trunk, per wall-clock minute (UTC) of the
//! last 24 hours, the peak and the mean number of sessions, sampled once a second from the
//! core's session gauges ([`crate::live::LivePolicy::tick`]). Keyed by trunk *name*, so a
//! hot reload that adds, removes or reorders trunks keeps each trunk's history; a trunk
//! that leaves the policy loses its history. Bounded: 1,440 minute slots per trunk of the
//! policy in force (24 bytes each, allocated on the trunk's first sample).
//!
//! [`busy_hour`] finds the 60-minute window with the most traffic (Erlang-minutes: the sum
//! of the per-minute mean sessions), the same definition the call records use; this one is
//! the in-memory view of the running process and starts empty at each start. The records
//! (`trunkgate-records`) are the durable source for planning.

use std::collections::HashMap;

/// Minutes kept per trunk.
pub const MINUTES: usize = 24 * 60;
/// Length of the busy-hour window, in minutes.
pub const BUSY_HOUR_MINUTES: u64 = 60;

/// One minute of one trunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteLoad {
    /// Minutes since the Unix epoch (UTC).
    pub minute: u64,
    /// Most sessions seen in one sample of this minute.
    pub peak: u32,
    /// Sum of the samples (session-samples; divide by `samples` for the mean).
    pub sum: u64,
    /// Samples taken in this minute (0: the slot is empty).
    pub samples: u32,
}

impl MinuteLoad {
    /// Mean sessions over the minute: its traffic in Erlangs.
    pub fn erlangs(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.sum as f64 / f64::from(self.samples)
        }
    }
}

/// The busiest 60-minute window of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusyHour {
    /// First minute of the window (minutes since the Unix epoch, UTC).
    pub start_minute: u64,
    /// Minute after the window's last minute.
    pub end_minute: u64,
    /// Mean traffic over the window, in Erlangs.
    pub erlangs: f64,
    /// Peak sessions within the window.
    pub peak: u32,
}

/// Per-trunk minute rings.
#[derive(Debug, Default)]
pub struct ConcurrencyHistory {
    trunks: HashMap<String, Vec<MinuteLoad>>,
}

impl ConcurrencyHistory {
    /// One sample of `sessions` on `trunk` during `minute`.
    pub fn record(&mut self, minute: u64, trunk: &str, sessions: u32) {
        let ring = match self.trunks.get_mut(trunk) {
            Some(ring) => ring,
            None => self
                .trunks
                .entry(trunk.to_owned())
                .or_insert_with(|| vec![MinuteLoad::default(); MINUTES]),
        };
        let Some(slot) = ring.get_mut(slot_of(minute)) else {
            return;
        };
        if slot.minute != minute || slot.samples == 0 {
            *slot = MinuteLoad {
                minute,
                ..MinuteLoad::default()
            };
        }
        slot.peak = slot.peak.max(sessions);
        slot.sum = slot.sum.saturating_add(u64::from(sessions));
        slot.samples = slot.samples.saturating_add(1);
    }

    /// Forget every trunk `keep` says no to (trunks that left the policy).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.trunks.retain(|name, _| keep(name));
    }

    /// `trunk`'s minutes in the 24 h ending with minute `now` (included), oldest first;
    /// minutes without a sample are left out. A wall clock that went back leaves the
    /// "future" minutes out too.
    pub fn series(&self, trunk: &str, now: u64) -> Vec<MinuteLoad> {
        let Some(ring) = self.trunks.get(trunk) else {
            return Vec::new();
        };
        let from = window_start(now);
        let mut out: Vec<MinuteLoad> = ring
            .iter()
            .filter(|m| m.samples > 0 && m.minute >= from && m.minute <= now)
            .copied()
            .collect();
        out.sort_unstable_by_key(|m| m.minute);
        out
    }
}

fn slot_of(minute: u64) -> usize {
    usize::try_from(minute % MINUTES as u64).unwrap_or(0)
}

/// First minute of the 24 h window that ends with minute `now`.
pub fn window_start(now: u64) -> u64 {
    now.saturating_sub(MINUTES as u64 - 1)
}

/// The 60-minute window (on minute boundaries) with the most traffic in `series` (sorted
/// by minute, as [`ConcurrencyHistory::series`] returns it; missing minutes count as no
/// traffic). Each candidate window ends with a minute of the series (so a window never
/// reaches past the newest sample: in a process up for less than an hour the busy hour is
/// the hour before the traffic's end); ties go to the earliest; `None` without traffic.
pub fn busy_hour(series: &[MinuteLoad]) -> Option<BusyHour> {
    let mut best: Option<(u64, f64)> = None;
    // Two pointers: the window is series[first..=last], minutes (end - 60, end].
    let mut first = 0;
    let mut total = 0.0;
    for last in series {
        total += last.erlangs();
        while let Some(m) = series.get(first) {
            if m.minute.saturating_add(BUSY_HOUR_MINUTES) > last.minute {
                break;
            }
            total -= m.erlangs();
            first += 1;
        }
        total = total.max(0.0);
        if total > 1e-9 && best.is_none_or(|(_, b)| total > b + 1e-9) {
            best = Some((last.minute.saturating_add(1), total));
        }
    }
    let (end_minute, total) = best?;
    let start_minute = end_minute.saturating_sub(BUSY_HOUR_MINUTES);
    let peak = series
        .iter()
        .filter(|m| m.minute >= start_minute && m.minute < end_minute)
        .map(|m| m.peak)
        .max()
        .unwrap_or(0);
    Some(BusyHour {
        start_minute,
        end_minute,
        erlangs: total / BUSY_HOUR_MINUTES as f64,
        peak,
    })
}

/// The wall clock's minute (minutes since the Unix epoch, UTC).
pub fn unix_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(m: u64, sessions: u32) -> MinuteLoad {
        MinuteLoad {
            minute: m,
            peak: sessions,
            sum: u64::from(sessions) * 60,
            samples: 60,
        }
    }

    #[test]
    fn records_peak_and_mean_per_minute_by_name() {
        let mut h = ConcurrencyHistory::default();
        for s in [2, 6, 4] {
            h.record(1000, "carrier-a", s);
        }
        h.record(1001, "carrier-a", 1);
        h.record(1001, "carrier-b", 9);
        let a = h.series("carrier-a", 1001);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].minute, a[0].peak, a[0].samples), (1000, 6, 3));
        assert!((a[0].erlangs() - 4.0).abs() < 1e-9);
        assert_eq!(h.series("carrier-b", 1001)[0].peak, 9);
        assert!(h.series("nobody", 1001).is_empty());
        h.retain(|n| n == "carrier-b");
        assert!(h.series("carrier-a", 1001).is_empty());
        assert_eq!(h.series("carrier-b", 1001).len(), 1);
    }

    #[test]
    fn keeps_exactly_24_hours_and_reuses_slots() {
        let mut h = ConcurrencyHistory::default();
        let start = 50_000;
        for m in start..start + 2 * MINUTES as u64 {
            h.record(m, "t", u32::try_from(m % 7).unwrap());
        }
        let now = start + 2 * MINUTES as u64 - 1;
        let s = h.series("t", now);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(s[0].minute, window_start(now));
        assert_eq!(s.last().unwrap().minute, now);
        // A clock that went back an hour: the newer minutes are not shown as the past.
        assert_eq!(h.series("t", now - 60).len(), MINUTES - 60);
        // A stale slot (a day old) is restarted, not added to.
        h.record(now + MINUTES as u64, "t", 3);
        let last = *h.series("t", now + MINUTES as u64).last().unwrap();
        assert_eq!((last.peak, last.samples), (3, 1));
    }

    #[test]
    fn busy_hour_is_the_window_with_most_traffic() {
        // Quiet morning, a 90-minute plateau of 10 with a 20-minute bump to 30 in it.
        let mut series: Vec<MinuteLoad> = (0..600).map(|m| minute(m, 1)).collect();
        for m in &mut series[300..390] {
            *m = minute(m.minute, 10);
        }
        for m in &mut series[340..360] {
            *m = minute(m.minute, 30);
        }
        let bh = busy_hour(&series).unwrap();
        // Any 60-minute window covering the bump inside the plateau has 20*30 + 40*10:
        // the earliest is 300..360.
        assert_eq!((bh.start_minute, bh.end_minute), (300, 360));
        assert!((bh.erlangs - (20.0 * 30.0 + 40.0 * 10.0) / 60.0).abs() < 1e-9);
        assert_eq!(bh.peak, 30);
    }

    #[test]
    fn busy_hour_counts_missing_minutes_as_idle_and_none_without_traffic() {
        assert_eq!(busy_hour(&[]), None);
        assert_eq!(busy_hour(&[minute(5, 0), minute(6, 0)]), None);
        // Two bursts 2 h apart: the bigger one wins even with gaps in between.
        let series = [minute(0, 3), minute(1, 3), minute(120, 8), minute(200, 1)];
        let bh = busy_hour(&series).unwrap();
        // The hour ending with the burst.
        assert_eq!((bh.start_minute, bh.end_minute, bh.peak), (61, 121, 8));
        assert!((bh.erlangs - 8.0 / 60.0).abs() < 1e-9);
        // 5 + 5 within one hour beats a single 8.
        let series = [minute(0, 5), minute(59, 5), minute(120, 8)];
        assert_eq!(busy_hour(&series).unwrap().start_minute, 0);
        // At start-up: traffic in the last two minutes only, the hour ending now.
        let series = [minute(1000, 2), minute(1001, 4)];
        let bh = busy_hour(&series).unwrap();
        assert_eq!((bh.start_minute, bh.end_minute), (942, 1002));
        assert!((bh.erlangs - 6.0 / 60.0).abs() < 1e-9);
    }
}
