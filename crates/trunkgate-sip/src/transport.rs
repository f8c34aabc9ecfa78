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
    /// SIP over TLS over TCP (RFC 3261 §26.2, RFC 5630). The core treats it exactly as TCP
    /// (a reliable byte stream, framed by Content-Length, one connection per peer); the
    /// shell does the handshake, SNI and certificate checks.
    Tls,
}

impl Transport {
    /// Token as written in Via (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            // Never leaves the process (the test-call agent writes its own Via).
            Transport::Internal => "INTERNAL",
            Transport::Tls => "TLS",
        }
    }
    /// Lower-case name for URIs and labels (`udp`, `tcp`, `tls`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Internal => "internal",
            Transport::Tls => "tls",
        }
    }
    /// Reliable: no retransmissions of requests or responses (Timers A/E/G off), Timers
    /// D/J/K zero (RFC 3261 §17). TCP and TLS.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
    /// A byte stream over a connection: messages go over a connection (`Flow::conn`), a
    /// peer's requests go to its Contact rather than the connection's source port. TCP and
    /// TLS.
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
    /// What follows the branch in our Via: `;alias` over TLS (RFC 5923 connection reuse:
    /// the peer may send its requests for our sent-by back over this connection instead of
    /// opening one toward us; over TLS both ends are authenticated by certificate, which is
    /// the condition RFC 5923 §5 sets), nothing otherwise.
    pub fn via_suffix(self) -> &'static str {
        match self {
            Transport::Tls => ";alias",
            Transport::Udp | Transport::Tcp | Transport::Internal => "",
        }
    }
    /// The `;transport=` URI parameter for this transport (`""` for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp | Transport::Internal => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }
}

/// Identifies one stream connection (TCP or TLS) for the lifetime of the process. Assigned
/// by the shell; never reused.
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
    /// TCP and TLS only: the connection. `None` on output means "any open connection to the
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
