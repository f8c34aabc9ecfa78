//! Trunk health in the running process: the core's events (branch outcomes, probe results)
//! feed the control crate's [`Health`]; a state change becomes one log line and its metrics
//! ([`crate::trunk_metrics`]); due probes become OPTIONS sent by the core.
//! [`TrunkHealthFeed`] runs on the core thread, between two inputs, so routing sees a
//! change before the next INVITE.

use crate::routing_adapter::PolicyRouting;
pub use crate::trunk_metrics::TrunkMetrics;
use crate::trunk_metrics::{
    FailoverLabels, NodeLabel, ProbeLabels, StageLabels, TrunkLabel, branch_outcome,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trunkgate_control::{
    BranchOutcome, DrillMode, Health, ProbeOutcome, StateChange, TrunkId, TrunkState,
};
use trunkgate_sip::message::Method;
use trunkgate_sip::{EndReason, Event, Outcome, Party, ProbeResult, Proxy, Target};

/// Per-trunk counts by trunk id that `/trunks` shows (the Prometheus families are for
/// scrapes): call branches sent and failovers away from the trunk.
#[derive(Debug)]
pub struct TrunkCounts {
    pub attempts: Box<[AtomicU64]>,
    pub failovers: Box<[AtomicU64]>,
}

impl TrunkCounts {
    /// Room for ids `0..slots`.
    pub fn new(slots: usize) -> TrunkCounts {
        let zeros = || (0..slots).map(|_| AtomicU64::new(0)).collect();
        TrunkCounts {
            attempts: zeros(),
            failovers: zeros(),
        }
    }

    fn bump(counters: &[AtomicU64], trunk: u16) {
        if let Some(c) = counters.get(usize::from(trunk)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(counters: &[AtomicU64], trunk: TrunkId) -> u64 {
        counters
            .get(usize::from(trunk.0))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Feeds core events to [`Health`] and turns health into probes and metrics.
/// What a trunk branch's end says, beside its trunk and address.
struct Ended {
    route: Option<u16>,
    outcome: Outcome,
    retry_after: Option<u32>,
    /// INVITE branches: (time to first provisional, time to the end); `None` for others.
    timing: Option<(Option<Duration>, Duration)>,
    failover: bool,
}

/// The addresses of trunk `id` in `routing`'s table (none if it has no such trunk).
fn addresses_of(routing: &PolicyRouting, id: TrunkId) -> &[SocketAddr] {
    routing
        .table()
        .trunk(id)
        .map_or(&[][..], |t| t.addresses.as_slice())
}

pub struct TrunkHealthFeed {
    routing: Arc<PolicyRouting>,
    metrics: TrunkMetrics,
    counts: Arc<TrunkCounts>,
    /// Trunk names by id, and route names by index.
    trunk_names: Vec<String>,
    route_names: Vec<String>,
    due: Vec<TrunkId>,
    changes: Vec<StateChange>,
}

impl TrunkHealthFeed {
    pub fn new(
        routing: Arc<PolicyRouting>,
        metrics: TrunkMetrics,
        counts: Arc<TrunkCounts>,
    ) -> TrunkHealthFeed {
        let mut feed = TrunkHealthFeed {
            routing: routing.clone(),
            metrics,
            counts,
            trunk_names: Vec::new(),
            route_names: Vec::new(),
            due: Vec::new(),
            changes: Vec::new(),
        };
        feed.set_routing(routing);
        feed
    }

    /// A reload's new routing: names by id follow it; trunks that left (drained) leave
    /// the per-trunk metric families.
    pub fn set_routing(&mut self, routing: Arc<PolicyRouting>) {
        let metrics = &self.metrics;
        let table = routing.table();
        let now = Instant::now();
        let health = routing.health().lock().unwrap_or_else(|e| e.into_inner());
        let mut trunk_names = Vec::new();
        for trunk in table.trunks() {
            let slot = usize::from(trunk.id.0);
            if trunk_names.len() <= slot {
                trunk_names.resize(slot + 1, String::new());
            }
            trunk_names[slot] = trunk.name.clone();
            let label = TrunkLabel {
                trunk: trunk.name.clone(),
            };
            let up = health.state(now, trunk.id) != Some(TrunkState::Down)
                && routing.drills().mode(trunk.id) != Some(DrillMode::Down);
            metrics.up.get_or_create(&label).set(i64::from(up));
            let state = health.state(now, trunk.id).unwrap_or(TrunkState::Up);
            metrics.set_state(&trunk.name, state);
            // Exported from the start (at 0), so dashboards and alerts see every trunk.
            drop(metrics.state_changes.get_or_create(&label));
            drop(metrics.attempts.get_or_create(&label));
            drop(metrics.answered.get_or_create(&label));
            if trunk.probe.is_some() {
                for result in ["ok", "failed"] {
                    drop(metrics.probes.get_or_create(&ProbeLabels {
                        trunk: trunk.name.clone(),
                        result: result.to_owned(),
                    }));
                }
            }
        }
        metrics.export_routes(table);
        for gone in self
            .trunk_names
            .iter()
            .filter(|n| !n.is_empty() && !trunk_names.contains(n))
        {
            let label = TrunkLabel {
                trunk: gone.clone(),
            };
            metrics.up.remove(&label);
            metrics.forget_state(gone);
            metrics.state_changes.remove(&label);
            metrics.attempts.remove(&label);
            metrics.answered.remove(&label);
            for result in ["ok", "failed"] {
                metrics.probes.remove(&ProbeLabels {
                    trunk: gone.clone(),
                    result: result.to_owned(),
                });
            }
            for route in &self.route_names {
                metrics.forget_route_trunk(route, gone);
            }
        }
        // Routes that left: their series of every trunk.
        for gone in self
            .route_names
            .iter()
            .filter(|r| !table.routes().iter().any(|n| &n.name == *r))
        {
            for trunk in self.trunk_names.iter().filter(|n| !n.is_empty()) {
                metrics.forget_route_trunk(gone, trunk);
            }
        }
        drop(health);
        // The PBX nodes' gauges, from their health (kept across a reload when the nodes are).
        let pbx_health = routing
            .pbx_health()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (i, node) in table.pbx_nodes().iter().enumerate() {
            let up = u16::try_from(i)
                .map(|id| pbx_health.state(now, TrunkId(id)) != Some(TrunkState::Down))
                .unwrap_or(true);
            metrics
                .pbx_up
                .get_or_create(&NodeLabel {
                    node: node.name.clone(),
                })
                .set(i64::from(up));
        }
        drop(pbx_health);
        self.route_names = table.routes().iter().map(|r| r.name.clone()).collect();
        self.trunk_names = trunk_names;
        self.routing = routing;
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
        let drills = self.routing.drills().clone();
        match event {
            Event::CallAttempt {
                dialog,
                route: Some(route),
                test: false,
                ..
            } if drills.any() => {
                if let Some(route) = self.routing.table().routes().get(usize::from(route)) {
                    drills.with(|d| d.call_attempt(dialog, &route.trunks));
                }
            }
            Event::CallAnswered { dialog, to, setup } => {
                // Always recorded (a drill's "before" figures); the trunk's name only
                // while a drill runs (no allocation per call otherwise).
                let trunk = match to {
                    Party::Trunk(t) if drills.any() => Some((TrunkId(t), self.name(t))),
                    _ => None,
                };
                drills.with(|d| {
                    d.call_answered(
                        now,
                        dialog,
                        trunk.as_ref().map(|(id, n)| (*id, n.as_str())),
                        setup,
                    )
                });
            }
            Event::CallEnded { dialog, reason, .. } if drills.any() => {
                let why = match reason {
                    EndReason::Rejected(code) => Some(code.to_string()),
                    EndReason::Cancelled => Some("cancelled".to_owned()),
                    _ => None,
                };
                drills.with(|d| match &why {
                    Some(why) => d.call_failed(dialog, why),
                    None => d.call_ended(dialog),
                });
            }
            Event::BranchStarted {
                to: Party::Trunk(t),
                method,
                ..
            } => {
                if method == Method::Invite {
                    TrunkCounts::bump(&self.counts.attempts, t);
                    self.metrics
                        .attempts
                        .get_or_create(&TrunkLabel {
                            trunk: self.name(t),
                        })
                        .inc();
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
                dialog,
                to: Party::Trunk(t),
                address,
                method,
                route,
                outcome,
                retry_after,
                first_provisional,
                duration,
                failover,
                ..
            } => {
                if failover {
                    TrunkCounts::bump(&self.counts.failovers, t);
                    if drills.any() {
                        drills.with(|d| d.failover(dialog));
                    }
                }
                let timing = (method == Method::Invite).then_some((first_provisional, duration));
                let ended = Ended {
                    route,
                    outcome,
                    retry_after,
                    timing,
                    failover,
                };
                self.branch_ended(now, t, address, ended);
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
                address,
                result,
                rtt,
            } => {
                // Drills: `down` ignores probes (the trunk counts as failed whatever they
                // say), `probe-fail` turns every result into a failure.
                let result = match drills.mode(TrunkId(trunk)) {
                    Some(DrillMode::Down) => return,
                    Some(DrillMode::ProbeFail) => ProbeResult::Timeout,
                    _ => result,
                };
                let outcome = match result {
                    ProbeResult::Reply(code) => ProbeOutcome::Reply(code),
                    ProbeResult::Timeout => ProbeOutcome::Timeout,
                    ProbeResult::Transport => ProbeOutcome::TransportError,
                };
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
                let routing = self.routing.clone();
                let addresses = addresses_of(&routing, id);
                let change = self
                    .with_health(|h| h.on_address_probe(now, id, address, addresses, outcome, rtt));
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

    fn branch_ended(&mut self, now: Instant, t: u16, address: SocketAddr, ended: Ended) {
        let Ended {
            route,
            outcome,
            retry_after,
            timing,
            failover,
        } = ended;
        let trunk = self.name(t);
        let route = route
            .and_then(|r| self.route_names.get(usize::from(r)))
            .cloned()
            .unwrap_or_else(|| "none".to_owned());
        let first_provisional = timing.and_then(|(p, _)| p);
        if let Some(provisional) = first_provisional {
            let stage = StageLabels {
                trunk: trunk.clone(),
                route: route.clone(),
                stage: "provisional".to_owned(),
            };
            self.metrics
                .setup
                .get_or_create(&stage)
                .observe(provisional.as_secs_f64());
        }
        let id = TrunkId(t);
        let branch = match outcome {
            Outcome::Final(code) if (200..300).contains(&code) => {
                let Some((_, duration)) = timing else {
                    let routing = self.routing.clone();
                    let addresses = addresses_of(&routing, id);
                    return self.changed(self.with_health(|h| {
                        h.on_address_branch(now, id, address, addresses, BranchOutcome::Answered)
                    }));
                };
                self.metrics
                    .answered
                    .get_or_create(&TrunkLabel {
                        trunk: trunk.clone(),
                    })
                    .inc();
                let stage = StageLabels {
                    trunk: trunk.clone(),
                    route: route.clone(),
                    stage: "answer".to_owned(),
                };
                self.metrics
                    .setup
                    .get_or_create(&stage)
                    .observe(duration.as_secs_f64());
                Some(BranchOutcome::Answered)
            }
            Outcome::Final(code) => Some(BranchOutcome::Final(code)),
            Outcome::Timeout | Outcome::TryTimeout => Some(BranchOutcome::Timeout),
            Outcome::Transport => Some(BranchOutcome::TransportError),
            // Given up by us (CANCEL, another branch answered): says nothing of the trunk,
            // but a half-open trunk's trial is over.
            Outcome::Abandoned => first_provisional.map(|_| BranchOutcome::Provisional),
        };
        let cooled = matches!(outcome, Outcome::Final(503))
            .then_some(retry_after)
            .flatten();
        let routing = self.routing.clone();
        let addresses = addresses_of(&routing, id);
        let change = self.with_health(|h| {
            // With several addresses, a 503 takes only its address out (below); the trunk
            // cools down for Retry-After when it was the last one left.
            let last = addresses.len() <= 1
                || !addresses
                    .iter()
                    .any(|&a| a != address && h.address_usable(now, id, a));
            if let Some(secs) = cooled.filter(|_| last) {
                let held = h.retry_after(now, id, secs);
                if !held.is_zero() {
                    tracing::info!(trunk = %trunk, retry_after = secs, held = ?held, "503 with Retry-After: new calls avoid the trunk");
                }
            }
            branch.and_then(|b| h.on_address_branch(now, id, address, addresses, b))
        });
        if failover {
            let labels = FailoverLabels {
                route,
                trunk: trunk.clone(),
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
        let outcome = match result {
            ProbeResult::Reply(code) => ProbeOutcome::Reply(code),
            ProbeResult::Timeout => ProbeOutcome::Timeout,
            ProbeResult::Transport => ProbeOutcome::TransportError,
        };
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
        self.metrics
            .state_changed(&self.name(change.trunk.0), &change);
    }

    /// Time-driven work: drills that expired, cooldowns that ended, probes that are due
    /// (sent through `proxy`).
    pub fn poll(&mut self, now: Instant, proxy: &mut Proxy) {
        let drills = self.routing.drills().clone();
        if drills.any() {
            let expired = drills.with(|d| d.expire(now, crate::drills::wall_ms()));
            crate::drills::ended(
                now,
                "expired",
                &expired,
                self.routing.health(),
                &self.metrics,
            );
        }
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
            // A trunk with several addresses is probed at its first usable one.
            let address = self.with_health(|h| {
                trunk
                    .addresses
                    .iter()
                    .copied()
                    .find(|&a| h.address_usable(now, id, a))
                    .unwrap_or(trunk.address)
            });
            let target = Target {
                party: Party::Trunk(id.0),
                address,
                transport: crate::routing_adapter::transport(trunk.transport),
                uri_host: trunk.uri_host.clone(),
                local_answer: None,
            };
            if !proxy.probe(now, &target, timeout) {
                let change = self.with_health(|h| {
                    let failed = ProbeOutcome::TransportError;
                    h.on_address_probe(now, id, address, &trunk.addresses, failed, None)
                });
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
        let health = self.with_health(|h| h.next_deadline());
        let pbx = self.with_pbx_health(|h| h.next_deadline());
        [health, pbx, self.routing.drills().next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The process is shutting down: end every drill (one log line each).
    pub fn end_drills(&self, now: Instant) {
        let ended = self
            .routing
            .drills()
            .with(|d| d.shutdown(crate::drills::wall_ms()));
        crate::drills::ended(
            now,
            "ended by shutdown",
            &ended,
            self.routing.health(),
            &self.metrics,
        );
    }
}
