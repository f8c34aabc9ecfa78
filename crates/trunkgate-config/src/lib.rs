//! `trunkgate-config`: the TOML policy: schema, strict parsing with `file:line:col` errors,
//! validation, `TRUNKGATE_SECTION__KEY` environment overrides, and the embedded default.
//!
//! What lives here: the data an operator writes and its checks. What does not: resolving
//! host names, sockets, or runtime state (that is `trunkgate-control` and the binary).

mod env;
mod error;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dual_stack;
#[cfg(test)]
mod tests_topology;
mod validate;
mod values;

pub use env::ENV_PREFIX;
pub use error::{PolicyError, PolicyErrors};
pub use values::DEFAULT_SIP_PORT;

/// A duration as the policy writes it (`"500ms"`, `"20s"`, `"30m"`, `"1h"`); the error says
/// what is wrong and what to write.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    values::duration(text).map_err(|p| match p.hint {
        Some(hint) => format!("{}; {hint}", p.message),
        None => p.message,
    })
}

use error::Report;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The embedded default policy (`config/trunkgate.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/trunkgate.toml");

/// The origin named in errors about [`EMBEDDED_DEFAULT`].
pub const EMBEDDED_ORIGIN: &str = "<embedded>";

/// A validated policy. Immutable; the binary swaps whole snapshots on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub listen: Listen,
    pub sip: SipSettings,
    pub admin: Admin,
    pub pbx: Pbx,
    pub trunks: Vec<Trunk>,
    pub routes: Vec<Route>,
    /// `[[account]]`: limits shared by several trunks of one provider account.
    pub accounts: Vec<Account>,
    pub security: Security,
    pub flood: Flood,
    pub register: Register,
    pub media: Media,
    /// `[health]`: the circuit breaker and `Retry-After` handling of every trunk.
    pub health: HealthSettings,
    pub limits: Limits,
    /// `[drill]`: bounds of failover drills.
    pub drill: DrillSettings,
    /// `[dns]`: name servers for trunk names.
    pub dns: DnsSettings,
    /// `[records]`: call records (SQLite) for busy-hour statistics and capacity planning.
    pub records: RecordsSettings,
    /// `[validate]`: how validation runs of test calls are placed.
    pub validate: ValidateSettings,
    /// `[[test_call]]`: synthetic calls Trunkgate places itself (`trunkgate ctl validate`).
    pub test_calls: Vec<TestCall>,
    /// `[tls]`: Trunkgate's certificate for `tls:` listeners and the trust anchors peers
    /// are verified against.
    pub tls: TlsSettings,
}

/// `[validate]`: bounds and triggers of validation runs (`trunkgate ctl validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateSettings {
    /// Test calls of one run in progress at once (default 4).
    pub concurrency: u32,
    /// Time between two test-call starts (default 200 ms): a run is a trickle, not a burst.
    pub start_interval: Duration,
    /// A test call not answered within this long is cancelled (default 30 s).
    pub setup_timeout: Duration,
    /// Run this suite after every applied reload (`None`: none).
    pub after_reload: Option<String>,
    /// Scheduled test calls (`every`) are skipped inside this daily window, in minutes
    /// after midnight UTC, start ≤ t < end (a window may wrap midnight).
    pub busy_hours: Option<(u16, u16)>,
    /// Finished runs kept for `ctl validate report` (default 20).
    pub keep_runs: u32,
}

/// Which way a test call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestDirection {
    /// As the PBX: through the outbound routes to a trunk.
    Outbound,
    /// As a trunk: to the PBX (inbound routing), e.g. to one of the company's DIDs.
    Inbound,
}

/// The audio codec a test call offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCodec {
    Pcmu,
    Pcma,
}

/// What a test call must end with to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestExpect {
    /// Answered, with audio both ways.
    Answer,
    /// Refused with this final code (a number the network must reject, say).
    Code(u16),
}

