//! Capacity planning: channels by Erlang B for a grade of service, now and after growth;
//! bandwidth per codec with IP/UDP/RTP overhead; the trend of the daily busy-hour peak
//! (least squares) and the day it crosses a trunk's limit; one plain line per trunk.
//! Pure functions: the daemon feeds records and limits, `trunkgate plan` feeds figures.

use crate::erlang;
use crate::record::CallRecord;
use crate::stats::{self, DAY_MS, TrafficStats};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bytes of IPv4 (20) + UDP (8) + RTP (12) headers per packet.
pub const IP_UDP_RTP: u32 = 40;
/// Ethernet header and FCS per frame (preamble and gap not counted).
pub const ETHERNET: u32 = 18;

/// A voice codec's payload rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Codec {
    pub name: &'static str,
    /// Payload bit rate, kbit/s.
    pub kbps: f64,
}

/// The codecs `trunkgate plan --codec` knows.
pub const CODECS: &[Codec] = &[
    Codec {
        name: "G711",
        kbps: 64.0,
    },
    Codec {
        name: "G722",
        kbps: 64.0,
    },
    Codec {
        name: "G729",
        kbps: 8.0,
    },
    Codec {
        name: "GSM",
        kbps: 13.2,
    },
    Codec {
        name: "OPUS",
        kbps: 32.0,
    },
];

impl Codec {
    /// By name, case-insensitively; `PCMU`/`PCMA` are G.711.
    pub fn named(name: &str) -> Option<Codec> {
        let n = name.to_ascii_uppercase().replace(['.', '-'], "");
        let n = match n.as_str() {
            "PCMU" | "PCMA" | "G711U" | "G711A" | "G711ULAW" | "G711ALAW" => "G711",
            other => other,
        };
        CODECS.iter().copied().find(|c| c.name == n)
    }

    /// Per call and direction, kbit/s at the IP layer (payload + IP/UDP/RTP), and with
    /// Ethernet framing, for packets of `ptime_ms`.
    pub fn per_call_kbps(self, ptime_ms: u32) -> (f64, f64) {
        let ptime = f64::from(ptime_ms.max(1));
        let pps = 1000.0 / ptime;
        let payload_bytes = self.kbps * ptime / 8.0;
        let ip = (payload_bytes + f64::from(IP_UDP_RTP)) * 8.0 * pps / 1000.0;
        let eth = (payload_bytes + f64::from(IP_UDP_RTP + ETHERNET)) * 8.0 * pps / 1000.0;
        (ip, eth)
    }
}

/// `trunkgate plan`: the figures of an offline plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub busy_hour_calls: f64,
    pub aht_s: f64,
    pub gos: f64,
    pub growth: f64,
    pub erlangs: f64,
    pub channels: u32,
    pub erlangs_after_growth: f64,
    pub channels_after_growth: u32,
    pub codec: &'static str,
    pub ptime_ms: u32,
    /// Per call, per direction.
    pub call_kbps_ip: f64,
    pub call_kbps_ethernet: f64,
    /// All channels busy, per direction (the link must carry this each way).
    pub kbps_ip: f64,
    pub kbps_ip_after_growth: f64,
    pub kbps_ethernet_after_growth: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Input(String),
}

