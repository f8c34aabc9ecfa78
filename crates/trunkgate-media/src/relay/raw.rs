//! Sending a datagram from an anchored port that has no socket of its own (the `sk_lookup`
//! mode of the kernel fast path: see docs/design/media.md, "No socket per call").
//!
//! One raw socket per address family (`IPPROTO_RAW`: send-only, the header is ours), shared
//! by the relay threads. Userspace sends few datagrams in that mode — those before a stream
//! is latched and moved into the kernel, RTCP, and what the kernel declined — so building
//! the IP and UDP headers here (checksums included) costs less than the alternatives: a
//! socket bound per port (the descriptors this mode exists to avoid), or marking each packet
//! for a tc egress program to rewrite its source port (a `setsockopt` per packet and a
//! second BPF program). Needs CAP_NET_RAW, which loading the BPF programs needs anyway.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const TTL: u8 = 64;
const UDP: u8 = 17;

/// The raw sockets, one per family in use.
pub(crate) struct RawSend {
    v4: Option<Socket>,
    v6: Option<Socket>,
    /// TOS / traffic class byte (DSCP << 2).
    tos: u8,
}

fn open(domain: Domain) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(libc_raw())))?;
    // IPPROTO_RAW implies "header included" for IPv4 and (Linux ≥ 4.5) IPv6; say it anyway.
    if domain == Domain::IPV4 {
        s.set_header_included_v4(true)?;
    } else {
        s.set_header_included_v6(true)?;
    }
    s.set_nonblocking(true)?;
    // Nothing is ever received on an IPPROTO_RAW socket; keep its buffer small.
    let _ = s.set_recv_buffer_size(4096);
    Ok(s)
}

/// `IPPROTO_RAW`.
const fn libc_raw() -> i32 {
    255
}

impl RawSend {
    /// Open the sockets for the families asked for.
    pub fn open(v4: bool, v6: bool, tos: u8) -> io::Result<RawSend> {
        Ok(RawSend {
            v4: if v4 { Some(open(Domain::IPV4)?) } else { None },
            v6: if v6 { Some(open(Domain::IPV6)?) } else { None },
            tos,
        })
    }

    /// Send `payload` as a UDP datagram from `from` to `to` (one family; an IPv4-mapped
    /// address counts as IPv4).
    pub fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let udp_len = u16::try_from(payload.len() + 8)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?;
        match (from.ip().to_canonical(), to.ip().to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let sock = self.v4.as_ref().ok_or_else(no_family)?;
                let (s, d) = (s.octets(), d.octets());
                let mut h = [0u8; 28];
                h[0] = 0x45;
                h[1] = self.tos;
                h[2..4].copy_from_slice(&(udp_len + 20).to_be_bytes());
                // 4..6 identification: 0, the kernel fills it in; DF set.
                h[6] = 0x40;
                h[8] = TTL;
                h[9] = UDP;
                // 10..12 header checksum: always filled in by the kernel.
                h[12..16].copy_from_slice(&s);
                h[16..20].copy_from_slice(&d);
                udp_header(&mut h[20..28], from.port(), to.port(), udp_len);
                let mut sum = pseudo_sum(&s, &d, udp_len);
                sum = add_bytes(sum, &h[20..28]);
                sum = add_bytes(sum, payload);
                h[26..28].copy_from_slice(&udp_checksum(sum).to_be_bytes());
                let dest = SockAddr::from(SocketAddr::new(IpAddr::V4(d.into()), 0));
                sock.send_to_vectored(&[IoSlice::new(&h), IoSlice::new(payload)], &dest)?;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let sock = self.v6.as_ref().ok_or_else(no_family)?;
                let (s, d) = (s.octets(), d.octets());
                let mut h = [0u8; 48];
                h[0] = 0x60 | (self.tos >> 4);
                h[1] = self.tos << 4;
                h[4..6].copy_from_slice(&udp_len.to_be_bytes());
                h[6] = UDP;
                h[7] = TTL;
                h[8..24].copy_from_slice(&s);
                h[24..40].copy_from_slice(&d);
                udp_header(&mut h[40..48], from.port(), to.port(), udp_len);
                let mut sum = pseudo_sum(&s, &d, udp_len);
                sum = add_bytes(sum, &h[40..48]);
                sum = add_bytes(sum, payload);
                h[46..48].copy_from_slice(&udp_checksum(sum).to_be_bytes());
                let dest = SockAddr::from(SocketAddr::new(IpAddr::V6(d.into()), 0));
                sock.send_to_vectored(&[IoSlice::new(&h), IoSlice::new(payload)], &dest)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination of different address families",
                ));
            }
        }
        Ok(())
    }
}

fn no_family() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "no raw socket for this address family",
    )
}

fn udp_header(h: &mut [u8], sport: u16, dport: u16, len: u16) {
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = 0;
    h[7] = 0;
}

/// RFC 768 / RFC 8200 §8.1 pseudo-header: addresses, protocol, UDP length.
fn pseudo_sum(s: &[u8], d: &[u8], udp_len: u16) -> u64 {
    let sum = add_bytes(0, s);
    let sum = add_bytes(sum, d);
    sum + u64::from(UDP) + u64::from(udp_len)
}

/// One's-complement sum of 16-bit big-endian words (an odd last byte padded with zero).
/// Every call adds an even number of bytes except the payload, which comes last.
fn add_bytes(mut sum: u64, b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn udp_checksum(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    // RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
    if c == 0 { 0xffff } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_a_known_datagram() {
        // 127.0.0.1:1000 → 127.0.0.1:2000, payload "hi". (The kernel's own check is the
        // end-to-end one: a datagram with a wrong checksum never reaches the receiving
        // socket, which tests/kernel.rs would notice.)
        let s = [127, 0, 0, 1];
        let d = [127, 0, 0, 1];
        let mut h = [0u8; 8];
        udp_header(&mut h, 1000, 2000, 10);
        let sum = add_bytes(add_bytes(pseudo_sum(&s, &d, 10), &h), b"hi");
        let c = udp_checksum(sum);
        // Verifying: the sum over everything including the checksum folds to 0xffff.
        h[6..8].copy_from_slice(&c.to_be_bytes());
        let mut v = add_bytes(add_bytes(pseudo_sum(&s, &d, 10), &h), b"hi");
        while v >> 16 != 0 {
            v = (v & 0xffff) + (v >> 16);
        }
        assert_eq!(v, 0xffff);
    }

    #[test]
    fn odd_payload_is_padded() {
        assert_eq!(add_bytes(0, &[1]), 0x100);
        assert_eq!(add_bytes(0, &[1, 2, 3]), 0x0102 + 0x0300);
    }
}
