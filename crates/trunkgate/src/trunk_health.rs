//! Trunk health in the running process: the core's events (branch outcomes, probe results)
//! feed the control crate's [`Health`]; a state change becomes one log line and two metrics;
//! due probes become OPTIONS sent by the core. [`TrunkHealthFeed`] runs on the core thread,
//! between two inputs, so routing sees a change before the next INVITE.
//!
//! Metrics (prometheus-client families, registered once at start):
//! `trunkgate_failovers_total{route,trunk,reason}`, `trunkgate_trunk_up{trunk}`,
//! `trunkgate_trunk_state_changes_total{trunk}`, `trunkgate_trunk_attempts_total{trunk}`,
//! `trunkgate_trunk_answered_total{trunk}` (answer-seizure ratio = answered / attempts),
//! `trunkgate_trunk_setup_seconds{trunk,stage="provisional"|"answer"}` (post-dial delay per
//! branch), `trunkgate_trunk_probes_total{trunk,result="ok"|"failed"}`,
//! `trunkgate_pbx_up{node}`. PBX nodes have a `Health` of their own (node index as the id):
//! the same probes, breaker and half-open trials, fed by branches and probes to the PBX.

use crate::routing_adapter::PolicyRouting;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trunkgate_control::{BranchOutcome, Health, ProbeOutcome, StateChange, TrunkId, TrunkState};
use trunkgate_sip::message::Method;
use trunkgate_sip::{Event, Outcome, Party, ProbeResult, Proxy, Target};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrunkLabel {
    trunk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailoverLabels {
    route: String,
    trunk: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    trunk: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    trunk: String,
    result: String,
}

const SETUP_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// What a branch's end says of its peer, for the circuit breaker.
fn branch_outcome(outcome: Outcome, provisional: bool) -> Option<BranchOutcome> {
    match outcome {
        Outcome::Final(200..=299) => Some(BranchOutcome::Answered),
        Outcome::Final(code) => Some(BranchOutcome::Final(code)),
        Outcome::Timeout | Outcome::TryTimeout => Some(BranchOutcome::Timeout),
        Outcome::Transport => Some(BranchOutcome::TransportError),
        // Given up by us (CANCEL, another branch answered): says nothing of the peer,
        // but a half-open peer's trial is over.
        Outcome::Abandoned => provisional.then_some(BranchOutcome::Provisional),
    }
}

fn probe_outcome(result: ProbeResult) -> ProbeOutcome {
    match result {
        ProbeResult::Reply(code) => ProbeOutcome::Reply(code),
        ProbeResult::Timeout => ProbeOutcome::Timeout,
        ProbeResult::Transport => ProbeOutcome::TransportError,
    }
}

/// The trunk metrics families; cheap to clone (each family is an `Arc`).
#[derive(Clone, Debug)]
pub struct TrunkMetrics {
    failovers: Family<FailoverLabels, Counter>,
    up: Family<TrunkLabel, Gauge>,
    state_changes: Family<TrunkLabel, Counter>,
    attempts: Family<TrunkLabel, Counter>,
    answered: Family<TrunkLabel, Counter>,
    setup: Family<StageLabels, Histogram, fn() -> Histogram>,
    probes: Family<ProbeLabels, Counter>,
    pbx_up: Family<NodeLabel, Gauge>,
}

fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_BUCKETS)
}

impl TrunkMetrics {
    pub fn new() -> TrunkMetrics {
        TrunkMetrics {
            failovers: Family::default(),
            up: Family::default(),
            state_changes: Family::default(),
            attempts: Family::default(),
            answered: Family::default(),
            setup: Family::new_with_constructor(setup_histogram as fn() -> Histogram),
            probes: Family::default(),
            pbx_up: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trunkgate_failovers",
            "Calls moved to their next candidate, by route, the trunk left and why",
            self.failovers.clone(),
        );
        registry.register(
            "trunkgate_trunk_up",
            "1 while the trunk is up (or half-open), 0 while down",
            self.up.clone(),
        );
        registry.register(
            "trunkgate_trunk_state_changes",
            "Trunk health state changes (up, down, half-open)",
            self.state_changes.clone(),
        );
        registry.register(
            "trunkgate_trunk_attempts",
            "Call branches sent to the trunk",
            self.attempts.clone(),
        );
        registry.register(
            "trunkgate_trunk_answered",
            "Call branches the trunk answered (2xx)",
            self.answered.clone(),
        );
        registry.register(
            "trunkgate_trunk_setup_seconds",
            "Per branch: INVITE to first provisional, and to answer (post-dial delay)",
            self.setup.clone(),
        );
        registry.register(
            "trunkgate_pbx_up",
            "1 while the PBX node is up (or half-open), 0 while down (probes or circuit breaker)",
            self.pbx_up.clone(),
        );
        registry.register(
            "trunkgate_trunk_probes",
            "OPTIONS probes by result (ok: reachable per the probe's ok rule)",
            self.probes.clone(),
        );
    }
}

