//! The PBX and the trunks: addresses, transports, allow lists, limits, unique names, and
//! the rule that no source address belongs to two peers.

use super::{Check, PeerSpots, span_of};
use crate::error::At;
use crate::raw::{Field, RawPbx, RawPbxNode, RawTrunk};
use crate::values::{self, Problem};
use crate::{Host, HostPort, Pbx, PbxNode, PeerTransport, Policy, Trunk};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use toml::Spanned;

impl Check<'_, '_> {
    fn transport(&mut self, f: Option<&Field>, what: &str) -> PeerTransport {
        f.and_then(|f| {
            self.parsed(f, what, |s| match s {
                "auto" => Ok(PeerTransport::Auto),
                "udp" => Ok(PeerTransport::Udp),
                "tcp" => Ok(PeerTransport::Tcp),
                "tls" => Ok(PeerTransport::Tls),
                _ => Err(Problem::new(format!("unknown transport `{s}`"))
                    .hint("one of: auto, udp, tcp, tls")),
            })
        })
        .unwrap_or(PeerTransport::Auto)
    }

    pub(super) fn allow(&mut self, f: Option<&Field>, what: &str) -> (Vec<IpNet>, Vec<At>) {
        let mut nets = Vec::new();
        let mut spots = Vec::new();
        let Some(f) = f else { return (nets, spots) };
        for (text, at) in self.strings(f, what).unwrap_or_default() {
            match values::cidr(text) {
                Ok(net) => {
                    nets.push(net);
                    spots.push(at.clone());
                }
                Err(p) => self.problem(at, what, p),
            }
        }
        (nets, spots)
    }

    fn address(
        &mut self,
        f: Option<&Field>,
        what: &str,
        missing_at: &At,
        missing_msg: &str,
    ) -> (HostPort, At) {
        let placeholder = HostPort {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: 0,
            port_given: true,
        };
        let Some(f) = f else {
            let hint = "add address = \"HOST:PORT\", e.g. \"10.0.0.5:5060\"";
            self.report
                .error(missing_at, missing_msg, Some(hint.into()));
            return (placeholder, missing_at.clone());
        };
        (
            self.parsed(f, what, values::host_port)
                .unwrap_or(placeholder),
            f.at.clone(),
        )
    }

    /// `[pbx]` and its `[[pbx.node]]`s; the spots of every node, the first one first.
    pub(super) fn pbx(&mut self, raw: Option<&Spanned<RawPbx>>) -> (Pbx, Vec<PeerSpots>) {
        let (table, at) = match raw {
            Some(t) => (Some(t.get_ref()), span_of(t)),
            None => {
                let hint = "add a [pbx] table with address = \"HOST:PORT\"";
                self.report.error(
                    &At::Nowhere,
                    "the policy has no [pbx] table",
                    Some(hint.into()),
                );
                (None, At::Nowhere)
            }
        };
        let empty = RawPbx::default();
        let t = table.unwrap_or(&empty);
        let (address, address_at) = if table.is_some() {
            self.address(
                t.address.as_ref(),
                "pbx.address",
                &at,
                "[pbx] has no address",
            )
        } else {
            (
                HostPort {
                    host: Host::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    port: 0,
                    port_given: true,
                },
                At::Nowhere,
            )
        };
        let transport = self.transport(t.transport.as_ref(), "pbx.transport");
        let tls = self.peer_tls(
            t.tls.as_ref(),
            transport,
            t.transport.as_ref().map(|f| &f.at),
            "pbx",
            &address,
        );
        let (allow, allow_spots) = self.allow(t.allow.as_ref(), "pbx.allow");
        let probe = self.probe(t.probe.as_ref(), "pbx");
        let inbound = self.failover(
            &super::failover::FailoverFields {
                failover_on: t.failover_on.as_ref(),
                try_timeout: t.try_timeout.as_ref(),
                max_attempts: t.max_attempts.as_ref(),
                setup_timeout: t.setup_timeout.as_ref(),
            },
            "pbx",
        );
        let mut spots = vec![PeerSpots {
            allow: allow_spots,
            address: address_at,
        }];
        let mut nodes = Vec::new();
        let mut names: HashMap<String, At> = HashMap::new();
        for node in t
            .node
            .as_ref()
            .map(|n| n.get_ref().as_slice())
            .unwrap_or_default()
        {
            let (node, node_spots) = self.pbx_node(node, &mut names);
            nodes.push(node);
            spots.push(node_spots);
        }
        (
            Pbx {
                address,
                transport,
                allow,
                probe,
                nodes,
                inbound,
                tls,
            },
            spots,
        )
    }

