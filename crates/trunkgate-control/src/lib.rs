//! `trunkgate-control`: routing policy at run time. Which peer a source address is
//! ([`RoutingTable::classify`]), which route an outbound call takes
//! ([`RoutingTable::outbound`]) and in which order its trunks are tried
//! ([`RoutingTable::candidates`]); and admission ([`admission::AdmissionControl`]): flood
//! limits and bans per source, call-rate limits per trunk, the REGISTER rate, scanner
//! User-Agents; and trunk health ([`Health`]): OPTIONS probes, the circuit breaker and
//! `Retry-After`, which candidates skip. Trunks are named by stable [`TrunkId`]s.
//!
//! What lives here: decisions, as plain data built once from a validated
//! [`Policy`](trunkgate_config::Policy) and read lock-free per message. What does not:
//! sockets, timers or tasks (the binary and `trunkgate-sip` own those; admission's token
//! buckets read governor's clock, and the binary calls its `maintain` every second).
//! [`Health`] is sans-IO: every method takes `now`. Later: capacity statistics.

pub mod admission;
pub mod drill;
pub mod health;
mod sources;
pub mod strategy;
mod trunk_id;

pub use drill::{DrillMode, Drills};
pub use health::{
    BranchOutcome, ChangeReason, Health, ProbeOutcome, StateChange, TrunkHealth, TrunkState,
};
pub use trunk_id::{AccountId, TrunkId, TrunkIds};
pub use trunkgate_config::{HealthSettings, Probe};

use ipnet::IpNet;
use smallvec::SmallVec;
use sources::SourceTable;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use strategy::{Candidate, Selector};
use trunkgate_config::{HostPort, PeerTransport, Policy, Strategy};

/// Who sent a datagram, by its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Pbx,
    /// A trunk, by its stable id ([`RoutingTable::trunk`]).
    Trunk(TrunkId),
    /// In no allow list: dropped or refused by admission.
    Unknown,
}

/// A PBX node as Trunkgate reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// `pbx` for `[pbx]` itself, else the `[[pbx.node]]` name.
    pub name: String,
    pub address: SocketAddr,
    pub transport: PeerTransport,
    /// The configured `host:port` text, for Request-URIs: `127.0.0.2:5060`, `pbx.lan:5060`.
    pub uri_host: String,
    /// DID prefixes this node takes first.
    pub dids: Vec<String>,
    /// OPTIONS probes of this node.
    pub probe: Option<trunkgate_config::Probe>,
}

/// A trunk as Trunkgate reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkEntry {
    pub id: TrunkId,
    pub name: String,
    /// Where requests go first: the first of `addresses`.
    pub address: SocketAddr,
    /// Every address of the trunk, in the order to try them: one for an IP literal, the
    /// RFC 3263 order (SRV priority, then weight; A/AAAA records in the order returned) for
    /// a DNS name. All of them classify as this trunk.
    pub addresses: Vec<SocketAddr>,
    pub transport: PeerTransport,
    /// The configured `host:port` text: `127.0.0.3:5060`, `sip.carrier.example:5060`.
    pub uri_host: String,
    pub max_sessions: Option<u32>,
    pub max_cps: Option<u32>,
    /// Within `max_sessions`: calls from this trunk to the PBX.
    pub max_inbound: Option<u32>,
    /// Within `max_sessions`: calls from the PBX to this trunk.
    pub max_outbound: Option<u32>,
    /// Bucket size of `max_cps` (`Some` exactly when `max_cps` is).
    pub cps_burst: Option<u32>,
    /// `media.anchor`: this trunk's calls have their media relayed.
    pub anchor_media: bool,
    /// `weight`: share of first picks under `weighted` (≥ 1).
    pub weight: u32,
    /// `probe = { … }`: OPTIONS health probes; `None`: not probed.
    pub probe: Option<Probe>,
    /// The `[[account]]` this trunk belongs to, if any.
    pub account: Option<AccountId>,
    /// `[trunk.outbound]`: header normalisation of requests sent to it.
    pub outbound: Option<trunkgate_config::HeaderRules>,
    /// `[trunk.inbound]`: of requests from it to the PBX.
    pub inbound: Option<trunkgate_config::HeaderRules>,
    /// `topology_hiding`: it sees nothing of the inside.
    pub topology_hiding: bool,
}

