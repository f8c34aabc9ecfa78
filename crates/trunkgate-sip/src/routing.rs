//! The question the proxy asks of routing policy, as a trait: who is this source, and where
//! does a new request from it go. Implemented by the binary on top of `trunkgate-control`,
//! and by simple fakes in tests, so the SIP core does not depend on the policy crates.

use crate::transport::Transport;
use std::net::{IpAddr, SocketAddr};

/// Which side of Trunkgate a peer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The PBX (inside).
    Pbx,
    /// A trunk, by its index in the policy's trunk list.
    Trunk(u16),
    /// In no allow list: gets no dialog and no forwarding.
    Unknown,
}

impl Party {
    /// Index for per-peer metric arrays: 0 = Trunkgate itself, 1 = PBX, 2.. = trunks.
    pub fn metric_index(self) -> usize {
        match self {
            Party::Unknown => 0,
            Party::Pbx => 1,
            Party::Trunk(i) => 2 + i as usize,
        }
    }
}

/// A destination for a new out-of-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub party: Party,
    pub address: SocketAddr,
    /// `None`: use the transport the request arrived on.
    pub transport: Option<Transport>,
    /// Host (and port) to write into the Request-URI, e.g. `"127.0.0.3:5060"` or
    /// `"sip.carrier-a.example"`.
    pub uri_host: String,
}

pub trait Routing: Send + Sync {
    /// Classify a request's source IP address.
    fn classify(&self, source: IpAddr) -> Party;
    /// Candidates for a new out-of-dialog request (INVITE, OPTIONS, MESSAGE, ...) from `from`,
    /// best first, written into `out` (cleared by the caller). `request_user` is the
    /// Request-URI user part (digits for a phone number), if any. Empty: no route.
    fn candidates(&self, from: Party, request_user: Option<&[u8]>, out: &mut Vec<Target>);
    /// Does trunk `trunk` have its calls' media anchored (`media.anchor`, default true)?
    fn anchor_media(&self, trunk: u16) -> bool {
        let _ = trunk;
        true
    }
}
