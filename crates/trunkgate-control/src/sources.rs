//! Source classification: which peer a datagram's source address belongs to.
//!
//! Longest-prefix match over every allow CIDR and each peer's own address. The table is a
//! few levels (one per prefix length in use, longest first), each a sorted array of masked
//! networks: a lookup is at most one binary search per level, with no allocation and no lock.
//!
//! Peers may share one host address and be told apart by port (two SIP services on one IP,
//! or every peer on `::1` in a test): their own `address` entries at that IP are kept in a
//! small sorted `(ip, port)` table consulted first by [`SourceTable::classify_at`]. A source
//! at a shared IP from any other port (a TCP connection's ephemeral port) matches only the
//! allow lists, so it is `Unknown` unless one of them names it.

use crate::Source;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::ops::BitAnd;

/// One prefix length: the mask and the sorted networks of that length.
#[derive(Debug, Clone)]
struct Level<T> {
    mask: T,
    nets: Vec<(T, Source)>,
}

/// A built classification table for both address families.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceTable {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    /// Peers' own addresses at IPs that more than one peer has (canonical IP, port),
    /// sorted; usually empty.
    shared: Vec<((IpAddr, u16), Source)>,
}

/// Two peers claim exactly the same network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clash {
    pub net: IpNet,
    pub first: Source,
    pub second: Source,
}

impl SourceTable {
    /// Build from `(network, owner)` claims. The same network claimed twice by one owner is
    /// fine; claimed by two owners it is a [`Clash`] (the longest prefix cannot decide).
    pub fn new(claims: impl IntoIterator<Item = (IpNet, Source)>) -> Result<Self, Clash> {
        let mut v4: Vec<Claim<u32>> = Vec::new();
        let mut v6: Vec<Claim<u128>> = Vec::new();
        for (net, owner) in claims {
            let net = net.trunc();
            match net {
                IpNet::V4(n) => v4.push(Claim {
                    mask: n.netmask().to_bits(),
                    network: n.network().to_bits(),
                    net,
                    owner,
                }),
                IpNet::V6(n) => v6.push(Claim {
                    mask: n.netmask().to_bits(),
                    network: n.network().to_bits(),
                    net,
                    owner,
                }),
            }
        }
        Ok(SourceTable {
            v4: levels(v4)?,
            v6: levels(v6)?,
            shared: Vec::new(),
        })
    }

    /// [`SourceTable::new`] over allow-list `claims` plus the peers' own `addresses`: an
    /// address whose IP no other peer's address has claims its host network like an allow
    /// entry; addresses at an IP that several peers share claim only their `(ip, port)`.
    /// The same `(ip, port)` for two peers is a [`Clash`].
    pub fn with_addresses(
        claims: impl IntoIterator<Item = (IpNet, Source)>,
        addresses: impl IntoIterator<Item = (SocketAddr, Source)>,
    ) -> Result<Self, Clash> {
        let mut own: Vec<((IpAddr, u16), Source)> = addresses
            .into_iter()
            .map(|(a, owner)| ((a.ip().to_canonical(), a.port()), owner))
            .collect();
        own.sort_by_key(|a| a.0);
        own.dedup();
        let shared_ip = |ip: IpAddr, own: &[((IpAddr, u16), Source)]| {
            let mut owners = own.iter().filter(|((i, _), _)| *i == ip).map(|(_, o)| *o);
            let first = owners.next();
            owners.any(|o| Some(o) != first)
        };
        let mut shared = Vec::new();
        let mut host_claims = Vec::new();
        for &((ip, port), owner) in &own {
            if shared_ip(ip, &own) {
                shared.push(((ip, port), owner));
            } else {
                host_claims.push((IpNet::from(ip), owner));
            }
        }
        for pair in shared.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(Clash {
                    net: IpNet::from(pair[0].0.0),
                    first: pair[0].1,
                    second: pair[1].1,
                });
            }
        }
        let mut table = SourceTable::new(claims.into_iter().chain(host_claims))?;
        table.shared = shared;
        Ok(table)
    }

    /// The peer `source` belongs to: its exact `(ip, port)` where peers share that IP,
    /// else [`SourceTable::classify`] of its IP.
    pub fn classify_at(&self, source: SocketAddr) -> Source {
        if !self.shared.is_empty() {
            let key = (source.ip().to_canonical(), source.port());
            if let Ok(i) = self.shared.binary_search_by(|(k, _)| k.cmp(&key)) {
                return self.shared[i].1;
            }
        }
        self.classify(source.ip())
    }

    /// The peer owning `ip` by longest prefix. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 sources) is looked up as IPv4.
    pub fn classify(&self, ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => lookup(&self.v4, a.to_bits()),
            IpAddr::V6(a) => lookup(&self.v6, a.to_bits()),
        }
    }
}

/// One network claimed by one peer, as integers of the address family.
struct Claim<T> {
    mask: T,
    network: T,
    net: IpNet,
    owner: Source,
}

