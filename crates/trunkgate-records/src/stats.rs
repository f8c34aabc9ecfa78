//! Busy-hour statistics: pure functions over call records. A *seizure* is one trunk
//! channel held: an outbound attempt holds its trunk from the branch's INVITE to that
//! branch's final (a failed attempt) or to the call's end (the attempt that carried it);
//! an inbound call holds its source trunk from its INVITE to its end. That is what a
//! trunk's `max_sessions` counts, so peak concurrency is comparable with the limit.
//!
//! - Peak concurrency: exact, by a sweep over seizure starts and ends (an end at the same
//!   millisecond as a start is counted first).
//! - Traffic in a window, in Erlangs: channel-seconds held inside the window / its length.
//! - Busy hour (per UTC day): the 60-minute window `[t, t + 1 h)`, `t` within the day, with
//!   the most traffic. The traffic of a window is linear in `t` between the breakpoints
//!   where `t` or `t + 1 h` meets a seizure start or end, so only those are evaluated
//!   (exact, no sampling).
//! - Offered traffic: carried + attempts refused for capacity × mean holding time / 1 h.

use crate::record::CallRecord;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// One channel held `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seizure {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The trunk channels one record held: `(trunk, seizure)`.
pub fn trunk_seizures(r: &CallRecord) -> Vec<(&str, Seizure)> {
    let mut out = Vec::new();
    if r.reject.is_some() {
        return out;
    }
    match r.direction {
        crate::record::Direction::Inbound => {
            if let Some(t) = &r.trunk {
                out.push((
                    t.as_str(),
                    Seizure {
                        start_ms: r.start_ms,
                        end_ms: r.end_ms.max(r.start_ms),
                    },
                ));
            }
        }
        crate::record::Direction::Outbound => {
            let last = r.attempts.len().saturating_sub(1);
            for (i, a) in r.attempts.iter().enumerate() {
                let start = r.start_ms + i64::from(a.offset_ms);
                let branch_end = start + i64::from(a.duration_ms);
                let end = if i == last {
                    r.end_ms.max(branch_end)
                } else {
                    branch_end
                };
                out.push((
                    a.to.as_str(),
                    Seizure {
                        start_ms: start,
                        end_ms: end,
                    },
                ));
            }
        }
    }
    out
}

/// The record's whole span `[start, end)` as one seizure, for direction and route
/// statistics (`None` for a reject: it held nothing).
pub fn call_seizure(r: &CallRecord) -> Option<Seizure> {
    (r.reject.is_none()).then_some(Seizure {
        start_ms: r.start_ms,
        end_ms: r.end_ms.max(r.start_ms),
    })
}

/// Highest number of seizures up at once, and the first millisecond it was reached.
pub fn peak_concurrency(seizures: &[Seizure]) -> (u32, i64) {
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(seizures.len() * 2);
    for s in seizures {
        events.push((s.start_ms, 1));
        events.push((s.end_ms, -1));
    }
    // Ends (-1) before starts (+1) at the same time.
    events.sort_unstable();
    let (mut now, mut peak, mut at) = (0i64, 0i64, 0i64);
    for (t, d) in events {
        now += i64::from(d);
        if now > peak {
            peak = now;
            at = t;
        }
    }
    (u32::try_from(peak).unwrap_or(u32::MAX), at)
}

/// The running integral of concurrency (channel-milliseconds) over time.
struct Occupancy {
    times: Vec<i64>,
    /// Channel-ms held before `times[i]`.
    cum: Vec<f64>,
    /// Channels up just after `times[i]`.
    level: Vec<i64>,
}

impl Occupancy {
    fn new(seizures: &[Seizure]) -> Occupancy {
        let mut events: Vec<(i64, i64)> = Vec::with_capacity(seizures.len() * 2);
        for s in seizures {
            events.push((s.start_ms, 1));
            events.push((s.end_ms, -1));
        }
        events.sort_unstable();
        let mut o = Occupancy {
            times: Vec::new(),
            cum: Vec::new(),
            level: Vec::new(),
        };
        let (mut level, mut cum, mut last) = (0i64, 0f64, i64::MIN);
        for (t, d) in events {
            if o.times.last() == Some(&t) {
                level += d;
                if let Some(l) = o.level.last_mut() {
                    *l = level;
                }
                continue;
            }
            if last != i64::MIN {
                cum += (level as f64) * ((t - last) as f64);
            }
            level += d;
            o.times.push(t);
            o.cum.push(cum);
            o.level.push(level);
            last = t;
        }
        o
    }

