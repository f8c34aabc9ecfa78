//! Failover and trunk health: a trunk's `weight` and `probe = { … }`, a route's
//! `failover_on`, `try_timeout`, `max_attempts` and `setup_timeout`, and `[health]` (the
//! circuit breaker and `Retry-After`). Every key is optional.

use super::Check;
use crate::Failover;
use crate::raw::{Field, RawHealth, RawProbe, RawRoute, Value};
use crate::{HealthSettings, Probe};
use std::ops::RangeInclusive;
use std::time::Duration;
use toml::Spanned;

pub(crate) mod defaults {
    pub const WEIGHT: u32 = 1;
    pub const MAX_WEIGHT: u32 = 1_000_000;
    pub const PROBE_INTERVAL: &str = "10s";
    pub const PROBE_TIMEOUT: &str = "2s";
    pub const PROBE_DOWN_AFTER: u32 = 3;
    pub const PROBE_UP_AFTER: u32 = 2;
    pub const FAILOVER_ON: &[u16] = &[408, 480, 500, 502, 503, 504];
    pub const TRY_TIMEOUT: &str = "3s";
    pub const MAX_ATTEMPTS: u32 = 3;
    pub const SETUP_TIMEOUT: &str = "30s";
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_WINDOW: &str = "60s";
    pub const BREAKER_COOLDOWN: &str = "30s";
    pub const RETRY_AFTER_MAX: &str = "300s";
}

/// A route's (or `[pbx]`'s) failover keys, as written.
pub(super) struct FailoverFields<'a> {
    pub failover_on: Option<&'a Field>,
    pub try_timeout: Option<&'a Field>,
    pub max_attempts: Option<&'a Field>,
    pub setup_timeout: Option<&'a Field>,
}

impl<'a> FailoverFields<'a> {
    pub fn of_route(r: &'a RawRoute) -> FailoverFields<'a> {
        FailoverFields {
            failover_on: r.failover_on.as_ref(),
            try_timeout: r.try_timeout.as_ref(),
            max_attempts: r.max_attempts.as_ref(),
            setup_timeout: r.setup_timeout.as_ref(),
        }
    }
}

const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(200);
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
const MIN_TRY_TIMEOUT: Duration = Duration::from_millis(500);
const SECOND: Duration = Duration::from_secs(1);

impl Check<'_, '_> {
    /// `weight` of trunk `name` (1 unless written).
    pub(super) fn trunk_weight(&mut self, f: Option<&Field>, name: &str) -> u32 {
        self.count(
            f,
            &format!("trunk \"{name}\" weight"),
            1..=defaults::MAX_WEIGHT,
            defaults::WEIGHT,
        )
    }

    /// `probe = { … }` of `owner` (`trunk "a"`, `pbx`, `pbx.node "b"`); `None` when absent
    /// (no probes).
    pub(super) fn probe(&mut self, raw: Option<&Spanned<RawProbe>>, owner: &str) -> Option<Probe> {
        let t = raw?.get_ref();
        let what = |key: &str| format!("{owner} probe.{key}");
        let (interval, interval_at) = self.duration(
            t.interval.as_ref(),
            &what("interval"),
            defaults::PROBE_INTERVAL,
        );
        if let (true, Some(at)) = (interval < MIN_PROBE_INTERVAL, &interval_at) {
            self.report.error(
                at,
                format!(
                    "{} ({interval:?}) is shorter than 200ms",
                    what("interval")
                ),
                Some("each probe is an OPTIONS request to the trunk: write e.g. \"10s\" (at least \"200ms\")".into()),
            );
        }
        let timeout = match &t.timeout {
            // Never longer than the interval: one probe in flight at a time.
            None => values_min(defaults::PROBE_TIMEOUT, interval),
            Some(f) => {
                let (timeout, at) =
                    self.duration(Some(f), &what("timeout"), defaults::PROBE_TIMEOUT);
                if let Some(at) = at {
                    if timeout < MIN_PROBE_TIMEOUT {
                        self.report.error(
                            &at,
                            format!("{} ({timeout:?}) is shorter than 100ms", what("timeout")),
                            Some("a reply needs a round trip: write e.g. \"2s\" (at least \"100ms\")".into()),
                        );
                    } else if timeout > interval {
                        self.report.error(
                            &at,
                            format!(
                                "{} ({timeout:?}) is longer than probe.interval ({interval:?})",
                                what("timeout")
                            ),
                            Some(format!(
                                "a probe must end before the next one starts: make timeout at most {interval:?}, or raise interval"
                            )),
                        );
                    }
                }
                timeout
            }
        };
        let down_after = self.count(
            t.down_after.as_ref(),
            &what("down_after"),
            1..=100,
            defaults::PROBE_DOWN_AFTER,
        );
        let up_after = self.count(
            t.up_after.as_ref(),
            &what("up_after"),
            1..=100,
            defaults::PROBE_UP_AFTER,
        );
        let ok_codes = t.ok_codes.as_ref().map(|f| {
            let what = what("ok_codes");
            let codes = self
                .codes(
                    f,
                    &what,
                    100..=699,
                    "write SIP reply codes 100–699 that mean the trunk is there, e.g. [200, 404, 405]; leave ok_codes out for the default (200–499 except 408)",
                )
                .unwrap_or_default();
            if matches!(&f.value, Value::Array(a) if a.is_empty()) {
                self.report.error(
                    &f.at,
                    format!("{what} is empty"),
                    Some("no reply would count as reachable: name at least one code, e.g. [200], or leave ok_codes out".into()),
                );
            }
            codes
        });
        Some(Probe {
            interval,
            timeout,
            down_after,
            up_after,
            ok_codes,
        })
    }