    /// One `[[pbx.node]]`: a unique name (not `pbx`, the first node's), an address, an allow
    /// list, DID prefixes.
    fn pbx_node(
        &mut self,
        raw: &Spanned<RawPbxNode>,
        names: &mut HashMap<String, At>,
    ) -> (PbxNode, PeerSpots) {
        let at = span_of(raw);
        let t = raw.get_ref();
        let name = match &t.name {
            None => {
                self.report.error(
                    &at,
                    "[[pbx.node]] has no name",
                    Some("add name = \"site-b\" (a unique name for the node)".into()),
                );
                String::new()
            }
            Some(f) => self
                .parsed(f, "pbx.node name", |s| {
                    if s.is_empty() || s == "pbx" {
                        Err(Problem::new(format!("`{s}` cannot name a PBX node"))
                            .hint("`pbx` is the first node ([pbx] itself); write another name, e.g. \"site-b\""))
                    } else {
                        Ok(s.to_owned())
                    }
                })
                .unwrap_or_default(),
        };
        if let (Some(f), false) = (&t.name, name.is_empty()) {
            if let Some(first) = names.get(&name) {
                let hint = format!(
                    "it is first defined at {}; every node needs its own name",
                    self.report.describe(first)
                );
                self.report.error(
                    &f.at,
                    format!("PBX node \"{name}\" is defined twice"),
                    Some(hint),
                );
            } else {
                names.insert(name.clone(), f.at.clone());
            }
        }
        let what = format!("pbx.node \"{name}\"");
        let (address, address_at) = self.address(
            t.address.as_ref(),
            &format!("{what} address"),
            &at,
            &format!("{what} has no address"),
        );
        let transport = self.transport(t.transport.as_ref(), &format!("{what} transport"));
        // A node over TLS uses [pbx]'s tls table (one TLS profile for the PBX).
        let _ = self.peer_tls(
            None,
            transport,
            t.transport.as_ref().map(|f| &f.at),
            &what,
            &address,
        );
        let (allow, allow_spots) = self.allow(t.allow.as_ref(), &format!("{what} allow"));
        let probe = self.probe(t.probe.as_ref(), &what);
        let mut dids = Vec::new();
        if let Some(f) = &t.dids {
            let dids_what = format!("{what} dids");
            for (p, p_at) in self.strings(f, &dids_what).unwrap_or_default() {
                match values::to_prefix(p) {
                    Ok(()) if !p.is_empty() => dids.push(p.to_owned()),
                    Ok(()) => self.report.error(
                        p_at,
                        format!("{dids_what}: an empty prefix would match every number"),
                        Some(
                            "list the DID prefixes this node takes first, e.g. [\"+44207946\"]"
                                .into(),
                        ),
                    ),
                    Err(e) => self.problem(p_at, &dids_what, e),
                }
            }
        }
        (
            PbxNode {
                name,
                address,
                transport,
                allow,
                dids,
                probe,
            },
            PeerSpots {
                allow: allow_spots,
                address: address_at,
            },
        )
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn trunks(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawTrunk>>>>,
    ) -> (Vec<(Trunk, PeerSpots)>, HashMap<String, usize>) {
        let mut out = Vec::new();
        let mut names: HashMap<String, (usize, At)> = HashMap::new();
        let list = raw.map(|r| (span_of(&r), r.into_inner()));
        match &list {
            None => {
                let hint = "add a [[trunk]] with name and address";
                self.report.error(
                    &At::Nowhere,
                    "the policy has no [[trunk]]",
                    Some(hint.into()),
                );
            }
            Some((at, l)) if l.is_empty() => {
                self.report.error(
                    at,
                    "the policy has no [[trunk]]",
                    Some("add a [[trunk]] with name and address".into()),
                );
            }
            Some(_) => {}
        }
        for (i, spanned) in list
            .map(|(_, l)| l)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = span_of(&spanned);
            let t = spanned.into_inner();
            let name = match &t.name {
                None => {
                    self.report.error(
                        &at,
                        format!("[[trunk]] #{} has no name", i + 1),
                        Some("add name = \"carrier-a\"".into()),
                    );
                    format!("#{}", i + 1)
                }
                Some(f) => {
                    let name = self.string(f, "trunk name").map(str::to_owned);
                    if let Some(n) = &name {
                        if let Err(p) = values::name(n) {
                            self.problem(&f.at, "trunk name", p);
                        } else if n == "none" {
                            let hint = "metrics label traffic tied to no trunk trunk=\"none\": pick another name";
                            self.report.error(
                                &f.at,
                                "trunk name \"none\" is reserved",
                                Some(hint.into()),
                            );
                        }
                        if let Some((_, first)) = names.get(n) {
                            let hint = format!(
                                "trunk names must be unique; the first is at {}",
                                self.report.describe(first)
                            );
                            self.report.error(
                                &f.at,
                                format!("trunk \"{n}\" is defined twice"),
                                Some(hint),
                            );
                        } else {
                            names.insert(n.clone(), (i, f.at.clone()));
                        }
                    }
                    name.unwrap_or_else(|| format!("#{}", i + 1))
                }
            };
            let what = |key: &str| format!("trunk \"{name}\" {key}");
            let (address, address_at) = self.address(
                t.address.as_ref(),
                &what("address"),
                &at,
                &format!("trunk \"{name}\" has no address"),
            );
            let transport = self.transport(t.transport.as_ref(), &what("transport"));
            let tls = self.peer_tls(
                t.tls.as_ref(),
                transport,
                t.transport.as_ref().map(|f| &f.at),
                &format!("trunk \"{name}\""),
                &address,
            );
            let (allow, allow_spots) = self.allow(t.allow.as_ref(), &what("allow"));
            let limits = self.call_limits(
                &super::accounts::LimitFields {
                    max_sessions: t.max_sessions.as_ref(),
                    max_inbound: t.max_inbound.as_ref(),
                    max_outbound: t.max_outbound.as_ref(),
                    max_cps: t.max_cps.as_ref(),
                    cps_burst: t.cps_burst.as_ref(),
                },
                &format!("trunk \"{name}\""),
            );
            let anchor_media = self.trunk_anchor(t.media.as_ref(), &name);
            let weight = self.trunk_weight(t.weight.as_ref(), &name);
            let probe = self.probe(t.probe.as_ref(), &format!("trunk \"{name}\""));
            let auth = self.auth(t.auth.as_ref(), &format!("trunk \"{name}\""));
            let register = self.trunk_register(t.register.as_ref(), &format!("trunk \"{name}\""));
            let outbound = self.rules(t.outbound.as_ref(), &format!("trunk \"{name}\" outbound"));
            let inbound = self.rules(t.inbound.as_ref(), &format!("trunk \"{name}\" inbound"));
            let topology_hiding =
                self.topology_hiding(t.topology_hiding.as_ref(), &name, anchor_media);
            let trunk = Trunk {
                topology_hiding,
                tls,
                outbound,
                inbound,
                weight,
                probe,
                auth,
                register,
                anchor_media,
                name,
                address,
                transport,
                allow,
                max_sessions: limits.max_sessions,
                max_cps: limits.max_cps,
                max_inbound: limits.max_inbound,
                max_outbound: limits.max_outbound,
                cps_burst: limits.cps_burst,
            };
            out.push((
                trunk,
                PeerSpots {
                    allow: allow_spots,
                    address: address_at,
                },
            ));
        }
        (out, names.into_iter().map(|(k, (i, _))| (k, i)).collect())
    }