/// `[[test_call]]`: one synthetic call.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCall {
    pub name: String,
    /// Index into `Policy::trunks`. Outbound: that trunk first, the route's others as its
    /// failover (`None`: wherever the number's route sends it). Inbound: the trunk the call
    /// comes from (required).
    pub trunk: Option<usize>,
    pub direction: TestDirection,
    /// The number called: Request-URI and To user part.
    pub to: String,
    /// The calling number (From user part; default `trunkgate-test`).
    pub from: Option<String>,
    /// How long the call is held after the answer (default 10 s).
    pub duration: Duration,
    pub codec: TestCodec,
    pub expect: TestExpect,
    /// The far end echoes (an echo service, a loop): its audio must be ours, and the round
    /// trip is measured.
    pub echo: bool,
    /// Fail when the post-dial delay (to the first 180/183, else the answer) is longer.
    pub max_pdd: Option<Duration>,
    /// Fail when the estimated MOS of the audio received is lower.
    pub min_mos: Option<f64>,
    /// Suites this call belongs to (default `["default"]`).
    pub suites: Vec<String>,
    /// Placed on its own every this long (outside `validate.busy_hours`).
    pub every: Option<Duration>,
    /// Count against the trunk's `max_sessions`/`max_cps` like a real call (default false).
    pub count_limits: bool,
}

/// `[tls]`: the certificate Trunkgate serves on its `tls:` listeners, the CAs peers are
/// verified against, and whether clients must present a certificate. The policy holds
/// file names only: the binary reads the files (at start and on every reload); the checks
/// here read them too, so that a missing or unreadable file is refused with its
/// `file:line:col` before anything is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `tls.certificate`: PEM, our certificate first, then its intermediates. Needed by a
    /// `tls:` listener.
    pub certificate: Option<std::path::PathBuf>,
    /// `tls.private_key`: PEM (PKCS#8, PKCS#1 or SEC1), the certificate's key.
    pub private_key: Option<std::path::PathBuf>,
    /// `tls.ca_file`: PEM bundle of the CAs that peers' certificates are verified against
    /// (trunks' servers and, with `require_client_certificate`, clients). `None`: the
    /// system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
    /// `tls.require_client_certificate`: a client connecting to a `tls:` listener must
    /// present a certificate that `client_ca_file` (else `ca_file`) verifies (default false).
    pub require_client_certificate: bool,
    /// `tls.client_ca_file`: the CAs for client certificates (default: `ca_file`).
    pub client_ca_file: Option<std::path::PathBuf>,
    /// `tls.handshake_timeout`: a TLS handshake, either way, must finish within this long
    /// (default 5 s).
    pub handshake_timeout: Duration,
}

/// TLS toward one peer (`tls = { … }` of a trunk or of `[pbx]`): how its server
/// certificate is verified, and the client certificate Trunkgate presents to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTls {
    /// `server_name`: the name sent in SNI and that the peer's certificate must carry
    /// (a DNS name, or an IP address matched against IP SANs). `None`: the host of the
    /// peer's `address`.
    pub server_name: Option<String>,
    /// `ca_file`: the CAs this peer's certificate is verified against. `None`:
    /// `tls.ca_file`, else the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
    /// `certificate` and `private_key`: a client certificate for mutual TLS.
    pub certificate: Option<std::path::PathBuf>,
    pub private_key: Option<std::path::PathBuf>,
    /// `insecure_skip_verify`: accept any certificate (tests only; logged as a warning at
    /// every load). Default false.
    pub insecure_skip_verify: bool,
}

/// `[dns]`: where and how trunk and PBX names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `dns.servers`: name servers in order; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// `dns.timeout`: one query's timeout (default 2 s).
    pub timeout: Duration,
}

/// `[records]`: where call records are kept and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsSettings {
    /// Keep records at all (default true).
    pub enabled: bool,
    /// The SQLite file. `None`: the default, `$STATE_DIRECTORY/records.sqlite` when that
    /// is set (systemd's `StateDirectory=`), else `trunkgate-records.sqlite` in the working
    /// directory ([`RecordsSettings::resolved_path`]).
    pub path: Option<std::path::PathBuf>,
    /// Records older than this are deleted (default 400 days: a year of busy hours plus a
    /// quarter to compare with).
    pub keep: Duration,
    /// The store is kept under this many bytes, oldest records first (default 2 GiB).
    pub max_size: u64,
}

impl RecordsSettings {
    /// The file to open: `path`, else the default (see [`RecordsSettings::path`]).
    pub fn resolved_path(&self) -> std::path::PathBuf {
        if let Some(p) = &self.path {
            return p.clone();
        }
        match std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated: the first is ours.
            Some(dirs) if !dirs.is_empty() => {
                let first = dirs
                    .to_string_lossy()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                std::path::PathBuf::from(first).join("records.sqlite")
            }
            _ => std::path::PathBuf::from("trunkgate-records.sqlite"),
        }
    }
}

