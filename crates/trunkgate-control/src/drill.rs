//! Failover drills: an overlay on trunk health and limits with an expiry, never an edit of
//! the policy. A drill names one trunk and a [`DrillMode`]; routing asks [`Drills::mode`]
//! per new call (down/drain skip the trunk, reject-503 answers it locally, cap=N lowers its
//! session limit), the health feed asks it per probe result (down: ignored, probe-fail:
//! forced to fail). Plain data and sans-IO: every method takes `now` (and the wall-clock
//! time in Unix milliseconds where a report needs one); the caller's timer calls
//! [`Drills::expire`] at [`Drills::next_deadline`].
//!
//! While a drill runs it counts what happened to the calls whose route holds its trunk:
//! attempts, which trunk carried them, failures, failovers, rejects by final code, and
//! setup times (p50/p95) against the ten minutes before it started. The last
//! [`REPORTS_KEPT`] reports are kept in memory.

use crate::health::TrunkState;
use crate::{RoutingTable, TrunkId};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Reports kept (oldest dropped first).
pub const REPORTS_KEPT: usize = 20;
/// Setup times are compared against this long before a drill starts.
pub const BEFORE_WINDOW: Duration = Duration::from_secs(600);
/// Most setup times remembered for the "before" figures (the newest are kept).
const SETUPS_KEPT: usize = 65_536;
/// Most calls one drill follows at once, and most setup times it keeps.
const DRILL_CALLS_KEPT: usize = 200_000;

/// What a drill does to its trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrillMode {
    /// The trunk counts as failed: no new calls; probe results are ignored.
    Down,
    /// No new calls; established calls carry on.
    Drain,
    /// Trunkgate answers each branch to the trunk with 503 itself, as if the trunk had:
    /// the route's real failover path runs.
    Reject503,
    /// `max_sessions` lowered to N (never raised); calls above it are not cut.
    Cap(u32),
    /// Every probe result counts as a failure, so health reacts as to a real outage.
    ProbeFail,
}

impl fmt::Display for DrillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrillMode::Down => f.write_str("down"),
            DrillMode::Drain => f.write_str("drain"),
            DrillMode::Reject503 => f.write_str("reject-503"),
            DrillMode::Cap(n) => write!(f, "cap={n}"),
            DrillMode::ProbeFail => f.write_str("probe-fail"),
        }
    }
}

impl FromStr for DrillMode {
    type Err = String;
    fn from_str(s: &str) -> Result<DrillMode, String> {
        match s {
            "down" => Ok(DrillMode::Down),
            "drain" => Ok(DrillMode::Drain),
            "reject-503" => Ok(DrillMode::Reject503),
            "probe-fail" => Ok(DrillMode::ProbeFail),
            _ => match s.strip_prefix("cap=").map(str::parse::<u32>) {
                Some(Ok(n)) => Ok(DrillMode::Cap(n)),
                Some(Err(_)) => Err(format!(
                    "`{s}`: cap=N needs a whole number of sessions, e.g. cap=5"
                )),
                None => Err(format!(
                    "`{s}` is not a drill mode; write down, drain, reject-503, cap=N or probe-fail"
                )),
            },
        }
    }
}

impl DrillMode {
    /// Does the trunk still take new calls of its own under this mode (at some capacity)?
    pub fn takes_calls(self) -> bool {
        matches!(self, DrillMode::Cap(n) if n > 0)
    }
}

/// Why a drill could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrillError {
    #[error("trunk \"{0}\" already has a drill running (stop it first)")]
    Busy(String),
    #[error("a drill needs a duration (--for), more than zero")]
    NoDuration,
    #[error("--for {asked:?} is longer than drill.max_duration ({max:?})")]
    TooLong { asked: Duration, max: Duration },
}

/// Setup-time figures of a set of answered calls, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SetupFigures {
    pub calls: u64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

