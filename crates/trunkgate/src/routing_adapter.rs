//! [`trunkgate_sip::Routing`] on top of the control crate's [`RoutingTable`]: the core asks
//! "who is this source" and "where does this new request go"; the table answers from the
//! policy snapshot it was built from. A reload builds a new adapter and hands it to
//! `Proxy::set_routing`.

use trunkgate_config::PeerTransport;
use trunkgate_control::{RoutingTable, Source};
use trunkgate_sip::{Party, Routing, Target, Transport};

#[derive(Debug)]
pub struct PolicyRouting {
    table: RoutingTable,
}

impl PolicyRouting {
    pub fn new(table: RoutingTable) -> PolicyRouting {
        PolicyRouting { table }
    }
}

fn transport(t: PeerTransport) -> Option<Transport> {
    match t {
        PeerTransport::Auto => None,
        PeerTransport::Udp => Some(Transport::Udp),
        PeerTransport::Tcp => Some(Transport::Tcp),
    }
}

impl Routing for PolicyRouting {
    fn classify(&self, source: std::net::IpAddr) -> Party {
        match self.table.classify(source) {
            Source::Pbx => Party::Pbx,
            Source::Trunk(i) => u16::try_from(i).map_or(Party::Unknown, Party::Trunk),
            Source::Unknown => Party::Unknown,
        }
    }

    fn candidates(&self, from: Party, request_user: Option<&[u8]>, out: &mut Vec<Target>) {
        match from {
            Party::Pbx => {
                let Some(route) = self.table.outbound(request_user) else {
                    return;
                };
                let trunks = self.table.trunks();
                for i in self.table.candidates(route) {
                    let (Ok(index), Some(trunk)) = (u16::try_from(i), trunks.get(i)) else {
                        continue;
                    };
                    out.push(Target {
                        party: Party::Trunk(index),
                        address: trunk.address,
                        transport: transport(trunk.transport),
                        uri_host: trunk.uri_host.clone(),
                    });
                }
            }
            Party::Trunk(_) => {
                let pbx = self.table.pbx();
                out.push(Target {
                    party: Party::Pbx,
                    address: pbx.address,
                    transport: transport(pbx.transport),
                    uri_host: pbx.uri_host.clone(),
                });
            }
            Party::Unknown => {}
        }
    }

    fn anchor_media(&self, trunk: u16) -> bool {
        self.table
            .trunks()
            .get(usize::from(trunk))
            .is_none_or(|t| t.anchor_media)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkgate_config::Policy;

    fn routing() -> PolicyRouting {
        let policy = Policy::embedded_default().unwrap();
        let table = RoutingTable::new(&policy, crate::startup::resolve).unwrap();
        PolicyRouting::new(table)
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
        r.candidates(Party::Pbx, Some(b"+15551234567"), &mut out);
        assert_eq!(
            out,
            vec![
                Target {
                    party: Party::Trunk(0),
                    address: "127.0.0.3:5060".parse().unwrap(),
                    transport: None,
                    uri_host: "127.0.0.3:5060".into(),
                },
                Target {
                    party: Party::Trunk(1),
                    address: "127.0.0.4:5060".parse().unwrap(),
                    transport: None,
                    uri_host: "127.0.0.4:5060".into(),
                },
            ]
        );
    }

    #[test]
    fn trunk_calls_go_to_the_pbx_and_unknown_sources_nowhere() {
        let r = routing();
        let mut out = Vec::new();
        r.candidates(Party::Trunk(1), Some(b"100"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].party, Party::Pbx);
        assert_eq!(out[0].address, "127.0.0.2:5060".parse().unwrap());
        out.clear();
        r.candidates(Party::Unknown, Some(b"100"), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn peer_transport_maps_auto_to_none() {
        assert_eq!(transport(PeerTransport::Auto), None);
        assert_eq!(transport(PeerTransport::Udp), Some(Transport::Udp));
        assert_eq!(transport(PeerTransport::Tcp), Some(Transport::Tcp));
    }
}