    /// `failover_on`, `try_timeout`, `max_attempts` and `setup_timeout` of `owner`
    /// (`route "default"`, `pbx`).
    pub(super) fn failover(&mut self, r: &FailoverFields<'_>, owner: &str) -> Failover {
        let what = |key: &str| format!("{owner} {key}");
        let failover_on = match r.failover_on {
            None => defaults::FAILOVER_ON.to_vec(),
            Some(f) => self
                .codes(
                    f,
                    &what("failover_on"),
                    300..=699,
                    "failover_on lists final responses 300–699 from a trunk, e.g. [408, 480, 500, 502, 503, 504]; timeouts and transport errors always fail over",
                )
                .unwrap_or_else(|| defaults::FAILOVER_ON.to_vec()),
        };
        let max_attempts = self.count(
            r.max_attempts,
            &what("max_attempts"),
            1..=16,
            defaults::MAX_ATTEMPTS,
        );
        let (setup_timeout, setup_at) = self.duration(
            r.setup_timeout,
            &what("setup_timeout"),
            defaults::SETUP_TIMEOUT,
        );
        if let (true, Some(at)) = (setup_timeout < SECOND, &setup_at) {
            self.report.error(
                at,
                format!(
                    "{} ({setup_timeout:?}) is shorter than a second",
                    what("setup_timeout")
                ),
                Some(
                    "it bounds the whole search for a trunk: write e.g. \"30s\" (at least \"1s\")"
                        .into(),
                ),
            );
        }
        let (try_timeout, try_at) =
            self.duration(r.try_timeout, &what("try_timeout"), defaults::TRY_TIMEOUT);
        if let Some(at) = &try_at {
            if !try_timeout.is_zero() && try_timeout < MIN_TRY_TIMEOUT {
                self.report.error(
                    at,
                    format!(
                        "{} ({try_timeout:?}) is shorter than 500ms",
                        what("try_timeout")
                    ),
                    Some("a trunk needs a round trip to answer 100 Trying: write e.g. \"3s\" (at least \"500ms\"), or \"0s\" to turn it off".into()),
                );
            } else if try_timeout >= setup_timeout {
                self.report.error(
                    at,
                    format!(
                        "{} ({try_timeout:?}) is not shorter than setup_timeout ({setup_timeout:?})",
                        what("try_timeout")
                    ),
                    Some(format!(
                        "the next trunk could never be tried: make try_timeout shorter than {setup_timeout:?}, or \"0s\" to turn it off"
                    )),
                );
            }
        } else if try_timeout >= setup_timeout {
            // The default 3 s against a written setup_timeout.
            if let Some(at) = &setup_at {
                self.report.error(
                    at,
                    format!(
                        "{} ({setup_timeout:?}) is not longer than try_timeout ({try_timeout:?}, the default)",
                        what("setup_timeout")
                    ),
                    Some("raise setup_timeout, or set try_timeout below it (\"0s\" turns it off)".into()),
                );
            }
        }
        Failover {
            failover_on,
            try_timeout: (!try_timeout.is_zero()).then_some(try_timeout),
            max_attempts,
            setup_timeout,
        }
    }

    pub(super) fn health(&mut self, raw: Option<&Spanned<RawHealth>>) -> HealthSettings {
        let empty = RawHealth::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let breaker_failures = self.count(
            t.breaker_failures.as_ref(),
            "health.breaker_failures",
            1..=100,
            defaults::BREAKER_FAILURES,
        );
        let at_least_a_second = |c: &mut Self, f: Option<&Field>, what: &str, default| {
            let (d, at) = c.duration(f, what, default);
            if let (true, Some(at)) = (d < SECOND, at) {
                c.report.error(
                    &at,
                    format!("{what} ({d:?}) is shorter than a second"),
                    Some(format!("write e.g. \"{default}\" (at least \"1s\")")),
                );
            }
            d
        };
        let breaker_window = at_least_a_second(
            self,
            t.breaker_window.as_ref(),
            "health.breaker_window",
            defaults::BREAKER_WINDOW,
        );
        let breaker_cooldown = at_least_a_second(
            self,
            t.breaker_cooldown.as_ref(),
            "health.breaker_cooldown",
            defaults::BREAKER_COOLDOWN,
        );
        let (retry_after_max, _) = self.duration(
            t.retry_after_max.as_ref(),
            "health.retry_after_max",
            defaults::RETRY_AFTER_MAX,
        );
        HealthSettings {
            breaker_failures,
            breaker_window,
            breaker_cooldown,
            retry_after_max,
        }
    }

    /// An array of SIP response codes within `range`; reports each bad element (with
    /// `hint`) and returns the good ones. `None`: not an array at all.
    fn codes(
        &mut self,
        f: &Field,
        what: &str,
        range: RangeInclusive<u16>,
        hint: &str,
    ) -> Option<Vec<u16>> {
        let Value::Array(items) = &f.value else {
            self.wrong_type(f, what, "an array of integers", Some(hint));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.value {
                Value::Int(n) => match u16::try_from(n).ok().filter(|c| range.contains(c)) {
                    Some(code) => out.push(code),
                    None => self.report.error(
                        &item.at,
                        format!(
                            "{what}: {n} is not a code in {}–{}",
                            range.start(),
                            range.end()
                        ),
                        Some(hint.to_owned()),
                    ),
                },
                _ => self.wrong_type(
                    item,
                    &format!("each entry of {what}"),
                    "an integer",
                    Some(hint),
                ),
            }
        }
        Some(out)
    }
}

/// The shorter of the duration `text` (a valid default) and `cap`.
fn values_min(text: &str, cap: Duration) -> Duration {
    crate::values::duration(text).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests;
