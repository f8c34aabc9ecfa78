//! Trunk health, sans-IO: OPTIONS probe results and call branch outcomes in, trunk states
//! (`Up`, `Down`, `HalfOpen`) out. Every method takes `now`; nothing here reads a clock,
//! opens a socket or arms a timer. The caller (the core's loop) sends the probes that
//! [`Health::due_probes`] names, reports what came back, reports every branch's end, and
//! wakes at [`Health::next_deadline`] to call [`Health::on_timeout`].
//!
//! - **Probes** (a trunk with `probe = { … }`): `down_after` consecutive unreachable
//!   results take it down, `up_after` consecutive reachable ones bring it up. A trunk with
//!   probes comes back only through probes.
//! - **Circuit breaker** (every trunk): `breaker_failures` consecutive branch failures
//!   (timeout, transport error, 408, 5xx) within `breaker_window` take it down. A trunk
//!   with probes comes back through `up_after` good probes once `breaker_cooldown` is
//!   over (so one that answers OPTIONS but fails calls does not flap). A trunk
//!   without probes gets, after `breaker_cooldown`, exactly one trial call (`HalfOpen`):
//!   its success brings the trunk up, its failure takes it down for another cooldown.
//! - **Retry-After**: a `503` with `Retry-After` keeps new calls off the trunk for
//!   min(Retry-After, `retry_after_max`); it is not a state change.
//!
//! Health feeds selection ([`crate::RoutingTable::candidates`] skips unusable trunks); it
//! does not own it. Keyed by [`TrunkId`], so [`Health::rebuild`] keeps state across a new
//! policy.

mod nodes;
mod view;

pub use view::TrunkHealth;

use crate::{RoutingTable, TrunkId};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};
use trunkgate_config::{HealthSettings, Probe};

/// A trunk's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkState {
    Up,
    Down,
    /// Down by the breaker, cooldown over: one trial call may go (or is out).
    HalfOpen,
}

impl fmt::Display for TrunkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrunkState::Up => "up",
            TrunkState::Down => "down",
            TrunkState::HalfOpen => "half-open",
        })
    }
}

/// What one OPTIONS probe got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A final reply with this code; reachable per the probe's `ok_codes` rule.
    Reply(u16),
    /// No final reply within the probe's `timeout`.
    Timeout,
    /// The probe could not be sent or its connection failed.
    TransportError,
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Reply(code) => write!(f, "reply {code}"),
            ProbeOutcome::Timeout => f.write_str("timeout"),
            ProbeOutcome::TransportError => f.write_str("transport error"),
        }
    }
}

/// How a call branch to a trunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchOutcome {
    /// 2xx.
    Answered,
    /// 1xx: the trunk is processing the call; neither success nor failure for the
    /// breaker (a carrier answering `100 Trying` and then `503` must still trip it).
    Provisional,
    /// A final non-2xx. 408 and 500–599 are the trunk failing; 3xx, other 4xx and 6xx are
    /// the callee's answer.
    Final(u16),
    /// No final response (Timer B/C, try-timeout).
    Timeout,
    TransportError,
}

impl BranchOutcome {
    /// `Some(true)`: the trunk failed; `Some(false)`: it worked; `None`: no verdict yet.
    fn failed(self) -> Option<bool> {
        match self {
            BranchOutcome::Provisional => None,
            BranchOutcome::Answered => Some(false),
            BranchOutcome::Final(code) => Some(code == 408 || (500..=599).contains(&code)),
            BranchOutcome::Timeout | BranchOutcome::TransportError => Some(true),
        }
    }
}

/// Why a trunk changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// The state it started in.
    Start,
    ProbesFailed(u32),
    ProbesSucceeded(u32),
    Breaker(u32),
    CooldownOver,
    TrialSucceeded,
    TrialFailed,
    /// A failover drill ended: the trunk is back in the state it had before it.
    DrillEnded,
}