/// A provider account: limits its trunks draw on together (on top of their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub id: AccountId,
    pub name: String,
    /// Its trunks, in the order written.
    pub trunks: Vec<TrunkId>,
    pub max_sessions: Option<u32>,
    pub max_inbound: Option<u32>,
    pub max_outbound: Option<u32>,
    pub max_cps: Option<u32>,
    /// Bucket size of `max_cps` (`Some` exactly when `max_cps` is).
    pub cps_burst: Option<u32>,
}

/// An outbound route: its trunks in configured order, how to order them per call and how
/// a call fails over between them.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    /// Position in [`RoutingTable::routes`] (file order), for metrics.
    pub index: usize,
    /// The route's trunks ([`RoutingTable::trunk`]) in the order written.
    pub trunks: Vec<TrunkId>,
    pub strategy: Strategy,
    /// Final codes (300–699) from a trunk that try the next candidate; timeouts and
    /// transport errors always do.
    pub failover_on: Vec<u16>,
    /// No provisional response from a trunk this long: next candidate. `None`: off.
    pub try_timeout: Option<Duration>,
    /// Trunks tried per call, at most (1–16).
    pub max_attempts: u32,
    /// Total bound from the INVITE; then the PBX gets the last failure's code, or 408.
    pub setup_timeout: Duration,
    selector: Selector,
}

/// Building a [`RoutingTable`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve the address {address} of {peer}: {source}")]
    Resolve {
        /// `pbx` or `trunk "carrier-a"`.
        peer: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trunk \"{0}\" gets no id: all 65536 trunk ids have been given to other names")]
    TrunkIdsExhausted(String),
    #[error("account \"{0}\" gets no id: all 65536 account ids have been given to other names")]
    AccountIdsExhausted(String),
    #[error(
        "{first} and {second} both claim source {net}; every source address must belong to one peer"
    )]
    Ambiguous {
        net: IpNet,
        first: String,
        second: String,
    },
}

/// Routing decisions for one policy snapshot. Built once; read concurrently.
#[derive(Debug)]
pub struct RoutingTable {
    /// `[pbx]` first, then its `[[pbx.node]]`s (never empty).
    pbx: Vec<PeerEntry>,
    /// Failover between the PBX nodes for calls from trunks.
    inbound: trunkgate_config::Failover,
    /// In policy order.
    trunks: Vec<TrunkEntry>,
    /// `by_id[id]`: the position of trunk `id` in `trunks`, if this policy has it.
    by_id: Vec<Option<usize>>,
    routes: Vec<RouteEntry>,
    /// `[[account]]`s in policy order.
    accounts: Vec<AccountEntry>,
    sources: SourceTable,
    /// `(to_prefix, route index)`, longest prefix first, then file order.
    prefixes: Vec<(Box<[u8]>, usize)>,
}

