//! Transport-level value types shared by the sans-IO core and the socket shell.

use bytes::Bytes;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// In-process: requests and responses of Trunkgate's own test calls, injected with
    /// [`crate::Proxy::handle_internal`] and handed back by the shell to the test-call
    /// user agent. Reliable and ordered (no retransmissions), never on a socket.
    Internal,
}

impl Transport {
    /// Token as written in Via (`UDP`, `TCP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            // Never leaves the process (the test-call agent writes its own Via).
            Transport::Internal => "INTERNAL",
        }
    }
    /// Lower-case name for URIs and labels (`udp`, `tcp`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Internal => "internal",
        }
    }
    /// Reliable transports: no retransmissions, no Timer J/K/D wait.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Identifies one stream connection (TCP) for the lifetime of the process. Assigned by the
/// shell; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The path a message came in on or goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    /// The listener's local address (for UDP: which socket; for TCP: the listener the
    /// connection belongs to, or the listener whose port we advertise for outgoing
    /// connections).
    pub local: SocketAddr,
    /// TCP only: the connection. `None` on output means "any open connection to the
    /// destination, or open a new one".
    pub conn: Option<ConnId>,
}

/// A message the core wants sent.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub flow: Flow,
    pub destination: SocketAddr,
    pub data: Bytes,
}