/// Channels and bandwidth for `busy_hour_calls` calls of mean holding time `aht_s` at
/// blocking `gos` (fraction), now and after `growth` (fraction, 0.3 = +30 %).
pub fn plan(
    busy_hour_calls: f64,
    aht_s: f64,
    gos: f64,
    growth: f64,
    codec: Codec,
    ptime_ms: u32,
) -> Result<Plan, PlanError> {
    let bad = |m: &str| Err(PlanError::Input(m.to_owned()));
    if !(busy_hour_calls >= 0.0 && busy_hour_calls.is_finite()) {
        return bad("busy-hour calls must be a number of calls, 0 or more");
    }
    if !(aht_s > 0.0 && aht_s.is_finite()) {
        return bad("the mean holding time must be longer than 0 s");
    }
    if !(gos > 0.0 && gos < 1.0) {
        return bad("the grade of service must be between 0 % and 100 %, e.g. 1%");
    }
    if !(growth > -1.0 && growth.is_finite()) {
        return bad("growth must be above -100 %");
    }
    let erlangs = busy_hour_calls * aht_s / 3600.0;
    let grown = erlangs * (1.0 + growth);
    let too_big = || PlanError::Input(format!("more than {} channels", erlang::MAX_CHANNELS));
    let channels = erlang::channels_for(erlangs, gos).ok_or_else(too_big)?;
    let channels_after_growth = erlang::channels_for(grown, gos).ok_or_else(too_big)?;
    let (ip, eth) = codec.per_call_kbps(ptime_ms);
    Ok(Plan {
        busy_hour_calls,
        aht_s,
        gos,
        growth,
        erlangs,
        channels,
        erlangs_after_growth: grown,
        channels_after_growth,
        codec: codec.name,
        ptime_ms,
        call_kbps_ip: ip,
        call_kbps_ethernet: eth,
        kbps_ip: ip * f64::from(channels),
        kbps_ip_after_growth: ip * f64::from(channels_after_growth),
        kbps_ethernet_after_growth: eth * f64::from(channels_after_growth),
    })
}

/// A straight line through the daily busy-hour peaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub days: usize,
    /// Change of the daily peak per day (channels/day).
    pub slope_per_day: f64,
    /// The first day the fitted peak reaches the limit (`None`: flat or falling, fewer
    /// than two days, or no limit).
    pub crossing: Option<String>,
}

/// Least squares over `(day number, peak)`; the crossing of `limit` at or after `today`.
pub fn trend(daily: &[(i64, f64)], limit: Option<u32>, today: i64) -> Trend {
    let n = daily.len();
    let mut t = Trend {
        days: n,
        slope_per_day: 0.0,
        crossing: None,
    };
    if n < 2 {
        return t;
    }
    let nf = n as f64;
    let mx = daily.iter().map(|p| p.0 as f64).sum::<f64>() / nf;
    let my = daily.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = daily.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return t;
    }
    let sxy: f64 = daily.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    t.slope_per_day = b;
    if let Some(limit) = limit {
        if b > 0.0 {
            let day = ((f64::from(limit) - a) / b).ceil();
            if day.is_finite() && day < 1e7 {
                let day = (day as i64).max(today);
                t.crossing = Some(stats::date(day * DAY_MS));
            }
        }
    }
    t
}

/// What a trunk's media took, per codec, from the records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bandwidth {
    pub codec: String,
    /// Media legs measured.
    pub streams: u64,
    /// Mean per call and direction at the IP layer (UDP payload + 28 bytes IP/UDP per
    /// packet), kbit/s, as received from the trunk while media flowed.
    pub call_kbps: f64,
    /// × busy-hour Erlangs: the mean busy-hour rate, per direction.
    pub busy_hour_kbps: f64,
    /// × channels needed after growth: what the link must carry at the grade of service.
    pub needed_kbps_after_growth: f64,
}

/// One trunk's capacity figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrunkCapacity {
    #[serde(flatten)]
    pub stats: TrafficStats,
    pub max_sessions: Option<u32>,
    /// Peak concurrency / max_sessions.
    pub utilisation_at_peak: Option<f64>,
    /// Offered busy-hour traffic after growth.
    pub erlangs_after_growth: f64,
    /// Channels for the grade of service: for today's offered traffic and after growth.
    pub channels_needed: Option<u32>,
    pub channels_needed_after_growth: Option<u32>,
    pub bandwidth: Vec<Bandwidth>,
    pub trend: Trend,
    /// One plain sentence.
    pub advice: String,
}

/// The whole answer of `GET /capacity`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityReport {
    pub since_ms: i64,
    pub until_ms: i64,
    pub records: usize,
    pub gos: f64,
    pub growth: f64,
    pub trunks: Vec<TrunkCapacity>,
    pub directions: Vec<TrafficStats>,
    pub routes: Vec<TrafficStats>,
    pub amplification: stats::Amplification,
}