impl SetupFigures {
    fn of(mut times: Vec<Duration>) -> SetupFigures {
        times.sort_unstable();
        let pick = |q: f64| -> Option<u64> {
            if times.is_empty() {
                return None;
            }
            let rank = ((times.len() as f64) * q).ceil() as usize;
            let i = rank.clamp(1, times.len()) - 1;
            times
                .get(i)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        SetupFigures {
            calls: times.len() as u64,
            p50_ms: pick(0.50),
            p95_ms: pick(0.95),
        }
    }
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillEnd {
    Running,
    Expired,
    Stopped,
    /// The process shut down.
    Shutdown,
}

/// What one drill did, for `ctl drill report`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DrillReport {
    pub id: u64,
    pub trunk: String,
    pub mode: String,
    /// Who started it: `token:<id>` or `local`.
    pub started_by: String,
    pub started_unix_ms: u64,
    /// Planned end while it runs; the real end after.
    pub ends_unix_ms: u64,
    pub end: DrillEnd,
    /// New calls on a route that holds the trunk, during the drill.
    pub calls_attempted: u64,
    /// Of those, answered, by the trunk that carried them.
    pub carried_by: BTreeMap<String, u64>,
    /// Answered by another trunk than the drilled one.
    pub rerouted: u64,
    /// Not answered (the caller got a final error).
    pub failed: u64,
    /// Branches that moved on to the next candidate.
    pub failovers: u64,
    /// Final codes the callers got for failed calls (`"503"`, `"cancelled"`, …).
    pub rejects: BTreeMap<String, u64>,
    pub setup_before: SetupFigures,
    pub setup_during: SetupFigures,
}

/// One running drill.
#[derive(Debug, Clone)]
pub struct Drill {
    pub trunk: TrunkId,
    pub mode: DrillMode,
    pub started: Instant,
    pub until: Instant,
    /// The trunk's health state when the drill started (restored at its end).
    pub state_before: Option<TrunkState>,
    report: DrillReport,
    /// Dialogs attempted during the drill on a route that holds the trunk.
    calls: HashSet<u64>,
    setups: Vec<Duration>,
}

impl Drill {
    pub fn report(&self) -> &DrillReport {
        &self.report
    }

    /// Time left at `now`.
    pub fn left(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }
}

/// Running drills (at most one per trunk) and the reports of ended ones.
#[derive(Debug, Default)]
pub struct Drills {
    active: Vec<Drill>,
    reports: VecDeque<DrillReport>,
    next_id: u64,
    /// Answered calls' setup times, newest last, for the "before" figures.
    setups: VecDeque<(Instant, Duration)>,
}

/// What starting a drill needs.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub trunk: TrunkId,
    pub trunk_name: String,
    pub mode: DrillMode,
    pub duration: Duration,
    pub started_by: String,
    /// `drill.max_duration`.
    pub max_duration: Duration,
    pub state_before: Option<TrunkState>,
}

impl Drills {
    /// Start a drill at `now` (`wall_ms`: the same instant in Unix milliseconds).
    pub fn start(
        &mut self,
        now: Instant,
        wall_ms: u64,
        request: DrillRequest,
    ) -> Result<&Drill, DrillError> {
        if request.duration.is_zero() {
            return Err(DrillError::NoDuration);
        }
        if request.duration > request.max_duration {
            return Err(DrillError::TooLong {
                asked: request.duration,
                max: request.max_duration,
            });
        }
        if self.active.iter().any(|d| d.trunk == request.trunk) {
            return Err(DrillError::Busy(request.trunk_name));
        }
        self.next_id += 1;
        let since = now.checked_sub(BEFORE_WINDOW);
        let before: Vec<Duration> = self
            .setups
            .iter()
            .filter(|(t, _)| since.is_none_or(|s| *t >= s))
            .map(|(_, d)| *d)
            .collect();
        let duration_ms = u64::try_from(request.duration.as_millis()).unwrap_or(u64::MAX);
        let drill = Drill {
            trunk: request.trunk,
            mode: request.mode,
            started: now,
            until: now + request.duration,
            state_before: request.state_before,
            report: DrillReport {
                id: self.next_id,
                trunk: request.trunk_name,
                mode: request.mode.to_string(),
                started_by: request.started_by,
                started_unix_ms: wall_ms,
                ends_unix_ms: wall_ms.saturating_add(duration_ms),
                end: DrillEnd::Running,
                calls_attempted: 0,
                carried_by: BTreeMap::new(),
                rerouted: 0,
                failed: 0,
                failovers: 0,
                rejects: BTreeMap::new(),
                setup_before: SetupFigures::of(before),
                setup_during: SetupFigures::default(),
            },
            calls: HashSet::new(),
            setups: Vec::new(),
        };
        self.active.push(drill);
        self.active.last().ok_or(DrillError::NoDuration)
    }

    /// The mode of the drill running on `trunk`, if any.
    #[inline]
    pub fn mode(&self, trunk: TrunkId) -> Option<DrillMode> {
        self.active
            .iter()
            .find(|d| d.trunk == trunk)
            .map(|d| d.mode)
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn active(&self) -> &[Drill] {
        &self.active
    }

    /// When the next drill expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.active.iter().map(|d| d.until).min()
    }

