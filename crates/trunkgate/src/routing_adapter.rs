//! [`trunkgate_sip::Routing`] on top of the control crate's [`RoutingTable`]: the core asks
//! "who is this source" and "where does this new request go"; the table answers from the
//! policy snapshot it was built from, skipping trunks that [`Health`] says are unusable.
//! A reload builds a new adapter and hands it to `Proxy::set_routing`.
//!
//! The adapter shares its [`Health`] (behind a mutex, via [`PolicyRouting::health`]) so
//! that the binary can feed it probe results and branch outcomes, and the drills overlay
//! ([`DrillBoard`]): a trunk in a `down` or `drain` drill is no candidate, one in a
//! `reject-503` drill is answered locally with 503 (the route's failover path runs).

use crate::drills::DrillBoard;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use trunkgate_config::PeerTransport;
use trunkgate_control::{DrillMode, Health, RoutingTable, Source, TrunkId};
use trunkgate_sip::normalise::Normalise;
use trunkgate_sip::routing::{CodeSet, FailoverPolicy, RouteChoice, TrunkLoad};
use trunkgate_sip::{Party, Routing, Target, Transport};

#[derive(Debug)]
pub struct PolicyRouting {
    table: RoutingTable,
    health: Arc<Mutex<Health>>,
    /// The PBX nodes' health, by node index (as a `TrunkId`).
    pbx_health: Arc<Mutex<Health>>,
    drills: Arc<DrillBoard>,
    /// Each route's failover policy, by route index (built once, not per call).
    failover: Vec<FailoverPolicy>,
    /// Failover between PBX nodes for calls from trunks.
    inbound: FailoverPolicy,
    /// Trunks closed to calls while their registration is down (set once at start).
    registration_gate: std::sync::OnceLock<Arc<crate::registration::RegistrationGate>>,
    /// Header normalisation by trunk id: `[outbound, inbound]`, compiled once.
    normalise: Vec<[Option<Normalise>; 2]>,
    /// `topology_hiding` by trunk id, and whether any trunk has it.
    topology_hiding: Vec<bool>,
    any_topology_hiding: bool,
}

/// The policy's rules in the core's form (names lower-cased by the validation).
fn compile(rules: &trunkgate_config::HeaderRules) -> Normalise {
    let pairs = |p: &[(String, String)]| {
        p.iter()
            .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
            .collect()
    };
    let bytes = |v: &[String]| v.iter().map(|s| s.as_bytes().to_vec()).collect();
    Normalise {
        called: pairs(&rules.called),
        calling: pairs(&rules.calling),
        remove: bytes(&rules.remove_headers),
        keep: bytes(&rules.keep_headers),
        add: bytes(&rules.add_headers),
        user_agent: rules.user_agent.as_ref().map(|u| u.as_bytes().to_vec()),
    }
}

fn failover_policy(f: &trunkgate_config::Failover) -> FailoverPolicy {
    FailoverPolicy {
        failover_on: CodeSet::from_codes(f.failover_on.iter().copied()),
        try_timeout: f.try_timeout,
        max_attempts: u8::try_from(f.max_attempts).unwrap_or(u8::MAX),
        setup_timeout: f.setup_timeout,
    }
}

impl PolicyRouting {
    /// `table` with every trunk up, per the policy's `[health]`.
    #[cfg(test)]
    pub fn new(table: RoutingTable, policy: &trunkgate_config::Policy) -> PolicyRouting {
        let health = Health::new(&table, &policy.health, Instant::now());
        PolicyRouting::with_health(
            table,
            Arc::new(Mutex::new(health)),
            Arc::new(DrillBoard::default()),
        )
    }

