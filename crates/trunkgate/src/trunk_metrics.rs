//! The trunk metrics families (prometheus-client, registered once at start), fed by
//! [`crate::trunk_health::TrunkHealthFeed`]: `trunkgate_failovers_total{route,trunk,reason}`,
//! `trunkgate_trunk_up{trunk}`, `trunkgate_trunk_state{trunk,state}`,
//! `trunkgate_trunk_state_changes_total{trunk}`, `trunkgate_trunk_attempts_total{trunk}`,
//! `trunkgate_trunk_answered_total{trunk}` (answer-seizure ratio = answered / attempts),
//! `trunkgate_trunk_setup_seconds{trunk,route,stage="provisional"|"answer"}` (post-dial
//! delay per branch), `trunkgate_trunk_probes_total{trunk,result="ok"|"failed"}`,
//! `trunkgate_pbx_up{node}`. Every series a policy can produce is exported at 0 from the
//! start (and from each reload), so dashboards and alerts see every trunk and route before
//! its first call.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use trunkgate_control::{BranchOutcome, StateChange, TrunkState};
use trunkgate_sip::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TrunkLabel {
    pub(crate) trunk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FailoverLabels {
    pub(crate) route: String,
    pub(crate) trunk: String,
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabels {
    pub(crate) trunk: String,
    pub(crate) route: String,
    pub(crate) stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProbeLabels {
    pub(crate) trunk: String,
    pub(crate) result: String,
}

const STATES: [TrunkState; 3] = [TrunkState::Up, TrunkState::Down, TrunkState::HalfOpen];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) trunk: String,
    pub(crate) state: String,
}

pub(crate) const STAGES: [&str; 2] = ["provisional", "answer"];
/// Every `reason` of `trunkgate_failovers_total` ([`Outcome::reason`]).
pub(crate) const FAILOVER_REASONS: [&str; 5] =
    ["code", "retry-after", "timeout", "transport", "abandoned"];

const SETUP_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0,
];

/// The trunk metrics families; cheap to clone (each family is an `Arc`).
#[derive(Clone, Debug)]
pub struct TrunkMetrics {
    pub(crate) failovers: Family<FailoverLabels, Counter>,
    pub(crate) up: Family<TrunkLabel, Gauge>,
    pub(crate) state_changes: Family<TrunkLabel, Counter>,
    pub(crate) attempts: Family<TrunkLabel, Counter>,
    pub(crate) answered: Family<TrunkLabel, Counter>,
    pub(crate) setup: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub(crate) probes: Family<ProbeLabels, Counter>,
    pub(crate) pbx_up: Family<NodeLabel, Gauge>,
    pub(crate) state: Family<StateLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeLabel {
    pub(crate) node: String,
}

/// What a branch's end says of its peer, for the circuit breaker.
pub(crate) fn branch_outcome(outcome: Outcome, provisional: bool) -> Option<BranchOutcome> {
    match outcome {
        Outcome::Final(200..=299) => Some(BranchOutcome::Answered),
        Outcome::Final(code) => Some(BranchOutcome::Final(code)),
        Outcome::Timeout | Outcome::TryTimeout => Some(BranchOutcome::Timeout),
        Outcome::Transport => Some(BranchOutcome::TransportError),
        Outcome::Abandoned => provisional.then_some(BranchOutcome::Provisional),
    }
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
            state: Family::default(),
        }
    }

    /// Trunk `name` changed state: its change counter and up gauge. (The one log line per
    /// change is written by `Health` itself.)
    pub fn state_changed(&self, name: &str, change: &StateChange) {
        let label = TrunkLabel {
            trunk: name.to_owned(),
        };
        self.state_changes.get_or_create(&label).inc();
        let up = i64::from(change.new != TrunkState::Down);
        self.up.get_or_create(&label).set(up);
        self.set_state(name, change.new);
    }

    /// Trunk `name`'s health state gauge: 1 for `state`, 0 for the other two.
    pub fn set_state(&self, name: &str, state: TrunkState) {
        for s in STATES {
            let label = StateLabels {
                trunk: name.to_owned(),
                state: s.to_string(),
            };
            self.state.get_or_create(&label).set(i64::from(s == state));
        }
    }

    /// Forget trunk `name`'s state gauges (it left the policy).
    pub fn forget_state(&self, name: &str) {
        for s in STATES {
            self.state.remove(&StateLabels {
                trunk: name.to_owned(),
                state: s.to_string(),
            });
        }
    }

    /// Set trunk `name`'s up gauge (a `down` drill counts the trunk as failed; its end puts
    /// back what health says).
    pub fn set_up(&self, name: &str, up: bool) {
        let label = TrunkLabel {
            trunk: name.to_owned(),
        };
        self.up.get_or_create(&label).set(i64::from(up));
    }

    /// Every (route, trunk of the route) pair's setup histograms and failover counters at 0.
    pub(crate) fn export_routes(&self, table: &trunkgate_control::RoutingTable) {
        for route in table.routes() {
            for name in route
                .trunks
                .iter()
                .filter_map(|id| table.trunk(*id).map(|t| &t.name))
            {
                for stage in STAGES {
                    drop(self.setup.get_or_create(&StageLabels {
                        trunk: name.clone(),
                        route: route.name.clone(),
                        stage: stage.to_owned(),
                    }));
                }
                for reason in FAILOVER_REASONS {
                    drop(self.failovers.get_or_create(&FailoverLabels {
                        route: route.name.clone(),
                        trunk: name.clone(),
                        reason: reason.to_owned(),
                    }));
                }
            }
        }
    }

    /// Drop the per-(route, trunk) series of a pair that no longer exists.
    pub(crate) fn forget_route_trunk(&self, route: &str, trunk: &str) {
        for stage in STAGES {
            self.setup.remove(&StageLabels {
                trunk: trunk.to_owned(),
                route: route.to_owned(),
                stage: stage.to_owned(),
            });
        }
        for reason in FAILOVER_REASONS {
            self.failovers.remove(&FailoverLabels {
                route: route.to_owned(),
                trunk: trunk.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trunkgate_failovers",
            "Calls moved to their next candidate, by route, the trunk left and why",
            self.failovers.clone(),
        );
        registry.register(
            "trunkgate_trunk_state",
            "1 for the trunk's health state (up, down, half-open), 0 for the other two \
             (by probes and the circuit breaker; a drill is in trunkgate_drill_active)",
            self.state.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_one_hot_and_forgotten_with_its_trunk() {
        let metrics = TrunkMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.set_state("carrier-a", TrunkState::HalfOpen);
        let text = crate::metrics::render(&registry).unwrap();
        for (state, v) in [("up", 0), ("down", 0), ("half-open", 1)] {
            let line =
                format!("trunkgate_trunk_state{{trunk=\"carrier-a\",state=\"{state}\"}} {v}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        metrics.forget_state("carrier-a");
        let text = crate::metrics::render(&registry).unwrap();
        assert!(!text.contains("trunkgate_trunk_state{"), "{text}");
    }
}