    /// End every drill whose time is up; their finished reports, oldest first.
    pub fn expire(&mut self, now: Instant, wall_ms: u64) -> Vec<(Drill, DrillReport)> {
        self.end_where(wall_ms, DrillEnd::Expired, |d| d.until <= now)
    }

    /// Stop the drill on `trunk` (`None`: every drill).
    pub fn stop(&mut self, wall_ms: u64, trunk: Option<TrunkId>) -> Vec<(Drill, DrillReport)> {
        self.end_where(wall_ms, DrillEnd::Stopped, |d| {
            trunk.is_none_or(|t| d.trunk == t)
        })
    }

    /// The process is shutting down: end every drill.
    pub fn shutdown(&mut self, wall_ms: u64) -> Vec<(Drill, DrillReport)> {
        self.end_where(wall_ms, DrillEnd::Shutdown, |_| true)
    }

    fn end_where(
        &mut self,
        wall_ms: u64,
        end: DrillEnd,
        pick: impl Fn(&Drill) -> bool,
    ) -> Vec<(Drill, DrillReport)> {
        let mut ended = Vec::new();
        let mut i = 0;
        while i < self.active.len() {
            if self.active.get(i).is_some_and(&pick) {
                let mut drill = self.active.swap_remove(i);
                let mut report = drill.report.clone();
                report.end = end;
                report.ends_unix_ms = wall_ms;
                report.setup_during = SetupFigures::of(std::mem::take(&mut drill.setups));
                self.reports.push_back(report.clone());
                while self.reports.len() > REPORTS_KEPT {
                    self.reports.pop_front();
                }
                ended.push((drill, report));
            } else {
                i += 1;
            }
        }
        ended.sort_by_key(|(_, r)| r.id);
        ended
    }

    /// The report of drill `id` (running or ended), or the latest one for `None`.
    pub fn report(&self, id: Option<u64>) -> Option<DrillReport> {
        let running = self.active.iter().map(Drill::current_report);
        let all: Vec<DrillReport> = self.reports.iter().cloned().chain(running).collect();
        match id {
            Some(id) => all.into_iter().find(|r| r.id == id),
            None => all.into_iter().max_by_key(|r| r.id),
        }
    }

    /// Every kept report, ended ones oldest first, then running ones.
    pub fn reports(&self) -> Vec<DrillReport> {
        self.reports
            .iter()
            .cloned()
            .chain(self.active.iter().map(Drill::current_report))
            .collect()
    }

    // ---- Accounting, from the core's events ----

    /// A new call `dialog` took a route whose trunks are `route_trunks`.
    pub fn call_attempt(&mut self, dialog: u64, route_trunks: &[TrunkId]) {
        for d in &mut self.active {
            if route_trunks.contains(&d.trunk) && d.calls.len() < DRILL_CALLS_KEPT {
                d.calls.insert(dialog);
                d.report.calls_attempted += 1;
            }
        }
    }

    /// A branch of `dialog` moved on to the next candidate.
    pub fn failover(&mut self, dialog: Option<u64>) {
        let Some(dialog) = dialog else { return };
        for d in &mut self.active {
            if d.calls.contains(&dialog) {
                d.report.failovers += 1;
            }
        }
    }

    /// Call `dialog` was answered by `trunk` (named `name`) after `setup`.
    pub fn call_answered(
        &mut self,
        now: Instant,
        dialog: u64,
        trunk: Option<(TrunkId, &str)>,
        setup: Duration,
    ) {
        self.setups.push_back((now, setup));
        while self.setups.len() > SETUPS_KEPT
            || self
                .setups
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > BEFORE_WINDOW)
        {
            self.setups.pop_front();
        }
        for d in &mut self.active {
            if !d.calls.remove(&dialog) {
                continue;
            }
            if d.setups.len() < DRILL_CALLS_KEPT {
                d.setups.push(setup);
            }
            let name = trunk.map_or("none", |(_, n)| n);
            *d.report.carried_by.entry(name.to_owned()).or_default() += 1;
            if trunk.is_some_and(|(id, _)| id != d.trunk) {
                d.report.rerouted += 1;
            }
        }
    }

    /// Call `dialog` ended before an answer; the caller got `why` (`"503"`, `"cancelled"`).
    pub fn call_failed(&mut self, dialog: u64, why: &str) {
        for d in &mut self.active {
            if d.calls.remove(&dialog) {
                d.report.failed += 1;
                *d.report.rejects.entry(why.to_owned()).or_default() += 1;
            }
        }
    }

    /// Call `dialog` ended after its answer (nothing to count; frees its entry).
    pub fn call_ended(&mut self, dialog: u64) {
        for d in &mut self.active {
            d.calls.remove(&dialog);
        }
    }
}

