//! Why a TCP (or TLS) connection ended ([`CloseReason`]): refused at accept, cut by a limit, or
//! ended by the peer. Counted per reason in `trunkgate_tcp_connections_closed_total`.

/// Why a TCP connection ended: the `reason` label of
/// `trunkgate_tcp_connections_closed_total`. The first four are refusals at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The source is in no allow list.
    UnknownSource,
    /// The source is banned by the flood limiter (connection attempts count against it).
    Banned,
    /// The source already holds `limits.connections_per_source` connections.
    PerSourceCap,
    /// `limits.sip_connections` connections are open (the SIP descriptor share).
    GlobalCap,
    /// No whole message within `sip.tcp_header_timeout` of its first byte.
    HeaderTimeout,
    /// Nothing either way for `sip.tcp_idle_timeout`.
    Idle,
    /// A message over `sip.max_message_size`.
    Oversized,
    /// A byte stream that cannot be framed (bad Content-Length, not SIP).
    Malformed,
    /// A write made no progress for 10 s.
    WriteStalled,
    /// Its write queue filled up (the peer is not reading): the core let go of it.
    NotReading,
    /// Closed or reset by the peer, or a socket error.
    Peer,
    /// Trunkgate is shutting down.
    Shutdown,
    /// A client on a `tls:` listener did not complete the TLS handshake (no common
    /// protocol, a client certificate refused, `tls.handshake_timeout`).
    TlsHandshake,
}

impl CloseReason {
    pub const COUNT: usize = 13;
    pub const ALL: [CloseReason; CloseReason::COUNT] = [
        CloseReason::UnknownSource,
        CloseReason::Banned,
        CloseReason::PerSourceCap,
        CloseReason::GlobalCap,
        CloseReason::HeaderTimeout,
        CloseReason::Idle,
        CloseReason::Oversized,
        CloseReason::Malformed,
        CloseReason::WriteStalled,
        CloseReason::NotReading,
        CloseReason::Peer,
        CloseReason::Shutdown,
        CloseReason::TlsHandshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::UnknownSource => "unknown_source",
            CloseReason::Banned => "banned",
            CloseReason::PerSourceCap => "per_source_cap",
            CloseReason::GlobalCap => "global_cap",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Idle => "idle",
            CloseReason::Oversized => "oversized",
            CloseReason::Malformed => "malformed",
            CloseReason::WriteStalled => "write_stalled",
            CloseReason::NotReading => "not_reading",
            CloseReason::Peer => "peer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }
}