/// `[drill]`: failover drills (`trunkgate ctl drill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrillSettings {
    /// The longest `--for` a drill may be started with (default 30 min).
    pub max_duration: Duration,
}

/// `[limits]`: connection caps and the descriptor budget. `None` = `"auto"` (sized from the
/// process's descriptor limit at start; see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent SIP connections one allowed source address may hold (accepted ones).
    pub connections_per_source: u32,
    /// The SIP connections' share of descriptors = the global connection cap.
    pub sip_connections: Option<u32>,
    /// The media share, in calls of one audio stream (4 descriptors each).
    pub media_calls: Option<u32>,
    /// Descriptors kept for everything else: listeners, the admin API, logs, files.
    pub fd_margin: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    Udp,
    Tcp,
    /// SIP over TLS (`tls:IP:PORT`, usually port 5061); needs `[tls]` certificate and key.
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub transport: ListenTransport,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// `listen.sip`: `"udp:IP:PORT"` / `"tcp:IP:PORT"` / `"tls:IP:PORT"` (IPv6 as
    /// `udp:[::1]:5060`).
    pub sip: Vec<Listener>,
    /// `listen.advertised`: host for Via/Record-Route; default the first listener's IP.
    /// Written as a list of two (`["203.0.113.10", "2001:db8::10"]`), this is the first.
    pub advertised: String,
    /// The second host of a two-entry `listen.advertised`: one of the two is an IPv6
    /// literal (written on IPv6 listeners), the other an IPv4 literal or a name.
    pub advertised_alternate: Option<String>,
    /// `listen.dscp`: DSCP of SIP sockets (0–63; default CS3 = 24).
    pub dscp: u8,
}

/// `[media]`: the RTP/RTCP relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// `media.address`: where media sockets are bound; default the first SIP listener's IP.
    pub address: IpAddr,
    /// `media.advertised`: the address written into SDP; default `address`, or
    /// `listen.advertised` when `address` is unspecified.
    pub advertised: IpAddr,
    /// The other address family's media address when `media.address` lists one IPv4 and
    /// one IPv6 address (`["192.0.2.10", "2001:db8::10"]`), or when it is not written and
    /// the SIP listeners include a specific address of the other family: legs toward
    /// peers of that family bind and advertise here. `None`: every leg uses `address`.
    pub alternate: Option<MediaAddress>,
    /// `media.ports`: `"20000-39999"`; RTP on even ports, RTCP on the odd one above.
    pub port_min: u16,
    pub port_max: u16,
    /// `media.dscp`: DSCP of RTP/RTCP sockets (default EF = 46).
    pub dscp: u8,
    pub latch: MediaLatch,
    /// `media.fastpath`: `"auto"` (default), `"kernel"`, `"userspace"`.
    pub fastpath: MediaFastPath,
    /// `media.timeout`: no RTP from either side this long → BYE both ways (default 60 s).
    pub timeout: Duration,
    /// `media.hold_timeout`: the same while the call is on hold (default 1 h).
    pub hold_timeout: Duration,
    /// `media.threads`: relay threads (default 1).
    pub threads: u32,
    /// `media.nice`: the relay threads' nice value, -20..=19 (default -10; 0 = unchanged).
    pub nice: i8,
    /// `media.one_way_after`: audio from one side only (or none) this long after the answer
    /// flags the call one-way / without media (default 5 s; shorter than `timeout`).
    pub one_way_after: Duration,
    /// `media.quality_interval`: the estimated MOS is computed over intervals this long
    /// (default 10 s).
    pub quality_interval: Duration,
    /// `media.assumed_delay`: end-to-end one-way network delay the MOS assumes where no RTCP
    /// round trip is known (default 40 ms).
    pub assumed_delay: Duration,
}

/// One address family's media address (see [`Media::alternate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddress {
    /// Where media sockets of this family are bound (may be unspecified: `::`).
    pub address: IpAddr,
    /// What SDP toward a peer of this family names.
    pub advertised: IpAddr,
}

