//! What `/trunks` and `trunkgate ctl trunks` show of trunk health: plain data, serialisable,
//! durations as milliseconds in JSON.

use super::{Health, TrunkState};
use crate::TrunkId;
use serde::Serializer;
use std::time::{Duration, Instant};

/// One trunk's health at the time [`Health::view`] was called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrunkHealth {
    pub trunk: TrunkId,
    pub name: String,
    pub state: TrunkState,
    /// Why it is in that state (`"breaker: 5 consecutive failures"`, `"start"`).
    pub why: String,
    /// How long it has been in that state.
    #[serde(rename = "since_ms", serialize_with = "millis")]
    pub since: Duration,
    /// `"reply 200"`, `"timeout"`, `"transport error"`; `None`: not probed yet (or never).
    pub last_probe: Option<String>,
    #[serde(rename = "last_probe_age_ms", serialize_with = "opt_millis")]
    pub last_probe_age: Option<Duration>,
    /// Round trip of the last probe that got a reply.
    #[serde(rename = "rtt_ms", serialize_with = "opt_millis")]
    pub rtt: Option<Duration>,
    pub probe_successes: u32,
    pub probe_failures: u32,
    /// Consecutive branch failures within the breaker window.
    pub branch_failures: u32,
    /// `Retry-After` time left during which new calls avoid it.
    #[serde(rename = "cooling_ms", serialize_with = "opt_millis")]
    pub cooling: Option<Duration>,
    /// Half-open with its trial call out.
    pub trial_out: bool,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn opt_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis(d, s),
        None => s.serialize_none(),
    }
}

impl Health {
    /// Every trunk's health at `now`, by id.
    pub fn view(&self, now: Instant) -> Vec<TrunkHealth> {
        self.trunks
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| {
                let r = r.as_ref()?;
                let trunk = TrunkId(u16::try_from(slot).ok()?);
                let half_open = r.cooled_down(now);
                Some(TrunkHealth {
                    trunk,
                    name: r.name.clone(),
                    state: if half_open {
                        TrunkState::HalfOpen
                    } else {
                        r.state
                    },
                    why: if half_open {
                        super::ChangeReason::CooldownOver.to_string()
                    } else {
                        r.why.to_string()
                    },
                    since: now.saturating_duration_since(r.since),
                    last_probe: r.last_probe.map(|(o, _, _)| o.to_string()),
                    last_probe_age: r
                        .last_probe
                        .map(|(_, t, _)| now.saturating_duration_since(t)),
                    rtt: r.last_probe.and_then(|(_, _, rtt)| rtt),
                    probe_successes: r.probe_successes,
                    probe_failures: r.probe_failures,
                    branch_failures: u32::try_from(r.failures.len()).unwrap_or(u32::MAX),
                    cooling: r
                        .cooling_until
                        .filter(|&t| t > now)
                        .map(|t| t.saturating_duration_since(now)),
                    trial_out: r.trial_out,
                })
            })
            .collect()
    }
}
