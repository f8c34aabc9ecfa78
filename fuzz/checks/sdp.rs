//! Parse arbitrary bytes as an SDP body; when it parses, rewrite it onto an IPv4 and an
//! IPv6 address with a port for every stream (and with some streams left alone), and check
//! that the output parses again with the new addresses and ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use trunkgate_media::sdp::{parse, rewrite};

/// The check, on one input: panics on a violated invariant.
pub fn check(data: &[u8]) {
    let Ok(sdp) = parse(data) else {
        return;
    };
    for m in &sdp.media {
        let _ = m.on_hold();
    }
    let addrs = [
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
    ];
    let all: Vec<Option<u16>> = (0..sdp.media.len())
        .map(|i| Some(30000 + 2 * i as u16))
        .collect();
    let some: Vec<Option<u16>> = (0..sdp.media.len())
        .map(|i| (i % 2 == 0).then_some(40000 + 2 * i as u16))
        .collect();
    for addr in addrs {
        for ports in [&all, &some] {
            let mut out = Vec::new();
            rewrite(data, &sdp, addr, ports, &mut out);
            let again = match parse(&out) {
                Ok(again) => again,
                Err(e) => panic!(
                    "rewrite does not re-parse: {e}: {:?}",
                    String::from_utf8_lossy(&out)
                ),
            };
            assert_eq!(again.media.len(), sdp.media.len());
            for (i, (old, new)) in sdp.media.iter().zip(&again.media).enumerate() {
                let port = ports.get(i).copied().flatten();
                assert_eq!(new.port, port.unwrap_or(old.port));
                let rtcp = match port {
                    Some(p) => old.rtcp_port.map(|_| p + 1),
                    None => old.rtcp_port,
                };
                assert_eq!(new.rtcp_port, rtcp);
                match old.conn {
                    Some(a) if a.is_unspecified() => assert_eq!(new.conn, Some(a)),
                    Some(_) => assert_eq!(new.conn, Some(addr)),
                    None => assert_eq!(new.conn, None),
                }
                assert_eq!(
                    (
                        new.kind,
                        new.rtp,
                        new.rtcp_mux,
                        new.direction,
                        new.clock_rate
                    ),
                    (
                        old.kind,
                        old.rtp,
                        old.rtcp_mux,
                        old.direction,
                        old.clock_rate
                    )
                );
            }
        }
    }
}