impl RoutingTable {
    /// Build from `policy`. Trunk ids come from `ids` (assigned there for new names, so
    /// a first build numbers them in policy order and later ones keep them by name).
    /// Addresses that are IP literals are used as written; DNS names go through `resolve`
    /// (given the peer's transport, for SRV), here: a name may give several addresses, in the
    /// order to try them. The resolved IPs classify as their peers (as /32 or /128) beside
    /// the allow lists. A PBX node uses the first address of its name.
    pub fn new(
        policy: &Policy,
        ids: &mut TrunkIds,
        resolve: impl Fn(&HostPort, PeerTransport) -> std::io::Result<Vec<SocketAddr>>,
    ) -> Result<RoutingTable, ResolveError> {
        let lookup_all = |peer: String, hp: &HostPort, transport: PeerTransport| {
            let failed = |source| ResolveError::Resolve {
                peer,
                address: hp.to_string(),
                source,
            };
            // (first, all): never empty.
            match hp.to_socket_addr() {
                Some(addr) => Ok((addr, vec![addr])),
                None => match resolve(hp, transport) {
                    Ok(addrs) => match addrs.first() {
                        Some(&first) => Ok((first, addrs)),
                        None => Err(failed(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no address",
                        ))),
                    },
                    Err(source) => Err(failed(source)),
                },
            }
        };
        let lookup = |peer: String, hp: &HostPort, transport: PeerTransport| {
            lookup_all(peer, hp, transport).map(|(first, _)| first)
        };
        let mut pbx = vec![PeerEntry {
            name: "pbx".to_owned(),
            address: lookup("pbx".to_owned(), &policy.pbx.address, policy.pbx.transport)?,
            transport: policy.pbx.transport,
            uri_host: policy.pbx.address.to_string(),
            dids: Vec::new(),
            probe: policy.pbx.probe.clone(),
        }];
        for node in &policy.pbx.nodes {
            pbx.push(PeerEntry {
                name: node.name.clone(),
                address: lookup(
                    format!("pbx node \"{}\"", node.name),
                    &node.address,
                    node.transport,
                )?,
                transport: node.transport,
                uri_host: node.address.to_string(),
                dids: node.dids.clone(),
                probe: node.probe.clone(),
            });
        }
        let mut trunks = Vec::with_capacity(policy.trunks.len());
        let mut by_id: Vec<Option<usize>> = Vec::new();
        for (position, t) in policy.trunks.iter().enumerate() {
            let id = ids
                .assign(&t.name)
                .ok_or_else(|| ResolveError::TrunkIdsExhausted(t.name.clone()))?;
            let slot = usize::from(id.0);
            if by_id.len() <= slot {
                by_id.resize(slot + 1, None);
            }
            by_id[slot] = Some(position);
            let (address, addresses) =
                lookup_all(format!("trunk \"{}\"", t.name), &t.address, t.transport)?;
            trunks.push(TrunkEntry {
                id,
                name: t.name.clone(),
                address,
                addresses,
                transport: t.transport,
                uri_host: t.address.to_string(),
                max_sessions: t.max_sessions,
                max_cps: t.max_cps,
                max_inbound: t.max_inbound,
                max_outbound: t.max_outbound,
                cps_burst: t.cps_burst,
                anchor_media: t.anchor_media,
                weight: t.weight,
                probe: t.probe.clone(),
                account: None,
                outbound: t.outbound.clone(),
                inbound: t.inbound.clone(),
                topology_hiding: t.topology_hiding,
            });
        }
        let mut accounts = Vec::with_capacity(policy.accounts.len());
        for a in &policy.accounts {
            let id = ids
                .assign_account(&a.name)
                .ok_or_else(|| ResolveError::AccountIdsExhausted(a.name.clone()))?;
            let mut members = Vec::with_capacity(a.trunks.len());
            for &i in &a.trunks {
                if let Some(trunk) = trunks.get_mut(i) {
                    trunk.account = Some(id);
                    members.push(trunk.id);
                }
            }
            accounts.push(AccountEntry {
                id,
                name: a.name.clone(),
                trunks: members,
                max_sessions: a.max_sessions,
                max_inbound: a.max_inbound,
                max_outbound: a.max_outbound,
                max_cps: a.max_cps,
                cps_burst: a.cps_burst,
            });
        }