    /// Channel-ms held before `x`.
    fn at(&self, x: i64) -> f64 {
        let i = self.times.partition_point(|&t| t <= x);
        if i == 0 {
            return 0.0;
        }
        let k = i - 1;
        self.cum[k] + (self.level[k] as f64) * ((x - self.times[k]) as f64)
    }

    /// Erlangs carried in `[t, t + len)`.
    fn erlangs(&self, t: i64, len: i64) -> f64 {
        (self.at(t + len) - self.at(t)) / len as f64
    }
}

/// The busiest hour of one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusyHour {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub start_ms: i64,
    /// Traffic carried in that hour.
    pub erlangs: f64,
    /// Seizures that started in that hour.
    pub seizures: u64,
    /// Highest concurrency of the whole day.
    pub day_peak: u32,
}

/// The busy hour of every UTC day the seizures touch, in day order.
pub fn busy_hours(seizures: &[Seizure]) -> Vec<BusyHour> {
    if seizures.is_empty() {
        return Vec::new();
    }
    let occ = Occupancy::new(seizures);
    let mut starts: Vec<i64> = seizures.iter().map(|s| s.start_ms).collect();
    starts.sort_unstable();
    let first = seizures.iter().map(|s| s.start_ms).min().unwrap_or(0);
    let last = seizures.iter().map(|s| s.end_ms).max().unwrap_or(0);
    let mut out = Vec::new();
    let mut day = first.div_euclid(DAY_MS);
    while day * DAY_MS <= last {
        let (ds, de) = (day * DAY_MS, (day + 1) * DAY_MS);
        let mut best = (ds, occ.erlangs(ds, HOUR_MS));
        let lo = occ.times.partition_point(|&t| t < ds);
        let hi = occ.times.partition_point(|&t| t < de + HOUR_MS);
        for &t in &occ.times[lo..hi] {
            for cand in [t, t - HOUR_MS] {
                if (ds..de).contains(&cand) {
                    let e = occ.erlangs(cand, HOUR_MS);
                    if e > best.1 + 1e-9 {
                        best = (cand, e);
                    }
                }
            }
        }
        let in_hour = starts.partition_point(|&s| s < best.0 + HOUR_MS)
            - starts.partition_point(|&s| s < best.0);
        let day_seizures: Vec<Seizure> = seizures
            .iter()
            .filter(|s| s.start_ms < de && s.end_ms >= ds)
            .map(|s| Seizure {
                start_ms: s.start_ms.max(ds),
                end_ms: s.end_ms.min(de),
            })
            .collect();
        if !day_seizures.is_empty() {
            out.push(BusyHour {
                day: date(ds),
                start_ms: best.0,
                erlangs: best.1,
                seizures: in_hour as u64,
                day_peak: peak_concurrency(&day_seizures).0,
            });
        }
        day += 1;
    }
    out
}