/// `media.fastpath`: where latched RTP is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaFastPath {
    /// The kernel (BPF at tc ingress, sk_lookup) where it loads, else the userspace relay
    /// (default).
    #[default]
    Auto,
    /// The kernel, or Trunkgate does not start.
    Kernel,
    /// The relay threads' sockets only.
    Userspace,
}

/// `media.latch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaLatch {
    /// `sdp-ip` for public SDP addresses, `any` for private ones (default).
    #[default]
    Auto,
    Any,
    SdpIp,
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SipSettings {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub timer_c: Duration,
    pub max_message_size: usize,
    pub tcp_idle_timeout: Duration,
    /// A connection that has not delivered a whole message this long after its first byte
    /// (of that message) is closed (slowloris).
    pub tcp_header_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Most header fields a message may carry (400 beyond).
    pub max_headers: u32,
    /// Most Via header values a request may carry (400 beyond).
    pub max_via: u32,
    /// `Retry-After` of the `503` when no trunk of a route can take a call.
    pub overflow_retry_after: Duration,
    /// A confirmed call with no in-dialog request for this long is forgotten: its session
    /// is freed (a lost BYE must not hold a trunk's capacity forever).
    pub dialog_timeout: Duration,
    /// `sip.nice`: the SIP core thread's nice value, -20..=19 (default 0 = unchanged).
    pub nice: i8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// `admin.token_file`: the bearer token that state-changing admin calls need (the
    /// file's first line). `None`: `TRUNKGATE_ADMIN_TOKEN`, else no token (loopback only).
    pub token_file: Option<std::path::PathBuf>,
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
    /// The port written, else 5060.
    pub port: u16,
    /// A port was written. A DNS name without one is looked up by SRV first (RFC 3263
    /// §4.2); with one, by A/AAAA only.
    pub port_given: bool,
}

impl HostPort {
    /// The socket address, if the host is an IP literal (names are resolved elsewhere).
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

/// `127.0.0.3:5060`, `[::1]:5060`, `sip.carrier.example:5060`; a name written without a
/// port stays without one (`sip.carrier.example`: its port comes from SRV).
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) if !self.port_given => write!(f, "{name}"),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// How Trunkgate reaches a peer for requests it starts toward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerTransport {
    /// The transport the request arrived on (default).
    Auto,
    Udp,
    Tcp,
    /// SIP over TLS: needs a `tls:` listener.
    Tls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pbx {
    /// The first node (`[pbx]` itself, named `"pbx"`).
    pub address: HostPort,
    pub transport: PeerTransport,
    pub allow: Vec<IpNet>,
    /// OPTIONS probes of the first node (`None`: not probed).
    pub probe: Option<Probe>,
    /// Further nodes (`[[pbx.node]]`), in the order written: calls from trunks try the
    /// first node, then these (a node whose `dids` match the number goes first).
    pub nodes: Vec<PbxNode>,
    /// Failover between the nodes for calls from trunks (the route keys, on `[pbx]`).
    pub inbound: Failover,
    /// `tls = { … }`: TLS toward the PBX (every node), when reached over TLS.
    pub tls: Option<PeerTls>,
}

/// A further PBX node (a second site, a standby).
#[derive(Debug, Clone, PartialEq)]
pub struct PbxNode {
    pub name: String,
    pub address: HostPort,
    pub transport: PeerTransport,
    pub allow: Vec<IpNet>,
    /// Request-URI user prefixes (DIDs) this node takes first.
    pub dids: Vec<String>,
    /// OPTIONS probes of this node (`None`: not probed).
    pub probe: Option<Probe>,
}