        // The peers' own addresses: written as an IP literal, each claims its IP, or only
        // its port where peers share one IP (`sources.rs`); resolved from a name, its IP.
        let written = std::iter::once(&policy.pbx.address)
            .chain(policy.pbx.nodes.iter().map(|n| &n.address))
            .zip(pbx.iter().map(|node| (node.address, Source::Pbx)))
            .map(|(hp, (a, owner))| (hp, vec![a], owner))
            .chain(
                policy
                    .trunks
                    .iter()
                    .zip(&trunks)
                    .map(|(t, e)| (&t.address, e.addresses.clone(), Source::Trunk(e.id))),
            )
            .collect::<Vec<_>>();
        let literal = |hp: &HostPort| matches!(hp.host, trunkgate_config::Host::Ip(_));
        let addresses = written
            .iter()
            .filter(|(hp, _, _)| literal(hp))
            .flat_map(|(_, addrs, owner)| addrs.iter().map(move |&a| (a, *owner)))
            .collect::<Vec<_>>();
        let resolved = written
            .iter()
            .filter(|(hp, _, _)| !literal(hp))
            .flat_map(|(_, addrs, owner)| addrs.iter().map(move |a| (IpNet::from(a.ip()), *owner)))
            .collect::<Vec<_>>();
        let claims = policy
            .pbx
            .allow
            .iter()
            .chain(policy.pbx.nodes.iter().flat_map(|n| n.allow.iter()))
            .map(|&n| (n, Source::Pbx))
            .chain(
                policy
                    .trunks
                    .iter()
                    .zip(&trunks)
                    .flat_map(|(t, e)| t.allow.iter().map(move |&n| (n, Source::Trunk(e.id)))),
            )
            .chain(resolved);
        let describe = |s: Source| match s {
            Source::Pbx => "pbx".to_owned(),
            Source::Trunk(id) => trunks.iter().find(|t| t.id == id).map_or_else(
                || format!("trunk #{id}"),
                |t| format!("trunk \"{}\"", t.name),
            ),
            Source::Unknown => "nobody".to_owned(),
        };
        let sources = SourceTable::with_addresses(claims, addresses).map_err(|c| {
            ResolveError::Ambiguous {
                net: c.net,
                first: describe(c.first),
                second: describe(c.second),
            }
        })?;