fn levels<T: Copy + Ord>(mut claims: Vec<Claim<T>>) -> Result<Vec<Level<T>>, Clash> {
    // Longest prefix first; within a length, by network, so each level is sorted.
    claims.sort_by(|a, b| {
        b.net
            .prefix_len()
            .cmp(&a.net.prefix_len())
            .then(a.network.cmp(&b.network))
    });
    claims.dedup_by(|b, a| a.net == b.net && a.owner == b.owner);
    let mut out: Vec<(u8, Level<T>)> = Vec::new();
    for Claim {
        mask,
        network,
        net,
        owner,
    } in claims
    {
        match out.last_mut() {
            Some((len, level)) if *len == net.prefix_len() => {
                if let Some(&(_, first)) = level.nets.last().filter(|(n, _)| *n == network) {
                    return Err(Clash {
                        net,
                        first,
                        second: owner,
                    });
                }
                level.nets.push((network, owner));
            }
            _ => out.push((
                net.prefix_len(),
                Level {
                    mask,
                    nets: vec![(network, owner)],
                },
            )),
        }
    }
    Ok(out.into_iter().map(|(_, level)| level).collect())
}

#[inline]
fn lookup<T: Copy + Ord + BitAnd<Output = T>>(levels: &[Level<T>], addr: T) -> Source {
    for level in levels {
        let key = addr & level.mask;
        if let Ok(i) = level.nets.binary_search_by(|(n, _)| n.cmp(&key)) {
            return level.nets[i].1;
        }
    }
    Source::Unknown
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::TrunkId;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_in_both_families() {
        let t = SourceTable::new([
            (net("10.0.0.0/8"), Source::Pbx),
            (net("10.1.0.0/16"), Source::Trunk(TrunkId(0))),
            (net("10.1.2.3/32"), Source::Trunk(TrunkId(1))),
            (net("2001:db8::/32"), Source::Trunk(TrunkId(2))),
            (net("2001:db8:1::/48"), Source::Pbx),
            (net("0.0.0.0/0"), Source::Trunk(TrunkId(3))),
        ])
        .unwrap();
        assert_eq!(t.classify(ip("10.200.0.1")), Source::Pbx);
        assert_eq!(t.classify(ip("10.1.9.9")), Source::Trunk(TrunkId(0)));
        assert_eq!(t.classify(ip("10.1.2.3")), Source::Trunk(TrunkId(1)));
        assert_eq!(t.classify(ip("::ffff:10.1.2.3")), Source::Trunk(TrunkId(1)));
        assert_eq!(t.classify(ip("192.0.2.1")), Source::Trunk(TrunkId(3)));
        assert_eq!(t.classify(ip("2001:db8:1::7")), Source::Pbx);
        assert_eq!(t.classify(ip("2001:db8:2::7")), Source::Trunk(TrunkId(2)));
        assert_eq!(t.classify(ip("2001:db9::1")), Source::Unknown);
    }

    #[test]
    fn same_network_same_owner_is_fine_two_owners_clash() {
        let ok = SourceTable::new([
            (net("10.0.0.1/32"), Source::Pbx),
            (net("10.0.0.1/32"), Source::Pbx),
        ]);
        assert_eq!(ok.unwrap().classify(ip("10.0.0.1")), Source::Pbx);
        let clash = SourceTable::new([
            (net("10.0.0.1/32"), Source::Pbx),
            (net("10.0.0.1/32"), Source::Trunk(TrunkId(0))),
        ]);
        let c = clash.unwrap_err();
        assert_eq!(c.net, net("10.0.0.1/32"));
        assert_eq!(
            (c.first, c.second),
            (Source::Pbx, Source::Trunk(TrunkId(0)))
        );
    }

    #[test]
    fn peers_sharing_one_address_are_told_apart_by_port() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let t = SourceTable::with_addresses(
            [(net("2001:db8::/64"), Source::Trunk(TrunkId(1)))],
            [
                (a("[::1]:15061"), Source::Pbx),
                (a("[::1]:15062"), Source::Trunk(TrunkId(0))),
                (a("[2001:db9::5]:5060"), Source::Pbx),
                (a("127.0.0.3:5060"), Source::Trunk(TrunkId(2))),
            ],
        )
        .unwrap();
        assert_eq!(t.classify_at(a("[::1]:15061")), Source::Pbx);
        assert_eq!(t.classify_at(a("[::1]:15062")), Source::Trunk(TrunkId(0)));
        // Another port at the shared IP (a TCP source port): nobody's.
        assert_eq!(t.classify_at(a("[::1]:40000")), Source::Unknown);
        assert_eq!(t.classify(ip("::1")), Source::Unknown);
        // Unshared addresses claim their whole IP, as before.
        assert_eq!(t.classify_at(a("[2001:db9::5]:7000")), Source::Pbx);
        assert_eq!(t.classify_at(a("127.0.0.3:9")), Source::Trunk(TrunkId(2)));
        assert_eq!(
            t.classify_at(a("[::ffff:127.0.0.3]:9")),
            Source::Trunk(TrunkId(2))
        );
        assert_eq!(
            t.classify_at(a("[2001:db8::7]:5060")),
            Source::Trunk(TrunkId(1))
        );
        let clash = SourceTable::with_addresses(
            [],
            [
                (a("[::1]:15061"), Source::Pbx),
                (a("[::1]:15061"), Source::Trunk(TrunkId(0))),
            ],
        );
        assert!(clash.is_err());
    }

    #[test]
    fn empty_table_knows_nobody() {
        assert_eq!(
            SourceTable::default().classify(ip("127.0.0.1")),
            Source::Unknown
        );
    }
}