    /// `table` with a health and drills shared with others (a reload keeps both).
    pub fn with_health(
        table: RoutingTable,
        health: Arc<Mutex<Health>>,
        drills: Arc<DrillBoard>,
    ) -> PolicyRouting {
        let failover = table
            .routes()
            .iter()
            .map(|route| FailoverPolicy {
                failover_on: CodeSet::from_codes(route.failover_on.iter().copied()),
                try_timeout: route.try_timeout,
                max_attempts: u8::try_from(route.max_attempts).unwrap_or(u8::MAX),
                setup_timeout: route.setup_timeout,
            })
            .collect();
        let inbound = failover_policy(table.inbound_failover());
        let settings = health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settings()
            .clone();
        let pbx_health = Health::for_pbx_nodes(&table, &settings, Instant::now());
        let mut normalise: Vec<[Option<Normalise>; 2]> = Vec::new();
        for t in table.trunks() {
            if t.outbound.is_none() && t.inbound.is_none() {
                continue;
            }
            let slot = usize::from(t.id.0);
            if normalise.len() <= slot {
                normalise.resize_with(slot + 1, || [None, None]);
            }
            if let Some(s) = normalise.get_mut(slot) {
                *s = [
                    t.outbound.as_ref().map(compile),
                    t.inbound.as_ref().map(compile),
                ];
            }
        }
        let mut topology_hiding = Vec::new();
        for t in table.trunks().iter().filter(|t| t.topology_hiding) {
            let slot = usize::from(t.id.0);
            if topology_hiding.len() <= slot {
                topology_hiding.resize(slot + 1, false);
            }
            if let Some(s) = topology_hiding.get_mut(slot) {
                *s = true;
            }
        }
        PolicyRouting {
            any_topology_hiding: topology_hiding.contains(&true),
            topology_hiding,
            normalise,
            table,
            health,
            pbx_health: Arc::new(Mutex::new(pbx_health)),
            drills,
            failover,
            inbound,
            registration_gate: std::sync::OnceLock::new(),
        }
    }

    /// A reload's new adapter takes over what is not policy: the registration gate, and the
    /// PBX nodes' health when the nodes are the same (by name and position).
    pub fn carry_over(&mut self, old: &PolicyRouting) {
        if let Some(gate) = old.registration_gate.get() {
            let _ = self.registration_gate.set(gate.clone());
        }
        let names = |r: &PolicyRouting| {
            r.table
                .pbx_nodes()
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
        };
        if names(self) == names(old) {
            self.pbx_health = old.pbx_health.clone();
        }
    }

    /// Skip trunks `gate` blocks (registration down). Set once; later calls are ignored.
    pub fn set_registration_gate(&self, gate: Arc<crate::registration::RegistrationGate>) {
        let _ = self.registration_gate.set(gate);
    }

    /// The drills overlay this adapter routes by.
    pub fn drills(&self) -> &Arc<DrillBoard> {
        &self.drills
    }

    /// The trunk health this adapter routes by (fed by the core loop's events).
    pub fn health(&self) -> &Arc<Mutex<Health>> {
        &self.health
    }

    /// The PBX nodes' health (node index as the id).
    pub fn pbx_health(&self) -> &Arc<Mutex<Health>> {
        &self.pbx_health
    }

    /// The routing table this adapter answers from.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }
}

pub(crate) fn pbx_target(node: &trunkgate_control::PeerEntry) -> Target {
    Target {
        party: Party::Pbx,
        address: node.address,
        transport: transport(node.transport),
        uri_host: node.uri_host.clone(),
        local_answer: None,
    }
}

pub(crate) fn transport(t: PeerTransport) -> Option<Transport> {
    match t {
        PeerTransport::Auto => None,
        PeerTransport::Udp => Some(Transport::Udp),
        PeerTransport::Tcp => Some(Transport::Tcp),
        PeerTransport::Tls => Some(Transport::Tls),
    }
}

impl Routing for PolicyRouting {
    fn classify(&self, source: std::net::IpAddr) -> Party {
        party(self.table.classify(source))
    }

    fn classify_at(&self, source: std::net::SocketAddr) -> Party {
        party(self.table.classify_at(source))
    }