impl fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeReason::Start => f.write_str("start"),
            ChangeReason::ProbesFailed(n) => write!(f, "probe: {n} consecutive failures"),
            ChangeReason::ProbesSucceeded(n) => write!(f, "probe: {n} consecutive successes"),
            ChangeReason::Breaker(n) => write!(f, "breaker: {n} consecutive failures"),
            ChangeReason::CooldownOver => f.write_str("breaker: cooldown over, one trial call"),
            ChangeReason::TrialSucceeded => f.write_str("breaker: trial call succeeded"),
            ChangeReason::TrialFailed => f.write_str("breaker: trial call failed"),
            ChangeReason::DrillEnded => f.write_str("drill ended: state before the drill restored"),
        }
    }
}

/// A trunk went from `old` to `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    pub trunk: TrunkId,
    pub old: TrunkState,
    pub new: TrunkState,
    pub why: ChangeReason,
}

/// The health of one trunk.
#[derive(Debug, Clone)]
struct Record {
    name: String,
    probe: Option<Probe>,
    state: TrunkState,
    why: ChangeReason,
    since: Instant,
    probe_successes: u32,
    probe_failures: u32,
    /// Outcome, when, round-trip time.
    last_probe: Option<(ProbeOutcome, Instant, Option<Duration>)>,
    next_probe: Option<Instant>,
    /// Times of the current run of consecutive branch failures within the window.
    failures: VecDeque<Instant>,
    /// Without probes, down by the breaker: the half-open trial may go from then.
    cooldown_until: Option<Instant>,
    /// HalfOpen: the trial call is out.
    trial_out: bool,
    /// With probes, down by the breaker: probes cannot bring it up before then (a trunk
    /// that answers OPTIONS but fails calls must not flap up every `up_after` probes).
    probe_hold: Option<Instant>,
    /// `Retry-After`: no new calls before then.
    cooling_until: Option<Instant>,
}

impl Record {
    fn new(name: &str, probe: Option<Probe>, now: Instant, first_probe: Duration) -> Record {
        Record {
            name: name.to_owned(),
            next_probe: probe.as_ref().map(|_| now + first_probe),
            probe,
            state: TrunkState::Up,
            why: ChangeReason::Start,
            since: now,
            probe_successes: 0,
            probe_failures: 0,
            last_probe: None,
            failures: VecDeque::new(),
            cooldown_until: None,
            trial_out: false,
            probe_hold: None,
            cooling_until: None,
        }
    }

    /// Down by the breaker without probes, cooldown over, not yet moved to `HalfOpen`.
    fn cooled_down(&self, now: Instant) -> bool {
        self.state == TrunkState::Down && self.cooldown_until.is_some_and(|t| t <= now)
    }
}

/// The health of every trunk of a policy, by [`TrunkId`].
#[derive(Debug, Clone)]
pub struct Health {
    settings: HealthSettings,
    /// `trunks[id]`.
    trunks: Vec<Option<Record>>,
    /// Failed addresses of trunks with several.
    nodes: nodes::Nodes,
}

/// The first probes of the probed trunks are spread by this much each (capped by their
/// interval), so a start does not send them all in the same instant.
const PROBE_SPREAD: Duration = Duration::from_millis(100);

impl Health {
    /// Every trunk of `table` `Up`; the first probe of the k-th probed trunk is due at
    /// `now + k × 100 ms` (the first one at once).
    pub fn new(table: &RoutingTable, settings: &HealthSettings, now: Instant) -> Health {
        let mut health = Health {
            settings: settings.clone(),
            trunks: Vec::new(),
            nodes: nodes::Nodes::default(),
        };
        health.rebuild(table, settings, now);
        health
    }

    /// Take a new policy: trunks whose id stays keep their state, counters and probe
    /// schedule (a probe that appears is due at once); new trunks start `Up`; trunks gone
    /// from `table` are forgotten.
    pub fn rebuild(&mut self, table: &RoutingTable, settings: &HealthSettings, now: Instant) {
        let peers = table
            .trunks()
            .iter()
            .map(|t| (t.id, t.name.as_str(), t.probe.as_ref()));
        self.rebuild_peers(peers, settings, now);
        self.nodes.retain(|id, address| {
            table
                .trunk(id)
                .is_some_and(|t| t.addresses.contains(&address))
        });
    }