impl Drill {
    /// The report so far, setup figures included.
    pub fn current_report(&self) -> DrillReport {
        let mut report = self.report.clone();
        report.setup_during = SetupFigures::of(self.setups.clone());
        report
    }
}

/// What a drill would do to one route, now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteImpact {
    pub route: String,
    /// Its other trunks that would still take calls (healthy, not in a drill).
    pub trunks_left: Vec<String>,
    /// No healthy trunk left: the route's calls would fail.
    pub empty: bool,
    /// Free sessions on the trunks left (`None`: at least one has no limit).
    pub capacity_left: Option<u64>,
}

/// The answer of a dry run: per route holding the trunk, and the trunk's load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DryRun {
    pub trunk: String,
    pub mode: String,
    pub routes: Vec<RouteImpact>,
    /// Calls on the trunk now, and its peak in the last hour: what would move.
    pub concurrency_now: u32,
    pub peak_last_hour: u32,
    /// Calls that would move (beyond cap=N for a cap drill).
    pub moving_now: u32,
    pub moving_at_peak: u32,
    /// Every route keeps a trunk and room for `moving_now` (`moving_at_peak`) calls.
    pub enough_now: bool,
    pub enough_at_peak: bool,
}

impl DryRun {
    /// The routes that would be left without a healthy trunk.
    pub fn empty_routes(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| r.empty)
            .map(|r| r.route.as_str())
            .collect()
    }
}

/// What drill `mode` on `trunk` would do now: which routes would have no trunk left, and
/// the room on the others against the trunk's calls now and its last hour's peak.
/// `usable`: may a new call go to that trunk now (health and other drills);
/// `sessions`/`peak`: its calls now / peak in the last hour.
pub fn dry_run(
    table: &RoutingTable,
    trunk: TrunkId,
    mode: DrillMode,
    usable: &dyn Fn(TrunkId) -> bool,
    sessions: &dyn Fn(TrunkId) -> u32,
    peak: u32,
) -> DryRun {
    let name = |id: TrunkId| {
        table
            .trunk(id)
            .map_or_else(|| format!("#{id}"), |t| t.name.clone())
    };
    let now_calls = sessions(trunk);
    let kept = match mode {
        DrillMode::Cap(n) => n,
        _ => 0,
    };
    let moving_now = now_calls.saturating_sub(kept);
    let moving_at_peak = peak.max(now_calls).saturating_sub(kept);
    let mut routes = Vec::new();
    for route in table.routes().iter().filter(|r| r.trunks.contains(&trunk)) {
        let left: Vec<TrunkId> = route
            .trunks
            .iter()
            .copied()
            .filter(|&id| id != trunk && usable(id))
            .collect();
        let mut capacity: Option<u64> = Some(0);
        for &id in &left {
            let limit = table.trunk(id).and_then(|t| t.max_sessions);
            capacity = match (capacity, limit) {
                (Some(c), Some(l)) => Some(c + u64::from(l.saturating_sub(sessions(id)))),
                _ => None,
            };
        }
        if mode.takes_calls() {
            if let (Some(c), DrillMode::Cap(n)) = (capacity, mode) {
                capacity = Some(c + u64::from(n.saturating_sub(now_calls)));
            }
        }
        routes.push(RouteImpact {
            route: route.name.clone(),
            trunks_left: left.iter().map(|&id| name(id)).collect(),
            empty: left.is_empty() && !mode.takes_calls(),
            capacity_left: capacity,
        });
    }
    let room = |moving: u32| {
        routes
            .iter()
            .all(|r| !r.empty && r.capacity_left.is_none_or(|c| c >= u64::from(moving)))
    };
    DryRun {
        trunk: name(trunk),
        mode: mode.to_string(),
        enough_now: room(moving_now),
        enough_at_peak: room(moving_at_peak),
        routes,
        concurrency_now: now_calls,
        peak_last_hour: peak,
        moving_now,
        moving_at_peak,
    }
}

#[cfg(test)]
mod tests;