    fn candidates(
        &self,
        now: Instant,
        from: Party,
        request_user: Option<&[u8]>,
        load: &dyn TrunkLoad,
        out: &mut Vec<Target>,
    ) -> RouteChoice {
        match from {
            Party::Pbx => {
                let Some(route) = self.table.outbound(request_user) else {
                    return RouteChoice::default();
                };
                let mut ids = Vec::with_capacity(route.trunks.len());
                let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                self.table.candidates(
                    route,
                    now,
                    &health,
                    &|id: TrunkId| load.sessions(id.0),
                    &mut ids,
                );
                let mut addresses = Vec::new();
                let gate = self.registration_gate.get();
                for id in ids {
                    if gate.is_some_and(|g| g.blocks(id.0)) {
                        continue;
                    }
                    let Some(trunk) = self.table.trunk(id) else {
                        continue;
                    };
                    let local_answer = match self.drills.mode(id) {
                        Some(DrillMode::Down | DrillMode::Drain) => continue,
                        Some(DrillMode::Reject503) => Some(503),
                        _ => None,
                    };
                    // A DNS name's addresses in RFC 3263 order, the failed ones left out
                    // (each is one attempt of the route's max_attempts). One address (an IP
                    // literal, the common case): no list to build.
                    let target = |address| Target {
                        party: Party::Trunk(id.0),
                        address,
                        transport: transport(trunk.transport),
                        uri_host: trunk.uri_host.clone(),
                        local_answer,
                    };
                    if let [address] = trunk.addresses.as_slice() {
                        out.push(target(*address));
                        continue;
                    }
                    health.usable_addresses(now, id, &trunk.addresses, &mut addresses);
                    out.extend(addresses.iter().map(|&a| target(a)));
                }
                drop(health);
                RouteChoice {
                    route: u16::try_from(route.index).ok(),
                    failover: self
                        .failover
                        .get(route.index)
                        .copied()
                        .unwrap_or(FailoverPolicy::NONE),
                }
            }
            Party::Trunk(_) => {
                let nodes = self.table.pbx_nodes();
                if nodes.len() == 1 {
                    // One PBX (the common case): no ordering to compute.
                    let pbx = self.table.pbx();
                    out.push(pbx_target(pbx));
                } else {
                    let mut order = Vec::with_capacity(nodes.len());
                    self.table.inbound_candidates(request_user, &mut order);
                    let health = self.pbx_health.lock().unwrap_or_else(|e| e.into_inner());
                    let usable = |i: &usize| {
                        u16::try_from(*i).is_ok_and(|id| health.usable(now, TrunkId(id)))
                    };
                    // Nodes that are down are skipped; with every node down all are tried
                    // anyway: calls from the outside have nowhere else to go.
                    if order.iter().any(usable) {
                        order.retain(usable);
                    }
                    out.extend(order.iter().filter_map(|&i| nodes.get(i)).map(pbx_target));
                }
                RouteChoice {
                    route: None,
                    failover: self.inbound,
                }
            }
            Party::Unknown => RouteChoice::default(),
        }
    }

    fn trunk_candidates(&self, now: Instant, trunk: u16, out: &mut Vec<Target>) {
        let id = TrunkId(trunk);
        let Some(entry) = self.table.trunk(id) else {
            return;
        };
        if self
            .registration_gate
            .get()
            .is_some_and(|g| g.blocks(trunk))
        {
            return;
        }
        let local_answer = match self.drills.mode(id) {
            Some(DrillMode::Down | DrillMode::Drain) => return,
            Some(DrillMode::Reject503) => Some(503),
            _ => None,
        };
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if !health.usable(now, id) {
            return;
        }
        let mut addresses = Vec::new();
        health.usable_addresses(now, id, &entry.addresses, &mut addresses);
        out.extend(addresses.iter().map(|&address| Target {
            party: Party::Trunk(trunk),
            address,
            transport: transport(entry.transport),
            uri_host: entry.uri_host.clone(),
            local_answer,
        }));
    }