        let routes: Vec<RouteEntry> = policy
            .routes
            .iter()
            .enumerate()
            .map(|(index, r)| RouteEntry {
                name: r.name.clone(),
                index,
                trunks: r
                    .trunks
                    .iter()
                    .filter_map(|&i| trunks.get(i).map(|t| t.id))
                    .collect(),
                strategy: r.strategy,
                failover_on: r.failover_on.clone(),
                try_timeout: r.try_timeout,
                max_attempts: r.max_attempts,
                setup_timeout: r.setup_timeout,
                selector: Selector::new(r.strategy, r.trunks.len()),
            })
            .collect();
        let mut prefixes: Vec<(Box<[u8]>, usize)> = policy
            .routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.to_prefix.iter().map(move |p| (p.as_bytes().into(), i)))
            .collect();
        // Stable: equal lengths keep file order, so ties go to the first route written.
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        Ok(RoutingTable {
            pbx,
            inbound: policy.pbx.inbound.clone(),
            trunks,
            by_id,
            routes,
            accounts,
            sources,
            prefixes,
        })
    }

    /// Which peer `ip` belongs to (longest-prefix match). No allocation, no lock.
    pub fn classify(&self, ip: IpAddr) -> Source {
        self.sources.classify(ip)
    }

    /// Which peer `source` belongs to: as [`RoutingTable::classify`], except that where
    /// peers share one IP (their `address`es differ only in port) the port decides.
    pub fn classify_at(&self, source: std::net::SocketAddr) -> Source {
        self.sources.classify_at(source)
    }

    /// The route for an outbound call to Request-URI user `request_user` (bytes as on the
    /// wire, `+` included): the longest matching `to_prefix`, ties to the first route in
    /// the file. No user part matches only the catch-all `""`. `None`: no route matches.
    pub fn outbound(&self, request_user: Option<&[u8]>) -> Option<&RouteEntry> {
        let user = request_user.unwrap_or_default();
        self.prefixes
            .iter()
            .find(|(prefix, _)| user.starts_with(prefix))
            .and_then(|&(_, i)| self.routes.get(i))
    }

    /// The trunks of `route` to try, best first, each once, into `out` (cleared first):
    /// the route's strategy orders the trunks that `health` says are usable at `now`
    /// (not down, not cooling down after `Retry-After`, not a half-open trunk whose one
    /// trial call is already out). `sessions` gives a trunk's sessions in progress (for
    /// `least-utilized`). Session and call-rate limits are not checked here: the caller
    /// skips candidates over them. No allocation for routes of up to 8 trunks.
    pub fn candidates(
        &self,
        route: &RouteEntry,
        now: Instant,
        health: &Health,
        sessions: &dyn Fn(TrunkId) -> u32,
        out: &mut Vec<TrunkId>,
    ) {
        out.clear();
        let mut usable: SmallVec<[Candidate; 8]> = SmallVec::new();
        for (position, &id) in route.trunks.iter().enumerate() {
            let Some(trunk) = self.trunk(id) else {
                continue;
            };
            if !health.usable(now, id) {
                continue;
            }
            usable.push(Candidate {
                id,
                position,
                weight: trunk.weight,
                sessions: sessions(id),
                max_sessions: trunk.max_sessions,
            });
        }
        route.selector.order(&usable, out);
    }

    /// The trunk with id `id`, if this policy has it.
    pub fn trunk(&self, id: TrunkId) -> Option<&TrunkEntry> {
        self.by_id
            .get(usize::from(id.0))
            .copied()
            .flatten()
            .and_then(|i| self.trunks.get(i))
    }

    pub fn trunk_count(&self) -> usize {
        self.trunks.len()
    }

    /// All trunks in policy order.
    pub fn trunks(&self) -> &[TrunkEntry] {
        &self.trunks
    }

    /// The id of the trunk named `name`, if this policy has it.
    pub fn trunk_id(&self, name: &str) -> Option<TrunkId> {
        self.trunks.iter().find(|t| t.name == name).map(|t| t.id)
    }

    /// The first PBX node (`[pbx]` itself).
    pub fn pbx(&self) -> &PeerEntry {
        // `new` always puts `[pbx]` first.
        &self.pbx[0]
    }

    /// How calls from trunks fail over between the PBX nodes (`[pbx]`'s failover keys).
    pub fn inbound_failover(&self) -> &trunkgate_config::Failover {
        &self.inbound
    }

    /// Every PBX node, `[pbx]` first, then `[[pbx.node]]`s as written.
    pub fn pbx_nodes(&self) -> &[PeerEntry] {
        &self.pbx
    }

    /// The PBX nodes for an inbound call to `request_user`, best first: nodes whose `dids`
    /// match the number (longest prefix first), then the others as written.
    pub fn inbound_candidates(&self, request_user: Option<&[u8]>, out: &mut Vec<usize>) {
        out.clear();
        let user = request_user.unwrap_or_default();
        let matched = |node: &PeerEntry| {
            node.dids
                .iter()
                .filter(|d| user.starts_with(d.as_bytes()))
                .map(String::len)
                .max()
        };
        let mut ranked: Vec<(usize, usize)> = self
            .pbx
            .iter()
            .enumerate()
            .filter_map(|(i, node)| matched(node).map(|len| (i, len)))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.extend(ranked.iter().map(|(i, _)| *i));
        for i in 0..self.pbx.len() {
            if !ranked.iter().any(|(m, _)| *m == i) {
                out.push(i);
            }
        }
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// All `[[account]]`s in file order.
    pub fn accounts(&self) -> &[AccountEntry] {
        &self.accounts
    }

    /// The account with id `id`, if this policy has it.
    pub fn account(&self, id: AccountId) -> Option<&AccountEntry> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

#[cfg(test)]
mod tests;