/// How a call moves on to its next candidate: a route's (or `[pbx]`'s) failover keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    pub failover_on: Vec<u16>,
    pub try_timeout: Option<Duration>,
    pub max_attempts: u32,
    pub setup_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    pub name: String,
    pub address: HostPort,
    pub transport: PeerTransport,
    pub allow: Vec<IpNet>,
    pub max_sessions: Option<u32>,
    pub max_cps: Option<u32>,
    /// Within `max_sessions`: concurrent calls from this trunk to the PBX.
    pub max_inbound: Option<u32>,
    /// Within `max_sessions`: concurrent calls from the PBX to this trunk.
    pub max_outbound: Option<u32>,
    /// Bucket size of `max_cps`: `Some(max_cps)` when not written, `None` without `max_cps`.
    pub cps_burst: Option<u32>,
    /// `media = { anchor = BOOL }`: relay this trunk's calls' media (default true).
    pub anchor_media: bool,
    /// `weight`: share of first picks under the `weighted` strategy (≥ 1, default 1).
    pub weight: u32,
    /// `probe = { … }`: SIP OPTIONS health probes; `None`: this trunk is not probed.
    pub probe: Option<Probe>,
    /// `auth = { … }`: credentials Trunkgate answers this trunk's 401/407 with on the
    /// PBX's behalf; `None`: challenges are relayed to the PBX.
    pub auth: Option<Auth>,
    /// `register = { … }`: Trunkgate registers with this trunk's registrar.
    pub register: Option<TrunkRegistration>,
    /// `[trunk.outbound]`: header normalisation of requests sent to this trunk.
    pub outbound: Option<HeaderRules>,
    /// `[trunk.inbound]`: of requests from this trunk to the PBX.
    pub inbound: Option<HeaderRules>,
    /// `topology_hiding = BOOL`: what this trunk receives names Trunkgate only (Via,
    /// Record-Route, Contact, Call-ID, identity hosts, product strings); default false.
    pub topology_hiding: bool,
    /// `tls = { … }`: TLS toward this trunk (server name, CAs, client certificate).
    /// `None` with `transport = "tls"`: the defaults (the address's host, `tls.ca_file`).
    pub tls: Option<PeerTls>,
}

/// A trunk's header normalisation for one direction (`[trunk.outbound]`, `[trunk.inbound]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// `called`: `(prefix, replacement)` pairs for the called number (Request-URI and To
    /// user part), the first matching prefix wins.
    pub called: Vec<(String, String)>,
    /// `calling`: the same for the calling number (From and P-Asserted-Identity).
    pub calling: Vec<(String, String)>,
    /// `remove_headers`: names (lower case, a trailing `*` matches any rest).
    pub remove_headers: Vec<String>,
    /// `keep_headers`: when not empty, only these pass (besides the ones SIP needs).
    pub keep_headers: Vec<String>,
    /// `add_headers`: whole lines `Name: value`.
    pub add_headers: Vec<String>,
    /// `user_agent`: replaces (or adds) User-Agent.
    pub user_agent: Option<String>,
}

/// A trunk's outbound registration (`register = { … }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// Account, realm and where the password is (as in `auth`).
    pub auth: Auth,
    /// Requested expiry (10 s ..= 1 day; default 600 s).
    pub expires: Duration,
    /// User part of the Contact registered (default: `user`).
    pub contact_user: String,
    /// Route calls to the trunk while its registration is down (default false: a trunk
    /// that is not registered is not a candidate).
    pub route_when_down: bool,
}

/// Digest credentials of a trunk (`auth = { user, password_file | password_env, realm }`).
/// The policy names where the password is, never the password: the binary reads it at
/// start (and on reload) and hands it to the SIP core as a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub user: String,
    pub password: PasswordSource,
    /// Answer only challenges for this realm; `None`: any realm the trunk names.
    pub realm: Option<String>,
}

/// Where a password is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_file`: the file's first line (a trailing newline is not part of it).
    File(std::path::PathBuf),
    /// `password_env`: this environment variable of the process.
    Env(String),
}

/// A provider account (`[[account]]`): session and call-rate limits that several trunks
/// draw on together, on top of each trunk's own. A trunk belongs to at most one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Indices into `Policy::trunks`, in the order written.
    pub trunks: Vec<usize>,
    /// Concurrent calls on all the account's trunks together, both directions.
    pub max_sessions: Option<u32>,
    /// Within `max_sessions`: calls from the account's trunks to the PBX.
    pub max_inbound: Option<u32>,
    /// Within `max_sessions`: calls from the PBX to the account's trunks.
    pub max_outbound: Option<u32>,
    /// New calls per second on all the account's trunks together.
    pub max_cps: Option<u32>,
    /// Bucket size of `max_cps`: `Some(max_cps)` when not written, `None` without `max_cps`.
    pub cps_burst: Option<u32>,
}

/// A trunk's `probe = { interval, timeout, down_after, up_after, ok_codes }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Time between probes (≥ 200 ms; default 10 s).
    pub interval: Duration,
    /// No answer this long: the probe failed (100 ms ..= `interval`; default 2 s, capped at
    /// `interval`).
    pub timeout: Duration,
    /// Consecutive failed probes that mark the trunk down (1–100; default 3).
    pub down_after: u32,
    /// Consecutive good probes that mark it up again (1–100; default 2).
    pub up_after: u32,
    /// Reply codes that count as reachable; `None`: the default rule
    /// ([`Probe::reachable`]).
    pub ok_codes: Option<Vec<u16>>,
}

