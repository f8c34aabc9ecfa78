//! `trunkgate-control`: routing policy at run time. Which peer a source address is
//! ([`RoutingTable::classify`]), which route an outbound call takes
//! ([`RoutingTable::outbound`]) and in which order its trunks are tried
//! ([`RoutingTable::candidates`]); and admission ([`admission::AdmissionControl`]): flood
//! limits and bans per source, call-rate limits per trunk, the REGISTER rate, scanner
//! User-Agents.
//!
//! What lives here: decisions, as plain data built once from a validated
//! [`Policy`](trunkgate_config::Policy) and read lock-free per message. What does not:
//! sockets, timers or tasks (the binary and `trunkgate-sip` own those; admission's token
//! buckets read governor's clock, and the binary calls its `maintain` every second). Later:
//! trunk health, capacity statistics.

pub mod admission;
mod sources;
pub mod strategy;

pub use strategy::Candidates;

use ipnet::IpNet;
use sources::SourceTable;
use std::net::{IpAddr, SocketAddr};
use strategy::Selector;
use trunkgate_config::{HostPort, PeerTransport, Policy, Strategy};

/// Who sent a datagram, by its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Pbx,
    /// Index into the policy's trunks (and [`RoutingTable::trunk`]).
    Trunk(usize),
    /// In no allow list: dropped or refused by admission.
    Unknown,
}

/// The PBX as Trunkgate reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    pub address: SocketAddr,
    pub transport: PeerTransport,
    /// The configured `host:port` text, for Request-URIs: `127.0.0.2:5060`, `pbx.lan:5060`.
    pub uri_host: String,
}

/// A trunk as Trunkgate reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkEntry {
    pub name: String,
    pub address: SocketAddr,
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
}

/// An outbound route: its trunks in configured order and how to order them per call.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    /// Indices of trunks ([`RoutingTable::trunk`]) in the order written.
    pub trunks: Vec<usize>,
    pub strategy: Strategy,
    selector: Selector,
}

impl RouteEntry {
    /// Trunk indices in this route's strategy order.
    pub fn candidates(&self) -> Candidates<'_> {
        self.selector.candidates(&self.trunks)
    }
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
    pbx: PeerEntry,
    trunks: Vec<TrunkEntry>,
    routes: Vec<RouteEntry>,
    sources: SourceTable,
    /// `(to_prefix, route index)`, longest prefix first, then file order.
    prefixes: Vec<(Box<[u8]>, usize)>,
}

impl RoutingTable {
    /// Build from `policy`. Addresses that are IP literals are used as written; DNS names go
    /// through `resolve`, once, here. The resolved IPs classify as their peers (as /32 or
    /// /128) beside the allow lists.
    pub fn new(
        policy: &Policy,
        resolve: impl Fn(&HostPort) -> std::io::Result<SocketAddr>,
    ) -> Result<RoutingTable, ResolveError> {
        let lookup = |peer: String, hp: &HostPort| match hp.to_socket_addr() {
            Some(addr) => Ok(addr),
            None => resolve(hp).map_err(|source| ResolveError::Resolve {
                peer,
                address: hp.to_string(),
                source,
            }),
        };
        let pbx = PeerEntry {
            address: lookup("pbx".to_owned(), &policy.pbx.address)?,
            transport: policy.pbx.transport,
            uri_host: policy.pbx.address.to_string(),
        };
        let mut trunks = Vec::with_capacity(policy.trunks.len());
        for t in &policy.trunks {
            trunks.push(TrunkEntry {
                name: t.name.clone(),
                address: lookup(format!("trunk \"{}\"", t.name), &t.address)?,
                transport: t.transport,
                uri_host: t.address.to_string(),
                max_sessions: t.max_sessions,
                max_cps: t.max_cps,
                max_inbound: t.max_inbound,
                max_outbound: t.max_outbound,
                cps_burst: t.cps_burst,
                anchor_media: t.anchor_media,
            });
        }

        let pbx_claims = policy
            .pbx
            .allow
            .iter()
            .copied()
            .chain([IpNet::from(pbx.address.ip())]);
        let claims = pbx_claims.map(|n| (n, Source::Pbx)).chain(
            policy
                .trunks
                .iter()
                .zip(&trunks)
                .enumerate()
                .flat_map(|(i, (t, e))| {
                    let own = IpNet::from(e.address.ip());
                    t.allow
                        .iter()
                        .copied()
                        .chain([own])
                        .map(move |n| (n, Source::Trunk(i)))
                }),
        );
        let describe = |s: Source| match s {
            Source::Pbx => "pbx".to_owned(),
            Source::Trunk(i) => trunks.get(i).map_or_else(
                || format!("trunk #{i}"),
                |t| format!("trunk \"{}\"", t.name),
            ),
            Source::Unknown => "nobody".to_owned(),
        };
        let sources = SourceTable::new(claims).map_err(|c| ResolveError::Ambiguous {
            net: c.net,
            first: describe(c.first),
            second: describe(c.second),
        })?;

        let routes: Vec<RouteEntry> = policy
            .routes
            .iter()
            .map(|r| RouteEntry {
                name: r.name.clone(),
                trunks: r.trunks.clone(),
                strategy: r.strategy,
                selector: Selector::new(r.strategy),
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
            trunks,
            routes,
            sources,
            prefixes,
        })
    }

    /// Which peer `ip` belongs to (longest-prefix match). No allocation, no lock.
    pub fn classify(&self, ip: IpAddr) -> Source {
        self.sources.classify(ip)
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

    /// Trunk indices of `route` in its strategy's order; try them until one is usable.
    pub fn candidates<'r>(&self, route: &'r RouteEntry) -> Candidates<'r> {
        route.candidates()
    }

    /// The trunk at index `i` (as in [`Source::Trunk`] and [`RouteEntry::trunks`]).
    ///
    /// # Panics
    /// If `i` is not below [`RoutingTable::trunk_count`]; indices from this table always are.
    pub fn trunk(&self, i: usize) -> &TrunkEntry {
        &self.trunks[i]
    }

    pub fn trunk_count(&self) -> usize {
        self.trunks.len()
    }

    /// All trunks in policy order.
    pub fn trunks(&self) -> &[TrunkEntry] {
        &self.trunks
    }

    /// The index of the trunk named `name`.
    pub fn trunk_index(&self, name: &str) -> Option<usize> {
        self.trunks.iter().position(|t| t.name == name)
    }

    pub fn pbx(&self) -> &PeerEntry {
        &self.pbx
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }
}

#[cfg(test)]
mod tests;