    fn normalise(&self, trunk: u16, toward_trunk: bool) -> Option<&Normalise> {
        let [outbound, inbound] = self.normalise.get(usize::from(trunk))?;
        if toward_trunk {
            outbound.as_ref()
        } else {
            inbound.as_ref()
        }
    }

    fn anchor_media(&self, trunk: u16) -> bool {
        self.table
            .trunk(TrunkId(trunk))
            .is_none_or(|t| t.anchor_media)
    }

    fn topology_hiding(&self, trunk: u16) -> bool {
        self.topology_hiding
            .get(usize::from(trunk))
            .copied()
            .unwrap_or(false)
    }

    fn any_topology_hiding(&self) -> bool {
        self.any_topology_hiding
    }
}

fn party(source: Source) -> Party {
    match source {
        Source::Pbx => Party::Pbx,
        Source::Trunk(id) => Party::Trunk(id.0),
        Source::Unknown => Party::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkgate_config::Policy;

    fn routing() -> PolicyRouting {
        let policy = Policy::embedded_default().unwrap();
        let mut ids = trunkgate_control::TrunkIds::default();
        let table = RoutingTable::new(&policy, &mut ids, crate::startup::resolve).unwrap();
        PolicyRouting::new(table, &policy)
    }

    struct Idle;
    impl TrunkLoad for Idle {
        fn sessions(&self, _trunk: u16) -> u32 {
            0
        }
    }

    #[test]
    fn classifies_sources_as_parties() {
        let r = routing();
        assert_eq!(r.classify([127, 0, 0, 2].into()), Party::Pbx);
        assert_eq!(r.classify([127, 0, 0, 3].into()), Party::Trunk(0));
        assert_eq!(r.classify([127, 0, 0, 4].into()), Party::Trunk(1));
        assert_eq!(r.classify([192, 0, 2, 1].into()), Party::Unknown);
    }

    #[test]
    fn pbx_calls_go_to_the_route_trunks_in_order() {
        let r = routing();
        let mut out = Vec::new();
        let choice = r.candidates(
            Instant::now(),
            Party::Pbx,
            Some(b"+15551234567"),
            &Idle,
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                Target {
                    party: Party::Trunk(0),
                    address: "127.0.0.3:5060".parse().unwrap(),
                    transport: None,
                    uri_host: "127.0.0.3:5060".into(),
                    local_answer: None,
                },
                Target {
                    party: Party::Trunk(1),
                    address: "127.0.0.4:5060".parse().unwrap(),
                    transport: None,
                    uri_host: "127.0.0.4:5060".into(),
                    local_answer: None,
                },
            ]
        );
        assert_eq!(choice.route, Some(0));
        assert_eq!(choice.failover, FailoverPolicy::standard());
    }

    #[test]
    fn trunks_health_takes_out_are_skipped() {
        let r = routing();
        let now = Instant::now();
        r.health().lock().unwrap().retry_after(now, TrunkId(0), 60);
        let mut out = Vec::new();
        r.candidates(now, Party::Pbx, Some(b"+15551234567"), &Idle, &mut out);
        let parties: Vec<Party> = out.iter().map(|t| t.party).collect();
        assert_eq!(parties, [Party::Trunk(1)]);
    }

    fn drill(r: &PolicyRouting, trunk: u16, mode: DrillMode) {
        let request = trunkgate_control::drill::DrillRequest {
            trunk: TrunkId(trunk),
            trunk_name: format!("t{trunk}"),
            mode,
            duration: std::time::Duration::from_secs(20),
            started_by: "local".into(),
            max_duration: std::time::Duration::from_secs(60),
            state_before: None,
        };
        r.drills()
            .with(|d| d.start(Instant::now(), 0, request).map(|_| ()))
            .unwrap();
    }

    #[test]
    fn drills_skip_or_answer_the_trunk() {
        let route = |r: &PolicyRouting| {
            let mut out = Vec::new();
            r.candidates(Instant::now(), Party::Pbx, Some(b"1"), &Idle, &mut out);
            out.iter()
                .map(|t| (t.party, t.local_answer))
                .collect::<Vec<_>>()
        };
        for mode in [DrillMode::Down, DrillMode::Drain] {
            let r = routing();
            drill(&r, 0, mode);
            assert_eq!(route(&r), [(Party::Trunk(1), None)], "{mode}");
        }
        let r = routing();
        drill(&r, 0, DrillMode::Reject503);
        assert_eq!(
            route(&r),
            [(Party::Trunk(0), Some(503)), (Party::Trunk(1), None)]
        );
        // cap=N is admission's; probe-fail is health's: routing is unchanged.
        let r = routing();
        drill(&r, 0, DrillMode::Cap(5));
        assert_eq!(
            route(&r),
            [(Party::Trunk(0), None), (Party::Trunk(1), None)]
        );
        r.drills().with(|d| d.stop(0, None));
        assert!(!r.drills().any());
    }

    #[test]
    fn trunk_calls_go_to_the_pbx_and_unknown_sources_nowhere() {
        let r = routing();
        let mut out = Vec::new();
        r.candidates(
            Instant::now(),
            Party::Trunk(1),
            Some(b"100"),
            &Idle,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].party, Party::Pbx);
        assert_eq!(out[0].address, "127.0.0.2:5060".parse().unwrap());
        out.clear();
        r.candidates(
            Instant::now(),
            Party::Unknown,
            Some(b"100"),
            &Idle,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn peer_transport_maps_auto_to_none() {
        assert_eq!(transport(PeerTransport::Auto), None);
        assert_eq!(transport(PeerTransport::Udp), Some(Transport::Udp));
        assert_eq!(transport(PeerTransport::Tcp), Some(Transport::Tcp));
        assert_eq!(transport(PeerTransport::Tls), Some(Transport::Tls));
    }
}

#[cfg(test)]
mod pbx_node_tests {
    use super::*;
    use trunkgate_config::Policy;

    struct Idle;
    impl TrunkLoad for Idle {
        fn sessions(&self, _trunk: u16) -> u32 {
            0
        }
    }

    fn routing() -> PolicyRouting {
        let src = r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "127.0.0.2:5060"
probe = { interval = "1s", down_after = 1 }
[[pbx.node]]
name = "site-b"
address = "127.0.0.5:5060"
probe = { interval = "1s", down_after = 1 }
[[trunk]]
name = "a"
address = "127.0.0.3:5060"
"#;
        let policy = Policy::from_toml(src, "t.toml").unwrap();
        let table = RoutingTable::new(
            &policy,
            &mut trunkgate_control::TrunkIds::default(),
            |_, _| Err(std::io::Error::other("no DNS")),
        )
        .unwrap();
        PolicyRouting::new(table, &policy)
    }

    fn inbound(r: &PolicyRouting, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        let choice = r.candidates(now, Party::Trunk(0), Some(b"100"), &Idle, &mut out);
        assert_eq!(choice.failover, FailoverPolicy::standard());
        out.iter().map(|t| t.address.to_string()).collect()
    }

    #[test]
    fn a_pbx_node_that_is_down_is_skipped_unless_all_are() {
        let r = routing();
        let now = Instant::now();
        assert_eq!(inbound(&r, now), ["127.0.0.2:5060", "127.0.0.5:5060"]);
        let down = |id: u16| {
            r.pbx_health().lock().unwrap().on_probe(
                now,
                TrunkId(id),
                trunkgate_control::ProbeOutcome::Timeout,
                None,
            )
        };
        assert!(down(0).is_some());
        assert_eq!(inbound(&r, now), ["127.0.0.5:5060"]);
        assert!(down(1).is_some());
        // Every node down: all are offered anyway.
        assert_eq!(inbound(&r, now), ["127.0.0.2:5060", "127.0.0.5:5060"]);
    }
}