/// Window for leg correlation ([`stats::amplification`]).
pub const CORRELATION_WINDOW_MS: i64 = 10_000;

/// Capacity figures for `records`; `limits`: each configured trunk and its
/// `max_sessions` (trunks in the records but not configured any more are reported too).
pub fn capacity(
    records: &[CallRecord],
    limits: &[(String, Option<u32>)],
    gos: f64,
    growth: f64,
    since_ms: i64,
    until_ms: i64,
) -> CapacityReport {
    let mut by_trunk: BTreeMap<String, TrafficStats> = stats::per_trunk(records)
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let mut names: Vec<String> = limits.iter().map(|(n, _)| n.clone()).collect();
    names.extend(
        by_trunk
            .keys()
            .filter(|k| !limits.iter().any(|(n, _)| n == *k))
            .cloned(),
    );
    let today = until_ms.div_euclid(DAY_MS);
    let trunks = names
        .into_iter()
        .map(|name| {
            let stats = by_trunk.remove(&name).unwrap_or_else(|| TrafficStats {
                key: name.clone(),
                ..TrafficStats::default()
            });
            let max_sessions = limits.iter().find(|(n, _)| *n == name).and_then(|l| l.1);
            trunk_capacity(records, stats, max_sessions, gos, growth, today)
        })
        .collect();
    CapacityReport {
        since_ms,
        until_ms,
        records: records.len(),
        gos,
        growth,
        trunks,
        directions: stats::per_key(records, |r| Some(r.direction.as_str().to_owned())),
        routes: stats::per_key(records, |r| r.route.clone()),
        amplification: stats::amplification(records, CORRELATION_WINDOW_MS),
    }
}

fn trunk_capacity(
    records: &[CallRecord],
    stats: TrafficStats,
    max_sessions: Option<u32>,
    gos: f64,
    growth: f64,
    today: i64,
) -> TrunkCapacity {
    let offered = stats.offered_erlangs;
    let grown = offered * (1.0 + growth);
    let needed = erlang::channels_for(offered, gos);
    let needed_grown = erlang::channels_for(grown, gos);
    let daily: Vec<(i64, f64)> = stats
        .daily
        .iter()
        .map(|d| (d.start_ms.div_euclid(DAY_MS), f64::from(d.day_peak)))
        .collect();
    let trend = trend(&daily, max_sessions, today);
    let bandwidth = bandwidth(records, &stats.key, stats.carried_erlangs, needed_grown);
    let utilisation_at_peak = max_sessions
        .filter(|&m| m > 0)
        .map(|m| f64::from(stats.peak_concurrency) / f64::from(m));
    let advice = advice(&stats, max_sessions, gos, growth, needed_grown, &trend);
    TrunkCapacity {
        stats,
        max_sessions,
        utilisation_at_peak,
        erlangs_after_growth: grown,
        channels_needed: needed,
        channels_needed_after_growth: needed_grown,
        bandwidth,
        trend,
        advice,
    }
}

fn bandwidth(
    records: &[CallRecord],
    trunk: &str,
    erlangs: f64,
    channels: Option<u32>,
) -> Vec<Bandwidth> {
    let mut per: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.trunk.as_deref() == Some(trunk)) {
        // The rate while media flowed (first to last packet); without that, over the
        // stream's life (from its SDP offer: ringing included, so lower).
        for leg in r
            .media
            .iter()
            .filter(|l| l.side == "trunk" && l.seconds > 0.0 && l.packets > 0)
        {
            let secs = if leg.active_seconds > 0.0 {
                leg.active_seconds
            } else {
                leg.seconds
            };
            let kbps = (leg.bytes as f64 + 28.0 * leg.packets as f64) * 8.0 / secs / 1000.0;
            let e = per.entry(leg.codec.clone()).or_default();
            e.0 += 1;
            e.1 += kbps;
        }
    }
    per.into_iter()
        .map(|(codec, (n, sum))| {
            let call = sum / n as f64;
            Bandwidth {
                codec,
                streams: n,
                call_kbps: call,
                busy_hour_kbps: call * erlangs,
                needed_kbps_after_growth: call * f64::from(channels.unwrap_or(0)),
            }
        })
        .collect()
}