impl Probe {
    /// Does a reply with `code` mean the trunk is reachable? With `ok_codes`: exactly those
    /// codes. Without: 200–499 except 408 (providers often answer OPTIONS with 404 or 405;
    /// the trunk is there), while 408, 5xx and 6xx mean down.
    pub fn reachable(&self, code: u16) -> bool {
        match &self.ok_codes {
            Some(codes) => codes.contains(&code),
            None => (200..=499).contains(&code) && code != 408,
        }
    }
}

/// `[health]`: how branch outcomes and `503 Retry-After` take trunks out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Consecutive branch failures (timeouts, transport errors, 5xx) that mark a trunk down
    /// (default 5).
    pub breaker_failures: u32,
    /// Those failures must fall within this window (default 60 s).
    pub breaker_window: Duration,
    /// A trunk without probes, down by the breaker, gets one trial call after this long
    /// (default 30 s).
    pub breaker_cooldown: Duration,
    /// A `503` with `Retry-After` keeps new calls off the trunk for at most this long
    /// (default 300 s); zero: `Retry-After` is ignored.
    pub retry_after_max: Duration,
}

/// `security.unknown_source`: what a request from a source in no allow list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSource {
    /// No answer at all (default): scanners learn nothing.
    #[default]
    Drop,
    /// `403 Forbidden`.
    Reject,
}

/// `[security]`: allow-list policy and scanner signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub unknown_source: UnknownSource,
    /// Substrings of User-Agent values to drop, matched ASCII-case-insensitively; each
    /// non-empty. Empty: nothing is blocked.
    pub block_user_agents: Vec<String>,
}

/// `[flood]`: per-source request-rate limit and bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    /// Requests per second per source (the refill rate).
    pub rate: u32,
    /// Requests a source may send at once (the bucket size).
    pub burst: u32,
    /// How long a source over the limit is dropped.
    pub ban: Duration,
    /// The PBX and the trunks (every source that classifies as one) are never limited.
    pub exempt_peers: bool,
    /// Further sources that are never limited.
    pub exempt: Vec<IpNet>,
    /// Most sources tracked at once; beyond it new sources share one overflow bucket.
    pub max_sources: u32,
    /// IPv6 sources are keyed by this prefix length.
    pub ipv6_prefix: u8,
}

/// `[register]`: the REGISTER rate from all sources together (registration storms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub max_rate: u32,
    pub burst: u32,
    /// Window of the randomised `Retry-After` of a refused REGISTER.
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
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
    /// Final response codes (300–699) from a trunk that make the call try the next
    /// candidate (default 408, 480, 500, 502, 503, 504). Timeouts and transport errors
    /// always fail over.
    pub failover_on: Vec<u16>,
    /// No provisional response from a trunk this long: try the next candidate. `None`
    /// (`"0s"`): off, only the SIP timers end a branch (default 3 s).
    pub try_timeout: Option<Duration>,
    /// Trunks tried per call, at most (1–16; default 3).
    pub max_attempts: u32,
    /// Total bound from the INVITE (≥ 1 s; default 30 s): then the PBX gets the last
    /// failure's code, or 408.
    pub setup_timeout: Duration,
}

impl Route {
    /// Does a final `code` from a trunk make this route try its next candidate?
    pub fn fails_over_on(&self, code: u16) -> bool {
        self.failover_on.contains(&code)
    }
}

impl Policy {
    /// Parse and validate `source`; `origin` names it in errors (`config/x.toml`).
    /// No environment overrides are applied.
    pub fn from_toml(source: &str, origin: &str) -> Result<Policy, PolicyErrors> {
        Self::from_toml_with_env(source, origin, &[])
    }