/// The per-call metrics of one trunk, taken from their families once: counting a call is
/// an atomic add, with no label lookup, lock or allocation.
struct PerTrunk {
    attempts: Counter,
    answered: Counter,
    to_provisional: Histogram,
    to_answer: Histogram,
}

/// Feeds core events to [`Health`] and turns health into probes and metrics.
pub struct TrunkHealthFeed {
    routing: Arc<PolicyRouting>,
    metrics: TrunkMetrics,
    /// By trunk id.
    per_trunk: Vec<Option<PerTrunk>>,
    /// Trunk names by id, and route names by index.
    trunk_names: Vec<String>,
    route_names: Vec<String>,
    due: Vec<TrunkId>,
    changes: Vec<StateChange>,
}

impl TrunkHealthFeed {
    pub fn new(routing: Arc<PolicyRouting>, metrics: TrunkMetrics) -> TrunkHealthFeed {
        let table = routing.table();
        let mut trunk_names = Vec::new();
        let mut per_trunk = Vec::new();
        for trunk in table.trunks() {
            let slot = usize::from(trunk.id.0);
            if trunk_names.len() <= slot {
                trunk_names.resize(slot + 1, String::new());
                per_trunk.resize_with(slot + 1, || None);
            }
            trunk_names[slot] = trunk.name.clone();
            let label = TrunkLabel {
                trunk: trunk.name.clone(),
            };
            metrics.up.get_or_create(&label).set(1);
            // Exported from the start (at 0), so dashboards and alerts see every trunk.
            drop(metrics.state_changes.get_or_create(&label));
            let stage = |stage: &str| StageLabels {
                trunk: trunk.name.clone(),
                stage: stage.to_owned(),
            };
            // One statement each: a family's guard lives to the end of its statement, and
            // a second insert into the same family under it would deadlock.
            let attempts = metrics.attempts.get_or_create(&label).clone();
            let answered = metrics.answered.get_or_create(&label).clone();
            let to_provisional = metrics.setup.get_or_create(&stage("provisional")).clone();
            let to_answer = metrics.setup.get_or_create(&stage("answer")).clone();
            per_trunk[slot] = Some(PerTrunk {
                attempts,
                answered,
                to_provisional,
                to_answer,
            });
        }
        for node in table.pbx_nodes() {
            metrics
                .pbx_up
                .get_or_create(&NodeLabel {
                    node: node.name.clone(),
                })
                .set(1);
        }
        let route_names = table.routes().iter().map(|r| r.name.clone()).collect();
        TrunkHealthFeed {
            routing,
            metrics,
            per_trunk,
            trunk_names,
            route_names,
            due: Vec::new(),
            changes: Vec::new(),
        }
    }

    fn name(&self, trunk: u16) -> String {
        self.trunk_names
            .get(usize::from(trunk))
            .cloned()
            .unwrap_or_else(|| format!("#{trunk}"))
    }

