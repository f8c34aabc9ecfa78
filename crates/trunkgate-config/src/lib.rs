//! `trunkgate-config`: the TOML policy: schema, strict parsing with `file:line:col` errors,
//! validation, `TRUNKGATE_SECTION__KEY` environment overrides, and the embedded default.
//!
//! What lives here: the data an operator writes and its checks. What does not: resolving
//! host names, sockets, or runtime state (that is `trunkgate-control` and the binary).

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The embedded default policy (`config/trunkgate.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/trunkgate.toml");

/// A validated policy. Immutable; the binary swaps whole snapshots on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub listen: Listen,
    pub sip: SipSettings,
    pub admin: Admin,
    pub pbx: Pbx,
    pub trunks: Vec<Trunk>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub transport: ListenTransport,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// `listen.sip`: `"udp:IP:PORT"` / `"tcp:IP:PORT"` (IPv6 as `udp:[::1]:5060`).
    pub sip: Vec<Listener>,
    /// `listen.advertised`: host for Via/Record-Route; default the first listener's IP.
    pub advertised: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SipSettings {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub timer_c: Duration,
    pub max_message_size: usize,
    pub tcp_idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// `host:port` where host is an IP literal or a DNS name (resolved by the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

/// How Trunkgate reaches a peer for requests it starts toward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTransport {
    /// The transport the request arrived on (default).
    Auto,
    Udp,
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pbx {
    pub address: HostPort,
    pub transport: PeerTransport,
    pub allow: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    pub name: String,
    pub address: HostPort,
    pub transport: PeerTransport,
    pub allow: Vec<IpNet>,
    pub max_sessions: Option<u32>,
    pub max_cps: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Priority,
    Weighted,
    RoundRobin,
    LeastUtilized,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// `match.to_prefix`: Request-URI user prefixes; `""` matches everything.
    pub to_prefix: Vec<String>,
    /// Indices into `Policy::trunks`, in the order written.
    pub trunks: Vec<usize>,
    pub strategy: Strategy,
}