/// `YYYY-MM-DD` of a wall-clock time in ms (UTC).
pub fn date(ms: i64) -> String {
    let (y, m, d) = civil(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since the epoch → (year, month, day) (Howard Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Busy-hour statistics of one trunk, direction or route.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TrafficStats {
    pub key: String,
    /// Call attempts (records) that touched it, rejects included.
    pub attempts: u64,
    pub answered: u64,
    /// Answer-seizure ratio: answered / attempts (0 without attempts).
    pub asr: f64,
    /// Channels seized.
    pub seizures: u64,
    /// Mean length of a seizure, s.
    pub mean_holding_s: f64,
    pub peak_concurrency: u32,
    pub peak_at_ms: i64,
    /// The busiest of the daily busy hours.
    pub busy_hour: Option<BusyHour>,
    pub daily: Vec<BusyHour>,
    /// Traffic carried in the busy hour, E.
    pub carried_erlangs: f64,
    /// Carried + refused for capacity in the busy hour × mean holding time, E.
    pub offered_erlangs: f64,
    /// Attempts refused by a session or call-rate limit.
    pub capacity_rejects: u64,
    /// Unanswered attempts by reason (Trunkgate's reason, else the final code).
    pub rejects: BTreeMap<String, u64>,
    /// Attempts that failed over to another candidate.
    pub failovers: u64,
}

/// Statistics over `seizures` (the channels held) and `records` (the attempts counted).
pub fn traffic(key: &str, seizures: &[Seizure], records: &[&CallRecord]) -> TrafficStats {
    let (peak, peak_at) = peak_concurrency(seizures);
    let daily = busy_hours(seizures);
    let busy_hour = daily
        .iter()
        .max_by(|a, b| a.erlangs.total_cmp(&b.erlangs))
        .cloned();
    let held: f64 = seizures
        .iter()
        .map(|s| (s.end_ms - s.start_ms).max(0) as f64 / 1000.0)
        .sum();
    let mean_holding_s = if seizures.is_empty() {
        0.0
    } else {
        held / seizures.len() as f64
    };
    let mut rejects = BTreeMap::new();
    let mut answered = 0;
    let mut capacity_rejects = 0;
    let mut failovers = 0;
    let mut capacity_in_busy_hour = 0u64;
    for r in records {
        if r.answer_ms.is_some() {
            answered += 1;
        }
        if let Some(label) = r.reject_label() {
            *rejects.entry(label).or_insert(0) += 1;
        }
        if r.capacity_reject() {
            capacity_rejects += 1;
            if let Some(bh) = &busy_hour {
                if (bh.start_ms..bh.start_ms + HOUR_MS).contains(&r.start_ms) {
                    capacity_in_busy_hour += 1;
                }
            }
        }
        failovers += r.failovers() as u64;
    }
    let attempts = records.len() as u64;
    let carried = busy_hour.as_ref().map_or(0.0, |b| b.erlangs);
    TrafficStats {
        key: key.to_owned(),
        attempts,
        answered,
        asr: if attempts == 0 {
            0.0
        } else {
            answered as f64 / attempts as f64
        },
        seizures: seizures.len() as u64,
        mean_holding_s,
        peak_concurrency: peak,
        peak_at_ms: peak_at,
        busy_hour,
        daily,
        carried_erlangs: carried,
        offered_erlangs: carried + capacity_in_busy_hour as f64 * mean_holding_s / 3600.0,
        capacity_rejects,
        rejects,
        failovers,
    }
}

/// Statistics per trunk (every trunk a record names, by name).
pub fn per_trunk(records: &[CallRecord]) -> Vec<TrafficStats> {
    let mut seizures: BTreeMap<&str, Vec<Seizure>> = BTreeMap::new();
    let mut touched: BTreeMap<&str, Vec<&CallRecord>> = BTreeMap::new();
    for r in records {
        let mut names: Vec<&str> = Vec::new();
        for (t, s) in trunk_seizures(r) {
            seizures.entry(t).or_default().push(s);
            names.push(t);
        }
        if let Some(t) = r.trunk.as_deref() {
            names.push(t);
        }
        names.sort_unstable();
        names.dedup();
        for t in names {
            touched.entry(t).or_default().push(r);
        }
    }
    touched
        .iter()
        .map(|(t, rs)| traffic(t, seizures.get(t).map_or(&[][..], Vec::as_slice), rs))
        .collect()
}

/// Statistics grouped by `key` over the records' whole spans.
pub fn per_key(
    records: &[CallRecord],
    key: impl Fn(&CallRecord) -> Option<String>,
) -> Vec<TrafficStats> {
    let mut groups: BTreeMap<String, (Vec<Seizure>, Vec<&CallRecord>)> = BTreeMap::new();
    for r in records {
        let Some(k) = key(r) else { continue };
        let g = groups.entry(k).or_default();
        if let Some(s) = call_seizure(r) {
            g.0.push(s);
        }
        g.1.push(r);
    }
    groups
        .iter()
        .map(|(k, (s, rs))| traffic(k, s, rs))
        .collect()
}

/// Trunk legs that belong to one customer call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amplification {
    /// Calls that held a trunk channel.
    pub legs: u64,
    /// Legs found to be extra legs of another call (transfers, forwards, consults).
    pub extra_legs: u64,
    /// Customer calls: legs − extra legs.
    pub customer_calls: u64,
    /// Legs per customer call (1.0: none found).
    pub ratio: f64,
    /// The correlation window used, s.
    pub window_s: u64,
}

/// Leg amplification. A leg is an *extra leg* of an earlier customer call when
/// 1. its INVITE carried Referred-By, Replaces or Diversion (`transfer`), or
/// 2. it is outbound and its caller (From user) is the external party of another leg that
///    was still up, or ended less than `window_ms` before it started: a forward or
///    transfer that presents the original caller's number. The external party of an
///    inbound leg is its caller, of an outbound leg its callee.
///
/// Limits: a consult call to a new number that presents the PBX's own number, with no
/// transfer header, is not found; two unrelated calls from one caller inside the window
/// are taken as one (rare for external numbers, common for a PBX's main number — which
/// is why only the *external* party of the earlier leg is compared).
pub fn amplification(records: &[CallRecord], window_ms: i64) -> Amplification {
    let mut legs: Vec<&CallRecord> = records.iter().filter(|r| r.reject.is_none()).collect();
    legs.sort_by_key(|r| r.start_ms);
    let mut last_end: HashMap<&str, i64> = HashMap::new();
    let mut extra = 0u64;
    for r in &legs {
        let chained = r.direction == crate::record::Direction::Outbound
            && !r.caller.is_empty()
            && last_end
                .get(r.caller.as_str())
                .is_some_and(|&end| end + window_ms >= r.start_ms);
        if r.transfer || chained {
            extra += 1;
        }
        let external = match r.direction {
            crate::record::Direction::Inbound => r.caller.as_str(),
            crate::record::Direction::Outbound => r.callee.as_str(),
        };
        if !external.is_empty() {
            let e = last_end.entry(external).or_insert(r.end_ms);
            *e = (*e).max(r.end_ms);
        }
    }
    let n = legs.len() as u64;
    let customer = n - extra.min(n);
    Amplification {
        legs: n,
        extra_legs: extra,
        customer_calls: customer,
        ratio: if customer == 0 {
            1.0
        } else {
            n as f64 / customer as f64
        },
        window_s: u64::try_from(window_ms / 1000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Attempt, Direction};
    use crate::store::tests::record;

    fn s(a: i64, b: i64) -> Seizure {
        Seizure {
            start_ms: a,
            end_ms: b,
        }
    }

    #[test]
    fn peak_counts_ends_before_starts_at_the_same_instant() {
        assert_eq!(peak_concurrency(&[]), (0, 0));
        assert_eq!(peak_concurrency(&[s(0, 10), s(10, 20)]), (1, 0));
        assert_eq!(peak_concurrency(&[s(0, 10), s(5, 20), s(6, 7)]), (3, 6));
    }

    #[test]
    fn busy_hour_is_the_window_with_the_most_traffic() {
        let day = 20_000 * DAY_MS;
        // 10 channels busy 02:00–02:30, 30 channels busy 14:10–14:40 → busy hour holds all
        // of the second block: 30 × 0.5 h = 15 E, starting at or before 14:10.
        let mut v: Vec<Seizure> = (0..10)
            .map(|_| s(day + 2 * HOUR_MS, day + 2 * HOUR_MS + HOUR_MS / 2))
            .collect();
        let from = day + 14 * HOUR_MS + 10 * 60_000;
        v.extend((0..30).map(|_| s(from, from + HOUR_MS / 2)));
        let bh = busy_hours(&v);
        assert_eq!(bh.len(), 1);
        assert!((bh[0].erlangs - 15.0).abs() < 1e-9, "{:?}", bh[0]);
        assert!(bh[0].start_ms <= from && bh[0].start_ms + HOUR_MS >= from + HOUR_MS / 2);
        assert_eq!(bh[0].seizures, 30);
        assert_eq!(bh[0].day_peak, 30);
        assert_eq!(bh[0].day, "2024-10-04");
        // A second day gets its own busy hour.
        v.push(s(day + DAY_MS + HOUR_MS, day + DAY_MS + 2 * HOUR_MS));
        let bh = busy_hours(&v);
        assert_eq!(bh.len(), 2);
        assert!((bh[1].erlangs - 1.0).abs() < 1e-9);
        // A sliding window beats clock hours: 60 channels 10:30–11:30 is 60 E, where
        // either clock hour shows 30 E.
        let t = day + 10 * HOUR_MS + HOUR_MS / 2;
        let bh = busy_hours(&(0..60).map(|_| s(t, t + HOUR_MS)).collect::<Vec<_>>());
        assert!((bh[0].erlangs - 60.0).abs() < 1e-9);
        assert_eq!(bh[0].start_ms, t);
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(1_798_675_200_000), "2026-12-31");
    }

    #[test]
    fn per_trunk_counts_failover_attempts_on_each_trunk_and_capacity_rejects() {
        let mut a = record(0, "b");
        a.attempts.insert(
            0,
            Attempt {
                to: "a".into(),
                offset_ms: 0,
                duration_ms: 100,
                outcome: "503".into(),
                first_provisional_ms: None,
                failover: true,
            },
        );
        let mut reject = record(1, "a");
        reject.reject = Some("sessions".into());
        reject.answer_ms = None;
        reject.code = 503;
        reject.attempts.clear();
        let stats = per_trunk(&[a.clone(), reject, record(2, "b")]);
        let ta = stats.iter().find(|s| s.key == "a").unwrap();
        assert_eq!((ta.attempts, ta.seizures, ta.capacity_rejects), (2, 1, 1));
        assert_eq!(ta.rejects.get("sessions"), Some(&1));
        assert_eq!(ta.failovers, 1);
        let tb = stats.iter().find(|s| s.key == "b").unwrap();
        assert_eq!((tb.attempts, tb.answered, tb.seizures), (2, 2, 2));
        // Seizure of "b" in record a: from its branch to the end of the call.
        let sz = trunk_seizures(&a);
        assert_eq!(sz[1].1, s(a.start_ms + 1, a.end_ms));
        let d = per_key(&[a], |r| Some(r.direction.as_str().to_owned()));
        assert_eq!(d[0].key, "outbound");
    }

    #[test]
    fn offered_traffic_adds_capacity_rejects_at_the_mean_holding_time() {
        let t0 = 1_000 * HOUR_MS;
        let mut recs: Vec<CallRecord> = (0..10)
            .map(|i| {
                let mut r = record(i, "a");
                r.start_ms = t0;
                r.end_ms = t0 + 360_000; // 6 min
                r.attempts[0].offset_ms = 0;
                r
            })
            .collect();
        for i in 0..5 {
            let mut r = record(100 + i, "a");
            r.start_ms = t0 + 1000;
            r.end_ms = t0 + 1000;
            r.reject = Some("sessions".into());
            r.answer_ms = None;
            recs.push(r);
        }
        let st = per_trunk(&recs);
        let a = &st[0];
        assert!((a.carried_erlangs - 1.0).abs() < 1e-9, "{a:?}");
        assert!((a.offered_erlangs - 1.5).abs() < 1e-9, "{a:?}");
        assert_eq!(a.peak_concurrency, 10);
        assert!((a.asr - 10.0 / 15.0).abs() < 1e-9);
    }

    #[test]
    fn a_forward_presenting_the_callers_number_is_an_extra_leg() {
        let mut inbound = record(0, "a");
        inbound.direction = Direction::Inbound;
        inbound.caller = "4915111".into();
        inbound.callee = "100".into();
        // Forwarded to an external number while up, presenting the caller's number.
        let mut fwd = record(0, "b");
        fwd.start_ms = inbound.start_ms + 500;
        fwd.caller = "4915111".into();
        fwd.callee = "4930999".into();
        // Unrelated outbound call from the PBX's number.
        let mut other = record(1, "b");
        other.caller = "493000".into();
        // A transfer flagged by header.
        let mut xfer = record(2, "a");
        xfer.transfer = true;
        let amp = amplification(&[inbound, fwd, other, xfer], 10_000);
        assert_eq!((amp.legs, amp.extra_legs, amp.customer_calls), (4, 2, 2));
        assert!((amp.ratio - 2.0).abs() < 1e-9);
    }
}