    /// The health of the PBX nodes of `table` (by node index, as a [`TrunkId`]): the same
    /// probes, breaker and half-open trials as trunks.
    pub fn for_pbx_nodes(table: &RoutingTable, settings: &HealthSettings, now: Instant) -> Health {
        let mut health = Health {
            settings: settings.clone(),
            trunks: Vec::new(),
            nodes: nodes::Nodes::default(),
        };
        let peers = table.pbx_nodes().iter().enumerate().filter_map(|(i, n)| {
            Some((
                TrunkId(u16::try_from(i).ok()?),
                n.name.as_str(),
                n.probe.as_ref(),
            ))
        });
        health.rebuild_peers(peers, settings, now);
        health
    }

    /// [`Health::rebuild`] over any peers: `(id, name, probe)`.
    pub fn rebuild_peers<'p>(
        &mut self,
        peers: impl IntoIterator<Item = (TrunkId, &'p str, Option<&'p Probe>)>,
        settings: &HealthSettings,
        now: Instant,
    ) {
        self.settings = settings.clone();
        let mut old = std::mem::take(&mut self.trunks);
        let mut probed = 0u32;
        for (id, name, probe) in peers {
            let slot = usize::from(id.0);
            if self.trunks.len() <= slot {
                self.trunks.resize_with(slot + 1, || None);
            }
            let kept = old.get_mut(slot).and_then(Option::take).map(|mut r| {
                if r.probe.is_none() || probe.is_none() {
                    r.next_probe = probe.map(|_| now);
                }
                r.probe = probe.cloned();
                r.name = name.to_owned();
                r
            });
            let record = kept.unwrap_or_else(|| {
                let spread = probe.map_or(Duration::ZERO, |p| {
                    let step = PROBE_SPREAD * probed;
                    if step < p.interval {
                        step
                    } else {
                        Duration::ZERO
                    }
                });
                Record::new(name, probe.cloned(), now, spread)
            });
            if record.probe.is_some() {
                probed += 1;
            }
            if let Some(s) = self.trunks.get_mut(slot) {
                *s = Some(record);
            }
        }
    }

    fn record(&self, trunk: TrunkId) -> Option<&Record> {
        self.trunks.get(usize::from(trunk.0))?.as_ref()
    }

    fn record_mut(&mut self, trunk: TrunkId) -> Option<&mut Record> {
        self.trunks.get_mut(usize::from(trunk.0))?.as_mut()
    }

    /// May a new call go to `trunk` now? Not while it is down (unless its half-open trial
    /// is free), has its trial out, or is cooling down after `Retry-After`. A trunk
    /// health does not know (not in the policy it was built from) is usable.
    pub fn usable(&self, now: Instant, trunk: TrunkId) -> bool {
        let Some(r) = self.record(trunk) else {
            return true;
        };
        if r.cooling_until.is_some_and(|t| t > now) {
            return false;
        }
        match r.state {
            TrunkState::Up => true,
            TrunkState::HalfOpen => !r.trial_out,
            TrunkState::Down => r.cooled_down(now),
        }
    }

    /// The trunk's state at `now` (a cooldown that ended counts as `HalfOpen` even before
    /// [`Health::on_timeout`] ran). `None`: not a trunk of this policy.
    pub fn state(&self, now: Instant, trunk: TrunkId) -> Option<TrunkState> {
        let r = self.record(trunk)?;
        Some(if r.cooled_down(now) {
            TrunkState::HalfOpen
        } else {
            r.state
        })
    }

    fn set(
        r: &mut Record,
        trunk: TrunkId,
        now: Instant,
        new: TrunkState,
        why: ChangeReason,
    ) -> Option<StateChange> {
        let old = r.state;
        if old == new {
            return None;
        }
        r.state = new;
        r.why = why;
        r.since = now;
        tracing::info!(trunk = %r.name, id = trunk.0, %old, %new, why = %why, "trunk state");
        Some(StateChange {
            trunk,
            old,
            new,
            why,
        })
    }

    /// A failover drill on `trunk` ended: put it back in `state` (the one it had when the
    /// drill started) with its probe and breaker counters cleared, as if the drill had
    /// not happened. The next probe is due at once, so a real outage is seen again.
    pub fn restore(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        state: TrunkState,
    ) -> Option<StateChange> {
        let r = self.record_mut(trunk)?;
        r.probe_successes = 0;
        r.probe_failures = 0;
        r.failures.clear();
        r.cooldown_until = None;
        r.trial_out = false;
        r.probe_hold = None;
        if r.probe.is_some() {
            r.next_probe = Some(now);
        }
        Self::set(r, trunk, now, state, ChangeReason::DrillEnded)
    }

    /// A probe of `trunk` ended with `outcome` (`rtt`: its round trip, if it got a reply).
    pub fn on_probe(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        outcome: ProbeOutcome,
        rtt: Option<Duration>,
    ) -> Option<StateChange> {
        let r = self.record_mut(trunk)?;
        let probe = r.probe.as_ref()?;
        let reachable = match outcome {
            ProbeOutcome::Reply(code) => probe.reachable(code),
            ProbeOutcome::Timeout | ProbeOutcome::TransportError => false,
        };
        let (down_after, up_after) = (probe.down_after, probe.up_after);
        r.last_probe = Some((outcome, now, rtt));
        if reachable {
            r.probe_failures = 0;
            r.probe_successes = r.probe_successes.saturating_add(1);
            let held = r.probe_hold.is_some_and(|t| t > now);
            if r.state != TrunkState::Up && r.probe_successes >= up_after && !held {
                r.probe_hold = None;
                r.failures.clear();
                r.cooldown_until = None;
                r.trial_out = false;
                let n = r.probe_successes;
                return Self::set(
                    r,
                    trunk,
                    now,
                    TrunkState::Up,
                    ChangeReason::ProbesSucceeded(n),
                );
            }
        } else {
            r.probe_successes = 0;
            r.probe_failures = r.probe_failures.saturating_add(1);
            if r.state != TrunkState::Down && r.probe_failures >= down_after {
                let n = r.probe_failures;
                return Self::set(
                    r,
                    trunk,
                    now,
                    TrunkState::Down,
                    ChangeReason::ProbesFailed(n),
                );
            }
        }
        None
    }

    /// A call branch to `trunk` ended (or progressed) with `outcome`. Feeds the breaker;
    /// ends a half-open trial on a verdict.
    pub fn on_branch(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        outcome: BranchOutcome,
    ) -> Option<StateChange> {
        let (threshold, window, cooldown) = (
            self.settings.breaker_failures,
            self.settings.breaker_window,
            self.settings.breaker_cooldown,
        );
        let r = self.record_mut(trunk)?;
        let failed = outcome.failed()?;
        if r.cooled_down(now) {
            // A call that went before on_timeout moved it: it is the trial.
            Self::set(
                r,
                trunk,
                now,
                TrunkState::HalfOpen,
                ChangeReason::CooldownOver,
            );
        }
        if !failed {
            r.failures.clear();
            if r.state == TrunkState::HalfOpen {
                r.trial_out = false;
                r.cooldown_until = None;
                return Self::set(r, trunk, now, TrunkState::Up, ChangeReason::TrialSucceeded);
            }
            return None;
        }
        if r.state == TrunkState::HalfOpen {
            r.trial_out = false;
            r.failures.clear();
            r.cooldown_until = Some(now + cooldown);
            return Self::set(r, trunk, now, TrunkState::Down, ChangeReason::TrialFailed);
        }
        while r
            .failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > window)
        {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
        let n = u32::try_from(r.failures.len()).unwrap_or(u32::MAX);
        if n < threshold {
            return None;
        }
        r.failures.clear();
        if r.state != TrunkState::Up {
            return None;
        }
        if r.probe.is_some() {
            // Back only through probes: up_after fresh successes once the cooldown is over.
            r.probe_successes = 0;
            r.probe_hold = Some(now + cooldown);
        } else {
            r.cooldown_until = Some(now + cooldown);
        }
        Self::set(r, trunk, now, TrunkState::Down, ChangeReason::Breaker(n))
    }

    /// A call is going to half-open `trunk` as its trial: no other call may until the
    /// trial's outcome reaches [`Health::on_branch`].
    pub fn trial_started(&mut self, now: Instant, trunk: TrunkId) -> Option<StateChange> {
        let r = self.record_mut(trunk)?;
        let change = if r.cooled_down(now) {
            Self::set(
                r,
                trunk,
                now,
                TrunkState::HalfOpen,
                ChangeReason::CooldownOver,
            )
        } else {
            None
        };
        if r.state == TrunkState::HalfOpen {
            r.trial_out = true;
        }
        change
    }

    /// A `503` from `trunk` carried `Retry-After: secs`: no new calls to it for
    /// min(secs, `retry_after_max`). Returns that duration (zero when `retry_after_max` is
    /// zero: ignored). A longer cooling already running is kept.
    pub fn retry_after(&mut self, now: Instant, trunk: TrunkId, secs: u32) -> Duration {
        let cap = self.settings.retry_after_max;
        let Some(r) = self.record_mut(trunk) else {
            return Duration::ZERO;
        };
        let d = Duration::from_secs(u64::from(secs)).min(cap);
        if !d.is_zero() {
            let until = now + d;
            r.cooling_until = Some(r.cooling_until.map_or(until, |t| t.max(until)));
        }
        d
    }

    /// Cooldowns that ended move their trunks to `HalfOpen` (pushed to `changes`);
    /// `Retry-After` coolings that ended are cleared. Call at [`Health::next_deadline`].
    pub fn on_timeout(&mut self, now: Instant, changes: &mut Vec<StateChange>) {
        for (slot, r) in self.trunks.iter_mut().enumerate() {
            let Some(r) = r.as_mut() else { continue };
            let trunk = TrunkId(u16::try_from(slot).unwrap_or(u16::MAX));
            if r.cooling_until.is_some_and(|t| t <= now) {
                r.cooling_until = None;
            }
            if r.cooled_down(now) {
                changes.extend(Self::set(
                    r,
                    trunk,
                    now,
                    TrunkState::HalfOpen,
                    ChangeReason::CooldownOver,
                ));
            }
        }
    }

    /// Push each probed trunk whose probe is due at `now` into `out`, and schedule its
    /// next one at `now + interval`.
    pub fn due_probes(&mut self, now: Instant, out: &mut Vec<TrunkId>) {
        for (slot, r) in self.trunks.iter_mut().enumerate() {
            let Some(r) = r.as_mut() else { continue };
            let (Some(probe), Some(due)) = (&r.probe, r.next_probe) else {
                continue;
            };
            if due <= now {
                out.push(TrunkId(u16::try_from(slot).unwrap_or(u16::MAX)));
                r.next_probe = Some(now + probe.interval);
            }
        }
    }

    /// The earliest next probe or cooldown end, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.trunks
            .iter()
            .flatten()
            .flat_map(|r| {
                let cooldown = r.cooldown_until.filter(|_| r.state == TrunkState::Down);
                [r.next_probe, cooldown]
            })
            .flatten()
            .min()
    }

    /// How long a probe of `trunk` waits for its reply; `None`: not probed.
    pub fn probe_timeout(&self, trunk: TrunkId) -> Option<Duration> {
        self.record(trunk)?.probe.as_ref().map(|p| p.timeout)
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests;
