//! Helpers of tests/e2e_records.rs: per-call times from SIPp's message logs, the same
//! peak and busy-hour figures computed from them, SIPp's clock against UTC, and the flood's
//! INVITE.

use super::common::sipp::LoggedMessage;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

pub fn call_id(m: &LoggedMessage) -> Option<&str> {
    m.header("Call-ID").or_else(|| m.header("i"))
}

/// Call-IDs of the INVITEs a UAC sent.
pub fn sent_calls(log: &[LoggedMessage]) -> HashSet<String> {
    log.iter()
        .filter(|m| m.sent && m.is_request("INVITE"))
        .filter_map(|m| call_id(m).map(str::to_owned))
        .collect()
}

/// Per call a UAS saw: (first INVITE received, BYE received), SIPp's clock, seconds.
pub fn holds(log: &[LoggedMessage]) -> HashMap<String, (f64, f64)> {
    let mut invite: HashMap<String, f64> = HashMap::new();
    let mut out = HashMap::new();
    for m in log.iter().filter(|m| !m.sent) {
        let Some(id) = call_id(m) else { continue };
        if m.is_request("INVITE") {
            invite.entry(id.to_owned()).or_insert(m.time);
        } else if m.is_request("BYE") {
            if let Some(&start) = invite.get(id) {
                out.entry(id.to_owned()).or_insert((start, m.time));
            }
        }
    }
    out
}

/// Highest number of `intervals` up at once (an end before a start at the same instant).
pub fn peak(intervals: &[(f64, f64)]) -> u32 {
    let mut events: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    events.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        best = best.max(now);
    }
    u32::try_from(best).unwrap_or(0)
}

/// Erlangs the intervals carry in `[from, from + 3600)` (seconds, one clock).
pub fn erlangs_in_hour(intervals: &[(f64, f64)], from: f64) -> f64 {
    intervals
        .iter()
        .map(|&(a, b)| (b.min(from + 3600.0) - a.max(from)).max(0.0))
        .sum::<f64>()
        / 3600.0
}

/// SIPp's log clock is local wall time read as UTC: the offset to UTC, from one event
/// seen by both (a whole number of quarter hours).
pub fn sipp_offset(sipp_seconds: f64, utc_ms: i64) -> f64 {
    ((sipp_seconds - utc_ms as f64 / 1000.0) / 900.0).round() * 900.0
}

pub fn within(got: f64, want: f64, share: f64) -> bool {
    (got - want).abs() <= want.abs() * share
}

/// INVITE `i` of the flood, from `source` to `target`, to `user`.
pub fn flood_invite(source: SocketAddr, target: SocketAddr, user: &str, i: u64) -> Vec<u8> {
    format!(
        "INVITE sip:{user}@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {source};branch=z9hG4bK-flood-{i}\r\n\
         From: <sip:flood@{source}>;tag=f{i}\r\n\
         To: <sip:{user}@{target}>\r\n\
         Call-ID: flood-{i}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{source}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        ip = source.ip()
    )
    .into_bytes()
}