fn percent(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// "carrier-a: add 40 channels before 2027-01-14 (busy hour 212 E, limit 240, 1 % GoS
/// needs 231 at +30 %)".
fn advice(
    s: &TrafficStats,
    max_sessions: Option<u32>,
    gos: f64,
    growth: f64,
    needed: Option<u32>,
    trend: &Trend,
) -> String {
    let growth_txt = format!(
        "{}{}",
        if growth >= 0.0 { "+" } else { "" },
        percent(growth)
    );
    let Some(needed) = needed else {
        return format!(
            "{}: more channels than can be computed at {} GoS",
            s.key,
            percent(gos)
        );
    };
    let facts = |limit: &str| {
        format!(
            "busy hour {:.2} E, peak {}, limit {limit}, {} GoS needs {needed} at {growth_txt}",
            s.offered_erlangs,
            s.peak_concurrency,
            percent(gos)
        )
    };
    match max_sessions {
        None => format!("{}: no max_sessions set ({})", s.key, facts("none")),
        Some(limit) if needed > limit => {
            let when = match &trend.crossing {
                Some(d) => format!("before {d}"),
                None => "now".to_owned(),
            };
            format!(
                "{}: add {} channels {when} ({})",
                s.key,
                needed - limit,
                facts(&limit.to_string())
            )
        }
        Some(limit) if s.capacity_rejects > 0 || s.peak_concurrency >= limit => {
            // Erlang B on the hour's average says enough, yet the limit was hit: the calls
            // came in bursts shorter than the hour. Say so rather than "enough".
            format!(
                "{}: at its limit: peak {} of {limit}, {} refused for capacity; Erlang B on the \
                 busy hour ({:.2} E, {} GoS needs {needed} at {growth_txt}) understates bursts \
                 shorter than an hour: size for the peak",
                s.key,
                s.peak_concurrency,
                s.capacity_rejects,
                s.offered_erlangs,
                percent(gos)
            )
        }
        Some(limit) => {
            let when = match &trend.crossing {
                Some(d) => format!("; at the current trend the peak reaches the limit on {d}"),
                None => String::new(),
            };
            format!(
                "{}: enough, {} channels spare ({}){when}",
                s.key,
                limit - needed,
                facts(&limit.to_string())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MediaLeg;
    use crate::store::tests::record;

    #[test]
    fn the_plan_example_from_the_operations_guide() {
        let g711 = Codec::named("g711").unwrap();
        let p = plan(1200.0, 180.0, 0.01, 0.3, g711, 20).unwrap();
        assert!((p.erlangs - 60.0).abs() < 1e-9);
        assert_eq!(p.channels, 75);
        assert!((p.erlangs_after_growth - 78.0).abs() < 1e-9);
        assert_eq!(p.channels_after_growth, 94);
        // G.711 at 20 ms: 160 B + 40 B per packet, 50 packets/s = 80 kbit/s (IP), 87.2 with
        // Ethernet.
        assert!((p.call_kbps_ip - 80.0).abs() < 1e-9);
        assert!((p.call_kbps_ethernet - 87.2).abs() < 1e-9);
        assert!((p.kbps_ip_after_growth - 94.0 * 80.0).abs() < 1e-6);
        let g729 = Codec::named("G.729").unwrap();
        assert!((g729.per_call_kbps(20).0 - 24.0).abs() < 1e-9);
        assert_eq!(Codec::named("PCMA").map(|c| c.name), Some("G711"));
        assert!(Codec::named("speex").is_none());
        assert!(plan(1200.0, 0.0, 0.01, 0.0, g711, 20).is_err());
        assert!(plan(1200.0, 180.0, 1.0, 0.0, g711, 20).is_err());
        assert!(plan(f64::NAN, 180.0, 0.01, 0.0, g711, 20).is_err());
    }

    #[test]
    fn the_trend_finds_the_day_the_peak_crosses_the_limit() {
        // Peak 200 on day 100, +2 per day: 240 on day 120.
        let daily: Vec<(i64, f64)> = (100..107)
            .map(|d| (d, 200.0 + 2.0 * (d - 100) as f64))
            .collect();
        let t = trend(&daily, Some(240), 106);
        assert!((t.slope_per_day - 2.0).abs() < 1e-9);
        assert_eq!(
            t.crossing.as_deref(),
            Some(stats::date(120 * DAY_MS).as_str())
        );
        assert_eq!(trend(&daily[..1], Some(240), 106).crossing, None);
        let falling: Vec<(i64, f64)> = daily.iter().map(|&(d, p)| (d, 400.0 - p)).collect();
        assert_eq!(trend(&falling, Some(240), 106).crossing, None);
    }

    #[test]
    fn capacity_names_channels_bandwidth_and_a_plain_line() {
        let mut recs: Vec<crate::record::CallRecord> = (0..4).map(|i| record(i, "a")).collect();
        for r in &mut recs {
            r.media.push(MediaLeg {
                side: "trunk".into(),
                codec: "PCMU".into(),
                packets: 500,
                bytes: 500 * 172,
                lost: 0,
                loss_pct: 0.0,
                jitter_ms: 1.0,
                packet_rate: 50.0,
                seconds: 12.0,
                active_seconds: 10.0,
            });
        }
        let limits = vec![("a".to_owned(), Some(2)), ("z".to_owned(), Some(10))];
        let rep = capacity(&recs, &limits, 0.01, 0.3, 0, 2_000_000);
        assert_eq!(rep.trunks.len(), 2);
        let a = &rep.trunks[0];
        assert_eq!(a.stats.peak_concurrency, 2);
        assert_eq!(a.utilisation_at_peak, Some(1.0));
        // 172 B RTP + 28 B IP/UDP = 200 B × 50/s = 80 kbit/s.
        assert!(
            (a.bandwidth[0].call_kbps - 80.0).abs() < 1e-9,
            "{:?}",
            a.bandwidth
        );
        assert!(
            a.advice.starts_with("a: at its limit: peak 2 of 2"),
            "{}",
            a.advice
        );
        let z = &rep.trunks[1];
        assert_eq!(z.stats.attempts, 0);
        assert!(
            z.advice.starts_with("z: enough, 10 channels spare"),
            "{}",
            z.advice
        );
    }

    #[test]
    fn an_undersized_trunk_is_told_how_many_channels_to_add() {
        let t0 = 500 * DAY_MS;
        let recs: Vec<crate::record::CallRecord> = (0..100)
            .map(|i| {
                let mut r = record(i, "big");
                r.start_ms = t0;
                r.end_ms = t0 + stats::HOUR_MS;
                r.attempts[0].offset_ms = 0;
                r
            })
            .collect();
        let rep = capacity(
            &recs,
            &[("big".to_owned(), Some(200))],
            0.01,
            0.3,
            0,
            t0 + DAY_MS,
        );
        let big = &rep.trunks[0];
        // 100 E offered, +30 % = 130 E: 1 % GoS needs 149 channels; limit 200: enough.
        assert!((big.stats.offered_erlangs - 100.0).abs() < 1e-9, "{big:?}");
        assert_eq!(big.channels_needed_after_growth, Some(149));
        assert!(
            big.advice.starts_with("big: enough, 51 channels spare"),
            "{}",
            big.advice
        );
        let rep = capacity(
            &recs,
            &[("big".to_owned(), Some(120))],
            0.01,
            0.3,
            0,
            t0 + DAY_MS,
        );
        assert_eq!(
            rep.trunks[0].advice,
            "big: add 29 channels now (busy hour 100.00 E, peak 100, limit 120, 1 % GoS needs 149 at +30 %)"
        );
    }
}
