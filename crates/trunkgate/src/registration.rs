//! Outbound registration in the binary: builds each trunk's
//! [`trunkgate_sip::RegistrationConfig`] from `register = { … }` (the password read once,
//! as a secret), starts them in the core, and turns the core's
//! [`Event::Registration`]s into metrics, one log line per state change, and the routing
//! gate (a trunk whose registration is down is not a candidate unless `route_when_down`).
//!
//! Metrics: `trunkgate_registration_up{trunk}` (1 registered, 0 not) and
//! `trunkgate_registrations_total{trunk,result}` (every REGISTER outcome after digest).

use crate::credentials::read_password;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use trunkgate_config::Policy;
use trunkgate_control::RoutingTable;
use trunkgate_sip::digest::Credentials;
use trunkgate_sip::{Event, Party, Proxy, RegistrationConfig, Target, TrunkId};

/// Trunks that routing must skip because their registration is down, by trunk id.
#[derive(Debug, Default)]
pub struct RegistrationGate(Vec<AtomicBool>);

impl RegistrationGate {
    /// Is trunk `id` closed to new calls?
    pub fn blocks(&self, id: TrunkId) -> bool {
        self.0
            .get(usize::from(id))
            .is_some_and(|b| b.load(Ordering::Relaxed))
    }

    fn set(&self, id: TrunkId, blocked: bool) {
        if let Some(b) = self.0.get(usize::from(id)) {
            b.store(blocked, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrunkLabel {
    trunk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    trunk: String,
    result: String,
}

struct Entry {
    id: TrunkId,
    name: String,
    config: RegistrationConfig,
    route_when_down: bool,
}

/// The registrations of one policy, and what their results feed.
pub struct Registrations {
    entries: Vec<Entry>,
    gate: Arc<RegistrationGate>,
    up: Family<TrunkLabel, Gauge>,
    total: Family<ResultLabels, Counter>,
}

impl std::fmt::Debug for Registrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrations")
            .field("trunks", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Registrations {
    /// Every trunk's `register = { … }` of `policy`, resolved through `table`; passwords are
    /// read now (an unreadable one refuses the start, naming the trunk and the source).
    pub fn new(policy: &Policy, table: &RoutingTable) -> anyhow::Result<Registrations> {
        let slots = table
            .trunks()
            .iter()
            .map(|t| usize::from(t.id.0) + 1)
            .max()
            .unwrap_or(0);
        let gate = RegistrationGate((0..slots).map(|_| AtomicBool::new(false)).collect());
        let mut entries = Vec::new();
        for trunk in &policy.trunks {
            let Some(register) = &trunk.register else {
                continue;
            };
            let Some(entry) = table.trunks().iter().find(|t| t.name == trunk.name) else {
                continue;
            };
            let owner = format!("trunk \"{}\" register", trunk.name);
            let credentials = Credentials {
                user: register.auth.user.clone(),
                password: read_password(&register.auth.password, &owner)?,
                realm: register.auth.realm.clone(),
            };
            let registrar = Target {
                party: Party::Trunk(entry.id.0),
                address: entry.address,
                transport: crate::routing_adapter::transport(entry.transport),
                uri_host: entry.uri_host.clone(),
                local_answer: None,
            };
            // Not registered yet: closed to calls until the first 2xx.
            gate.set(entry.id.0, !register.route_when_down);
            entries.push(Entry {
                id: entry.id.0,
                name: trunk.name.clone(),
                config: RegistrationConfig {
                    registrar,
                    credentials,
                    expires: register.expires,
                    contact_user: register.contact_user.clone(),
                },
                route_when_down: register.route_when_down,
            });
        }
        let registrations = Registrations {
            entries,
            gate: Arc::new(gate),
            up: Family::default(),
            total: Family::default(),
        };
        for e in &registrations.entries {
            registrations
                .up
                .get_or_create(&TrunkLabel {
                    trunk: e.name.clone(),
                })
                .set(0);
            // Every result at 0 from the start (dashboards, rate()).
            for result in [
                "registered",
                "auth_failed",
                "refused",
                "timeout",
                "unreachable",
                "deregistered",
            ] {
                drop(registrations.total.get_or_create(&ResultLabels {
                    trunk: e.name.clone(),
                    result: result.to_owned(),
                }));
            }
        }
        Ok(registrations)
    }

    /// The gate routing consults.
    pub fn gate(&self) -> Arc<RegistrationGate> {
        self.gate.clone()
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "trunkgate_registration_up",
            "1 while Trunkgate is registered with the trunk's registrar, 0 while not",
            self.up.clone(),
        );
        registry.register(
            "trunkgate_registrations",
            "REGISTER outcomes per trunk (after any digest answer), by result",
            self.total.clone(),
        );
    }

    /// Send every trunk's first REGISTER.
    pub fn start(&self, now: Instant, proxy: &mut Proxy) {
        for e in &self.entries {
            proxy.set_registration(now, e.id, Some(e.config.clone()));
        }
    }

    /// Consume a registration event; returns any other event untouched.
    pub fn on_event(&self, event: Event) -> Option<Event> {
        let Event::Registration {
            trunk,
            result,
            up,
            changed,
            code,
            reason,
            expires,
        } = event
        else {
            return Some(event);
        };
        // Not ours (a registration of another policy): nothing to count.
        let e = self.entries.iter().find(|e| e.id == trunk)?;
        self.total
            .get_or_create(&ResultLabels {
                trunk: e.name.clone(),
                result: result.as_str().to_owned(),
            })
            .inc();
        self.up
            .get_or_create(&TrunkLabel {
                trunk: e.name.clone(),
            })
            .set(i64::from(up));
        self.gate.set(trunk, !up && !e.route_when_down);
        if changed {
            if up {
                tracing::info!(
                    trunk = %e.name,
                    code,
                    reason = %reason,
                    expires = ?expires,
                    "registration up"
                );
            } else {
                tracing::warn!(
                    trunk = %e.name,
                    code,
                    reason = %reason,
                    result = result.as_str(),
                    routed = e.route_when_down,
                    "registration down"
                );
            }
        }
        None
    }
}
