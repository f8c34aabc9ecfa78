//! `trunkgate-media`: the RTP/RTCP relay that anchors calls' media.
//!
//! - [`sdp`]: parse an SDP body and rewrite its addresses and ports (everything else kept).
//! - [`ports`]: the even/odd port-pair pool with quarantine on release.
//! - [`stats`]: RTP header reading, loss and RFC 3550 jitter, RTCP report blocks.
//! - [`quality`]: the simplified G.107 E-model (R-factor, estimated MOS) over those figures.
//! - [`Relay`]: relay threads, sockets, latching, DSCP, dead-call detection.
//! - [`fastpath`]: the kernel fast path (BPF at tc ingress) for latched RTP streams.
//!
//! The SIP proxy does not depend on this crate: it talks to the relay through the
//! `MediaRelay` trait of `trunkgate-sip`, implemented by an adapter in the binary.

pub mod fastpath;
pub mod ports;
pub mod quality;
pub mod sdp;
pub mod stats;

mod relay;

pub use relay::*;

use std::net::IpAddr;
use std::time::Duration;

/// Static relay configuration (`[media]`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// `media.address`: where media sockets are bound (may be unspecified).
    pub bind: IpAddr,
    /// `media.advertised`: the address written into rewritten SDP.
    pub advertised: IpAddr,
    /// The other address family's bind and advertised address (dual-stack `media.address`):
    /// a leg whose peer is of that family binds and is advertised there. `None`: every leg
    /// uses `bind`/`advertised`.
    pub alternate: Option<MediaAddress>,
    /// `media.ports`: inclusive range; RTP on even ports, RTCP on the next odd one.
    pub port_min: u16,
    pub port_max: u16,
    /// `media.dscp`: DSCP value (0–63) for every media socket (TOS byte = dscp << 2).
    pub dscp: u8,
    pub latch: Latch,
    /// `media.timeout`: no RTP from either side for this long → [`Event::Timeout`].
    pub timeout: Duration,
    /// `media.hold_timeout`: the same while every stream is on hold.
    pub hold_timeout: Duration,
    /// `media.threads`: relay threads.
    pub threads: usize,
    /// A released port pair is not reused for this long (late packets of the old call).
    pub quarantine: Duration,
    /// `media.nice`: the relay threads' nice value (-20..=19; 0 leaves them as they are).
    /// Raising priority needs CAP_SYS_NICE; without it the threads run at the default and a
    /// warning is logged.
    pub nice: i8,
    /// The media share of the process's descriptor budget: the most sockets live streams
    /// may hold (4 per stream: RTP and RTCP per side). A new stream that would go over it
    /// is refused with [`MediaError::BudgetExhausted`]. `usize::MAX`: no budget.
    pub max_sockets: usize,
    /// `media.one_way_after`, `media.quality_interval`, `media.assumed_delay`.
    pub quality: QualityConfig,
    /// `media.fastpath`: forward latched RTP in the kernel (BPF) or in the relay threads.
    pub fastpath: fastpath::FastPath,
}

/// One address family's media address: where a leg's sockets bind, what SDP names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddress {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

impl MediaConfig {
    /// The media address for a leg whose peer is at `peer`: the alternate when it is of
    /// `peer`'s family and the primary is not, else the primary (also when `peer` is not
    /// known). IPv4-mapped IPv6 counts as IPv4.
    pub fn address_for(&self, peer: Option<IpAddr>) -> MediaAddress {
        let primary = MediaAddress {
            bind: self.bind,
            advertised: self.advertised,
        };
        match (peer.map(|ip| ip.to_canonical()), self.alternate) {
            (Some(ip), Some(alt))
                if ip.is_ipv6() != self.bind.is_ipv6() && ip.is_ipv6() == alt.bind.is_ipv6() =>
            {
                alt
            }
            _ => primary,
        }
    }
}

/// `media.latch`: how the relay learns where a peer really sends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    /// `sdp-ip` when the SDP address is public, `any` when it is private/loopback/CGNAT.
    Auto,
    /// The first packet from any source teaches the peer's address.
    Any,
    /// Only packets from the SDP's IP are accepted; the first one teaches the port.
    SdpIp,
    /// No latching: send to the SDP address; packets from any source are relayed.
    Off,
}

/// The two sides of an anchored call. A = the PBX side, B = the trunk side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// What an SDP body is in the offer/answer exchange (RFC 3264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

/// Who a media session belongs to.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The proxy's dialog id: the key of every later call.
    pub id: u64,
    /// SIP Call-ID (for `/calls` and logs).
    pub call_id: &'a [u8],
    /// Metrics slot of the trunk (index into the `trunk_names` given to [`Relay::start`]),
    /// `None` for calls that touch no trunk.
    pub trunk: Option<u16>,
    /// The call came from a trunk (inbound) rather than from the PBX.
    pub inbound: bool,
    /// Signaling address of side A (PBX) and side B (trunk), by [`Side::index`]; `None`:
    /// not known. A side's family picks its media address (see [`MediaConfig::address_for`])
    /// when the session is created: the side whose SDP creates it by that SDP's connection
    /// address, the other side by this.
    pub peers: [Option<IpAddr>; 2],
}

/// Something the relay tells its owner (the SIP side) about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// No RTP/RTCP from either side for `idle` (the call is dead): the owner sends BYE
    /// both ways and calls [`Relay::delete`]. Re-sent after another idle period if the
    /// session is still there.
    Timeout {
        call: u64,
        idle: Duration,
        on_hold: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free media port pair in the configured range")]
    PortsExhausted,
    #[error("the media descriptor budget is used up ({in_use} of {limit} sockets in use)")]
    BudgetExhausted { in_use: usize, limit: usize },
    #[error("SDP not understood: {0}")]
    BadSdp(&'static str),
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
}