    fn with_health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        let mut health = self
            .routing
            .health()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut health)
    }

    /// One event out of the core.
    pub fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::BranchStarted {
                to: Party::Trunk(t),
                method,
                ..
            } => {
                if method == Method::Invite {
                    if let Some(m) = self.per_trunk.get(usize::from(t)).and_then(Option::as_ref) {
                        m.attempts.inc();
                    }
                }
                let id = TrunkId(t);
                let change = self.with_health(|h| {
                    (h.state(now, id) == Some(TrunkState::HalfOpen))
                        .then(|| h.trial_started(now, id))
                        .flatten()
                });
                self.changed(change);
            }
            Event::BranchEnded {
                to: Party::Trunk(t),
                method,
                route,
                outcome,
                retry_after,
                first_provisional,
                duration,
                failover,
                ..
            } => {
                let timing = (method == Method::Invite).then_some((first_provisional, duration));
                self.branch_ended(now, t, route, outcome, retry_after, timing, failover);
            }
            Event::Probe {
                to: Party::Pbx,
                address,
                result,
                rtt,
            } => self.pbx_probe(now, address, result, rtt),
            Event::BranchStarted {
                to: Party::Pbx,
                address,
                ..
            } => {
                if let Some(id) = self.pbx_node(address) {
                    let change = self.with_pbx_health(|h| {
                        (h.state(now, id) == Some(TrunkState::HalfOpen))
                            .then(|| h.trial_started(now, id))
                            .flatten()
                    });
                    self.pbx_changed(change);
                }
            }
            Event::BranchEnded {
                to: Party::Pbx,
                address,
                outcome,
                first_provisional,
                ..
            } => {
                let branch = branch_outcome(outcome, first_provisional.is_some());
                if let (Some(id), Some(branch)) = (self.pbx_node(address), branch) {
                    let change = self.with_pbx_health(|h| h.on_branch(now, id, branch));
                    self.pbx_changed(change);
                }
            }
            Event::Probe {
                to: Party::Trunk(trunk),
                result,
                rtt,
                ..
            } => {
                let outcome = probe_outcome(result);
                let rtt = matches!(result, ProbeResult::Reply(_)).then_some(rtt);
                let id = TrunkId(trunk);
                let ok = match outcome {
                    ProbeOutcome::Reply(code) => self
                        .routing
                        .table()
                        .trunk(id)
                        .and_then(|t| t.probe.as_ref())
                        .is_some_and(|p| p.reachable(code)),
                    _ => false,
                };
                let change = self.with_health(|h| h.on_probe(now, id, outcome, rtt));
                let label = ProbeLabels {
                    trunk: self.name(trunk),
                    result: if ok { "ok" } else { "failed" }.to_owned(),
                };
                self.metrics.probes.get_or_create(&label).inc();
                self.changed(change);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn branch_ended(
        &mut self,
        now: Instant,
        t: u16,
        route: Option<u16>,
        outcome: Outcome,
        retry_after: Option<u32>,
        // INVITE branches: (time to first provisional, time to the end); `None` for others.
        timing: Option<(Option<Duration>, Duration)>,
        failover: bool,
    ) {
        let first_provisional = timing.and_then(|(p, _)| p);
        let per_trunk = self.per_trunk.get(usize::from(t)).and_then(Option::as_ref);
        if let (Some(provisional), Some(m)) = (first_provisional, per_trunk) {
            m.to_provisional.observe(provisional.as_secs_f64());
        }
        let id = TrunkId(t);
        if let (Outcome::Final(200..=299), Some((_, duration)), Some(m)) =
            (outcome, timing, per_trunk)
        {
            m.answered.inc();
            m.to_answer.observe(duration.as_secs_f64());
        }
        let branch = branch_outcome(outcome, first_provisional.is_some());
        let cooled = matches!(outcome, Outcome::Final(503))
            .then_some(retry_after)
            .flatten();
        let change = self.with_health(|h| {
            if let Some(secs) = cooled {
                let held = h.retry_after(now, id, secs);
                if !held.is_zero() {
                    tracing::info!(trunk = t, retry_after = secs, held = ?held, "503 with Retry-After: new calls avoid the trunk");
                }
            }
            branch.and_then(|b| h.on_branch(now, id, b))
        });
        if failover {
            let route = route
                .and_then(|r| self.route_names.get(usize::from(r)))
                .cloned()
                .unwrap_or_else(|| "none".to_owned());
            let labels = FailoverLabels {
                route,
                trunk: self.name(t),
                reason: outcome.reason(cooled.is_some()).to_owned(),
            };
            self.metrics.failovers.get_or_create(&labels).inc();
        }
        self.changed(change);
    }

    fn with_pbx_health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        let mut health = self
            .routing
            .pbx_health()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut health)
    }

    /// The PBX node at `address` (its index, as the id of the PBX nodes' health).
    fn pbx_node(&self, address: std::net::SocketAddr) -> Option<TrunkId> {
        let i = self
            .routing
            .table()
            .pbx_nodes()
            .iter()
            .position(|n| n.address == address)?;
        u16::try_from(i).ok().map(TrunkId)
    }

    fn pbx_probe(
        &mut self,
        now: Instant,
        address: std::net::SocketAddr,
        result: ProbeResult,
        rtt: Duration,
    ) {
        let Some(id) = self.pbx_node(address) else {
            return;
        };
        let outcome = probe_outcome(result);
        let rtt = matches!(result, ProbeResult::Reply(_)).then_some(rtt);
        let change = self.with_pbx_health(|h| h.on_probe(now, id, outcome, rtt));
        self.pbx_changed(change);
    }

    fn pbx_changed(&mut self, change: Option<StateChange>) {
        let Some(change) = change else { return };
        let name = self
            .routing
            .table()
            .pbx_nodes()
            .get(usize::from(change.trunk.0))
            .map_or_else(|| format!("#{}", change.trunk.0), |n| n.name.clone());
        let up = i64::from(change.new != TrunkState::Down);
        self.metrics
            .pbx_up
            .get_or_create(&NodeLabel { node: name })
            .set(up);
    }

    fn changed(&mut self, change: Option<StateChange>) {
        let Some(change) = change else { return };
        let label = TrunkLabel {
            trunk: self.name(change.trunk.0),
        };
        self.metrics.state_changes.get_or_create(&label).inc();
        let up = i64::from(change.new != TrunkState::Down);
        // The one log line per change is written by `Health` itself.
        self.metrics.up.get_or_create(&label).set(up);
    }

    /// Time-driven work: cooldowns that ended, probes that are due (sent through `proxy`).
    pub fn poll(&mut self, now: Instant, proxy: &mut Proxy) {
        let mut changes = std::mem::take(&mut self.changes);
        let mut due = std::mem::take(&mut self.due);
        self.with_health(|h| {
            h.on_timeout(now, &mut changes);
            h.due_probes(now, &mut due);
        });
        for change in changes.drain(..) {
            self.changed(Some(change));
        }
        let routing = self.routing.clone();
        let table = routing.table();
        for id in due.drain(..) {
            let Some(trunk) = table.trunk(id) else {
                continue;
            };
            let timeout = self
                .with_health(|h| h.probe_timeout(id))
                .unwrap_or(Duration::from_secs(2));
            let target = Target {
                party: Party::Trunk(id.0),
                address: trunk.address,
                transport: crate::routing_adapter::transport(trunk.transport),
                uri_host: trunk.uri_host.clone(),
                local_answer: None,
            };
            if !proxy.probe(now, &target, timeout) {
                let change =
                    self.with_health(|h| h.on_probe(now, id, ProbeOutcome::TransportError, None));
                self.changed(change);
            }
        }
        // The PBX nodes' probes and cooldowns.
        self.with_pbx_health(|h| {
            h.on_timeout(now, &mut changes);
            h.due_probes(now, &mut due);
        });
        for change in changes.drain(..) {
            self.pbx_changed(Some(change));
        }
        for id in due.drain(..) {
            let Some(node) = table.pbx_nodes().get(usize::from(id.0)) else {
                continue;
            };
            let timeout = self
                .with_pbx_health(|h| h.probe_timeout(id))
                .unwrap_or(Duration::from_secs(2));
            let target = crate::routing_adapter::pbx_target(node);
            if !proxy.probe(now, &target, timeout) {
                let change = self
                    .with_pbx_health(|h| h.on_probe(now, id, ProbeOutcome::TransportError, None));
                self.pbx_changed(change);
            }
        }
        self.changes = changes;
        self.due = due;
    }

    /// When [`TrunkHealthFeed::poll`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let trunks = self.with_health(|h| h.next_deadline());
        let pbx = self.with_pbx_health(|h| h.next_deadline());
        match (trunks, pbx) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
