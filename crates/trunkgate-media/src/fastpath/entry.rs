//! The byte layouts of the BPF maps' keys and values (`struct tg_key`, `struct tg_fwd` in
//! `bpf/fastpath.bpf.c`), encoded and decoded by hand: plain byte arrays cross the map
//! interface, so no `unsafe` `Pod` implementation is needed. Integers the program compares
//! with packet fields (ports, addresses) are in network order, the rest in host order.

use std::net::{IpAddr, SocketAddr};

pub(crate) const KEY_LEN: usize = 20;
pub(crate) const ENTRY_LEN: usize = 144;

pub(crate) type KeyBytes = [u8; KEY_LEN];
pub(crate) type EntryBytes = [u8; ENTRY_LEN];

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// 16 address bytes (IPv4 in the first 4) and the program's family code. IPv4-mapped IPv6
/// counts as IPv4: that is what the wire carries to a dual-stack socket.
fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// The canonical family of an address (IPv4-mapped = IPv4).
pub(crate) fn is_v4(ip: IpAddr) -> bool {
    ip.to_canonical().is_ipv4()
}

/// The map key: the relay's anchored address and RTP port, where the peer sends.
pub(crate) fn key(local: SocketAddr) -> KeyBytes {
    let mut k = [0u8; KEY_LEN];
    let (addr, family) = addr_bytes(local.ip());
    k[..16].copy_from_slice(&addr);
    k[16..18].copy_from_slice(&local.port().to_be_bytes());
    k[18] = family;
    k
}

/// What a new entry says: who may send, how to rewrite, where the statistics stand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Forward {
    /// The latched peer: only its datagrams are forwarded.
    pub source: SocketAddr,
    /// The other leg's local RTP address: the forwarded datagram's source.
    pub new_source: SocketAddr,
    /// The other side's peer.
    pub new_dest: SocketAddr,
    /// TOS / traffic class byte (DSCP << 2).
    pub tos: u8,
    pub ssrc: u32,
    pub clock_rate: u32,
    /// RFC 3550 A.1/A.8 state to continue from (see `ReceiveStats::continuation`).
    pub ext_max: u64,
    pub jitter_ns: i64,
    /// (arrival in the kernel's clock, RTP timestamp) of the newest packet counted.
    pub transit: Option<(u64, u32)>,
}

impl Forward {
    pub(crate) fn encode(&self) -> EntryBytes {
        let mut e = [0u8; ENTRY_LEN];
        let (src, family) = addr_bytes(self.source.ip());
        e[0..16].copy_from_slice(&src);
        e[16..32].copy_from_slice(&addr_bytes(self.new_source.ip()).0);
        e[32..48].copy_from_slice(&addr_bytes(self.new_dest.ip()).0);
        e[48..50].copy_from_slice(&self.source.port().to_be_bytes());
        e[50..52].copy_from_slice(&self.new_source.port().to_be_bytes());
        e[52..54].copy_from_slice(&self.new_dest.port().to_be_bytes());
        e[54] = family;
        e[55] = self.tos;
        e[56..60].copy_from_slice(&self.ssrc.to_ne_bytes());
        e[60..64].copy_from_slice(&self.clock_rate.to_ne_bytes());
        // 64..88: packets, bytes, last_ns start at 0.
        e[88..96].copy_from_slice(&self.ext_max.to_ne_bytes());
        // 96..112: received, gaps start at 0.
        let (arrival, ts) = self.transit.unwrap_or((0, 0));
        e[112..120].copy_from_slice(&arrival.to_ne_bytes());
        e[120..128].copy_from_slice(&self.jitter_ns.to_ne_bytes());
        e[128..132].copy_from_slice(&ts.to_ne_bytes());
        e[132..136].copy_from_slice(&u32::from(self.transit.is_some()).to_ne_bytes());
        e
    }
}

/// What the program has counted in an entry since it was installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub packets: u64,
    /// UDP payload bytes.
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the newest forwarded packet, 0: none.
    pub last_ns: u64,
    pub ext_max: u64,
    pub received: u64,
    pub gaps: u64,
    pub jitter_ns: i64,
    pub transit: Option<(u64, u32)>,
    /// Datagrams of this entry the program left to the relay's socket.
    pub punted: u64,
}

impl Counters {
    pub(crate) fn decode(e: &EntryBytes) -> Counters {
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[i..i + 8]);
            u64::from_ne_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&e[i..i + 4]);
            u32::from_ne_bytes(b)
        };
        Counters {
            packets: u64_at(64),
            bytes: u64_at(72),
            last_ns: u64_at(80),
            ext_max: u64_at(88),
            received: u64_at(96),
            gaps: u64_at(104),
            jitter_ns: u64_at(120) as i64,
            transit: (u32_at(132) != 0).then(|| (u64_at(112), u32_at(128))),
            punted: u64_at(136),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_tg_key() {
        let k = key("127.0.170.1:30000".parse().unwrap());
        assert_eq!(&k[..4], &[127, 0, 170, 1]);
        assert!(k[4..16].iter().all(|&b| b == 0));
        assert_eq!(&k[16..18], &30000u16.to_be_bytes());
        assert_eq!(k[18], FAMILY_V4);
        // A dual-stack socket's IPv4-mapped view is keyed as the IPv4 the wire carries.
        assert_eq!(key("[::ffff:127.0.170.1]:30000".parse().unwrap()), k);
        let k6 = key("[::1]:30002".parse().unwrap());
        assert_eq!(k6[15], 1);
        assert_eq!(k6[18], FAMILY_V6);
    }

    #[test]
    fn entry_round_trips_the_state_the_program_continues() {
        let f = Forward {
            source: "127.0.170.2:6000".parse().unwrap(),
            new_source: "127.0.170.1:30002".parse().unwrap(),
            new_dest: "127.0.170.3:7000".parse().unwrap(),
            tos: 0xb8,
            ssrc: 0xdead_beef,
            clock_rate: 8000,
            ext_max: 0x1_0005,
            jitter_ns: 1234,
            transit: Some((99, 160)),
        };
        let e = f.encode();
        assert_eq!(&e[0..4], &[127, 0, 170, 2]);
        assert_eq!(&e[48..50], &6000u16.to_be_bytes());
        assert_eq!(&e[52..54], &7000u16.to_be_bytes());
        assert_eq!((e[54], e[55]), (FAMILY_V4, 0xb8));
        let c = Counters::decode(&e);
        assert_eq!(
            c,
            Counters {
                ext_max: 0x1_0005,
                jitter_ns: 1234,
                transit: Some((99, 160)),
                ..Counters::default()
            }
        );
    }
}