    /// Like [`Policy::from_toml`], then applies the `TRUNKGATE_<SECTION>__<KEY>` overrides
    /// found in `env` (name, value) before validation. Other names are ignored.
    pub fn from_toml_with_env(
        source: &str,
        origin: &str,
        env: &[(String, String)],
    ) -> Result<Policy, PolicyErrors> {
        let mut report = Report::new(source, origin);
        let mut raw = match toml::from_str::<raw::RawPolicy>(source) {
            Ok(raw) => raw,
            Err(e) => {
                syntax_error(&mut report, &e);
                return Err(report.into_errors());
            }
        };
        env::apply(&mut raw, env, &mut report);
        let policy = validate::policy(raw, &mut report);
        report.finish().map(|()| policy)
    }

    /// Read the policy file at `path` and apply the process's environment overrides.
    pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
        Self::load_with_text(path).map(|(policy, _)| policy)
    }

    /// As [`Policy::load`], also returning the file's text (for a hash and a diff).
    pub fn load_with_text(path: &Path) -> Result<(Policy, String), PolicyErrors> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| {
            PolicyErrors(vec![PolicyError {
                origin: origin.clone(),
                line: 0,
                col: 0,
                message: format!("cannot read the policy file: {e}"),
                hint: None,
            }])
        })?;
        Self::from_toml_with_env(&source, &origin, &env::process_env()).map(|p| (p, source))
    }

    /// The embedded default ([`EMBEDDED_DEFAULT`]) with the process's environment overrides.
    pub fn embedded_default() -> Result<Policy, PolicyErrors> {
        Self::from_toml_with_env(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN, &env::process_env())
    }
}

/// Report a TOML syntax or shape error; unknown keys get the valid keys and a suggestion.
fn syntax_error(report: &mut Report<'_>, e: &toml::de::Error) {
    let at = e.span().map_or(error::At::Nowhere, error::At::Span);
    let message = e.message().trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let after = rest.get(unknown.len() + 1..).unwrap_or_default();
        let expected: Vec<&str> = after.split('`').skip(1).step_by(2).collect();
        let table = [
            (raw::ROOT_KEYS, "at the top level"),
            (raw::LISTEN_KEYS, "in [listen]"),
            (raw::SIP_KEYS, "in [sip]"),
            (raw::ADMIN_KEYS, "in [admin]"),
            (raw::DRILL_KEYS, "in [drill]"),
            (raw::PBX_KEYS, "in [pbx]"),
            (raw::SECURITY_KEYS, "in [security]"),
            (raw::FLOOD_KEYS, "in [flood]"),
            (raw::REGISTER_KEYS, "in [register]"),
            (raw::MEDIA_KEYS, "in [media]"),
            (raw::LIMITS_KEYS, "in [limits]"),
            (raw::TRUNK_KEYS, "in [[trunk]]"),
            (raw::TRUNK_MEDIA_KEYS, "in a trunk's media"),
            (raw::PROBE_KEYS, "in a trunk's probe"),
            (raw::AUTH_KEYS, "in a trunk's auth"),
            (raw::TRUNK_REGISTER_KEYS, "in a trunk's register"),
            (raw::HEALTH_KEYS, "in [health]"),
            (raw::DNS_KEYS, "in [dns]"),
            (raw::RULES_KEYS, "in a trunk's outbound/inbound rules"),
            (raw::RECORDS_KEYS, "in [records]"),
            (raw::VALIDATE_KEYS, "in [validate]"),
            (raw::TEST_CALL_KEYS, "in [[test_call]]"),
            (raw::TLS_KEYS, "in [tls]"),
            (raw::PEER_TLS_KEYS, "in a trunk's or [pbx]'s tls"),
            (raw::ROUTE_KEYS, "in [[route]]"),
            (raw::ACCOUNT_KEYS, "in [[account]]"),
            (&["to_prefix"], "in route match"),
        ]
        .iter()
        .find(|(keys, _)| *keys == expected.as_slice())
        .map_or("here", |(_, t)| t);
        let valid = expected.join(", ");
        let hint = match raw::closest(unknown, &expected) {
            Some(c) => format!("did you mean `{c}`? valid keys {table}: {valid}"),
            None => format!("valid keys {table}: {valid}"),
        };
        report.error(&at, format!("unknown key `{unknown}` {table}"), Some(hint));
        return;
    }
    let hint = if message.contains("expected a sequence") || message.contains("invalid type: map") {
        Some(
            "trunks, routes and accounts are arrays of tables: write [[trunk]], [[route]] and [[account]]"
                .to_owned(),
        )
    } else {
        None
    };
    report.error(&at, message, hint);
}