    /// Allow lists (and the peers' own IP literals) of different peers must not overlap, so
    /// that every source address belongs to at most one peer.
    pub(super) fn disjoint_sources(
        &mut self,
        policy: &Policy,
        pbx: &[PeerSpots],
        trunks: &[(Trunk, PeerSpots)],
    ) {
        struct Claim<'p> {
            owner: usize,
            who: String,
            net: IpNet,
            at: &'p At,
            /// A peer's own `address` (IP literal): its port tells peers that share one
            /// host address apart (UDP sources send from their own port).
            port: Option<u16>,
        }
        let mut claims: Vec<Claim<'_>> = Vec::new();
        // Every PBX node is the PBX (owner 0): their allow lists may overlap each other.
        let nodes = std::iter::once(("pbx".to_owned(), &policy.pbx.address, &policy.pbx.allow))
            .chain(
                policy
                    .pbx
                    .nodes
                    .iter()
                    .map(|n| (format!("pbx node \"{}\"", n.name), &n.address, &n.allow)),
            )
            .zip(pbx)
            .map(|((who, address, allow), spots)| (0usize, who, address, allow, spots));
        let peers = nodes.chain(trunks.iter().enumerate().map(|(i, (t, s))| {
            (
                i + 1,
                format!("trunk \"{}\"", t.name),
                &t.address,
                &t.allow,
                s,
            )
        }));
        for (owner, who, address, allow, spots) in peers {
            for (net, at) in allow.iter().zip(&spots.allow) {
                claims.push(Claim {
                    owner,
                    who: format!("{who} allow {net}"),
                    net: *net,
                    at,
                    port: None,
                });
            }
            if let (Host::Ip(ip), false) = (&address.host, address.port == 0) {
                let net = IpNet::from(*ip);
                claims.push(Claim {
                    owner,
                    who: format!("{who} address {ip}"),
                    net,
                    at: &spots.address,
                    port: Some(address.port),
                });
            }
        }
        for (j, b) in claims.iter().enumerate() {
            let clash = claims[..j].iter().find(|a| {
                let told_apart_by_port = matches!((a.port, b.port), (Some(p), Some(q)) if p != q);
                a.owner != b.owner
                    && !told_apart_by_port
                    && (a.net.contains(&b.net.network()) || b.net.contains(&a.net.network()))
            });
            if let Some(a) = clash {
                let hint = format!(
                    "{} is at {}; every source address must belong to one peer only, so make the allow lists disjoint",
                    a.who,
                    self.report.describe(a.at)
                );
                self.report
                    .error(b.at, format!("{} overlaps {}", b.who, a.who), Some(hint));
            }
        }
    }
}
