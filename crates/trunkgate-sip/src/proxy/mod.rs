//! The sans-IO proxy core: transactions (RFC 3261 §17), the stateful proxy (§16) and the
//! dialog table. Input: `(now, flow, source, bytes)` and timer expiries. Output: transmits
//! and the next deadline. Messages of one dialog leave in the order they arrived because one
//! `Proxy` value handles them sequentially.
//!
//! Layout: `state.rs` (what is remembered), `request.rs` (requests in: transaction
//! matching, CANCEL, routing, forwarding), `admit.rs` (which trunk may take a new call),
//! `addressing.rs` (what a forwarded request looks like; recognising ourselves),
//! `response.rs` (responses in, and what each timer does), `timer.rs` (the deadline heap),
//! `finished.rs` (transactions past their final, kept as compact records for their timers),
//! `auth.rs` (a trunk's 401/407 answered on the PBX's behalf; per-leg CSeq offsets),
//! `register.rs` (outbound registration per trunk), `topology.rs` (topology hiding toward
//! trunks, applied where messages leave and enter the core).
//! Tests: `simnet.rs` drives PBX ↔ proxy ↔ trunks over a simulated lossy network with a
//! fake clock; `tests.rs` (call flows), `tests_admission.rs` (limits, property test),
//! `tests_accounts.rs` (limits shared by a provider account's trunks).
//! `tests_auth.rs` (digest and CSeq mapping), `tests_register.rs` (registration),
//! `tests_topology.rs`, `tests_topology_more.rs` (topology hiding), `tests_finished.rs`
//! (finished transactions as compact records, `finished.rs`).

mod addressing;
mod admit;
mod auth;
mod branch;
mod dialog;
pub mod event;
mod finished;
mod footprint;
mod media;
mod originate;
mod parties;
mod register;
mod request;
mod response;
mod state;
mod timer;
mod topology;

#[cfg(test)]
mod simnet;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_accounts;
#[cfg(test)]
mod tests_admission;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod tests_dialog;
#[cfg(test)]
mod tests_failover;
#[cfg(test)]
mod tests_finished;
#[cfg(test)]
mod tests_internal;
#[cfg(test)]
mod tests_ipv6;
#[cfg(test)]
mod tests_media;
#[cfg(test)]
mod tests_property;
#[cfg(test)]
mod tests_register;
#[cfg(test)]
mod tests_tls;
#[cfg(test)]
mod tests_topology;
#[cfg(test)]
mod tests_topology_more;

use crate::admission::{AccountId, Admission, NoAdmission, RejectReason, Verdict};
use crate::media::MediaRelay;
use crate::message::{Limits, ParseError, SipMessage};
use crate::metrics::ProxyMetrics;
use crate::routing::{Party, Routing, TrunkId, TrunkLoad};
use crate::transport::{Flow, Transmit, Transport};
use bytes::{Bytes, BytesMut};
pub use event::{CallParties, EndReason, Event, Outcome, ProbeResult, Refusal, RegistrationResult};
pub use footprint::Footprint;
pub use register::RegistrationConfig;
use state::{ClientTx, Dialog, FinishedClient, FinishedServer, ServerTx, Sub};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use timer::{Timer, TimerHeap};

/// Maps keyed by the core's own ids (transactions, dialogs: counters, never a peer's bytes):
/// foldhash instead of SipHash (2.8 % of the core's samples in `benches/core_calls` were
/// SipHash). Maps keyed by what a peer sends (branch, Call-ID, tags) keep std's keyed SipHash.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// RFC 3261 timer bases.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Proxy INVITE transaction timeout (Timer C, > 3 min).
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
        }
    }
}

/// Static configuration of the core (changes need a restart).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host written in Via sent-by and Record-Route (an IP or a name).
    pub advertised: String,
    /// A second host for the other address family (`listen.advertised` listing an IPv4
    /// address or name and an IPv6 address). Each listener writes the host of its own
    /// family: an IP literal of that family, else a name, else its own specific IP, else
    /// `advertised` ([`addressing::listener_host`]).
    pub advertised_alternate: Option<String>,
    /// Listeners: each transport's local address (its port is advertised for that
    /// transport). The first listener of a transport is used for sending.
    pub listeners: Vec<Flow>,
    pub timers: Timers,
    pub limits: Limits,
    /// `Server` value on messages Trunkgate writes.
    pub server_name: String,
    /// A confirmed dialog with no in-dialog request for this long is forgotten.
    pub dialog_timeout: Duration,
}

/// Bounds for parsing bytes Trunkgate itself stored or wrote (a forwarded request may be a
/// Via and a Record-Route over the peer limits): never refuse our own output.
pub(crate) const OWN_LIMITS: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 4096,
    max_via: 4096,
};

/// Prefix of every branch we write: the RFC 3261 magic cookie plus our mark.
pub(crate) const BRANCH_PREFIX: &str = "z9hG4bK-tg-";

/// The source address of everything Trunkgate's own test-call agent injects, and the
/// destination of everything the core sends it (over [`INTERNAL_FLOW`]). Never a real peer.
pub const INTERNAL_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The flow of the test-call agent: in-process, reliable.
pub const INTERNAL_FLOW: Flow = Flow {
    transport: Transport::Internal,
    local: INTERNAL_ADDR,
    conn: None,
};

/// Who an injected message ([`Proxy::handle_internal`]) speaks for: Trunkgate's own test
/// call, placed as if `party` had sent it (the PBX for an outbound test, a trunk for an
/// inbound one). The request then takes the real path: routing, failover, drills, header
/// rules, media anchoring; only admission's flood and allow-list checks (it comes from no
/// socket) and, unless `counted`, the session and call-rate limits are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalOrigin {
    pub party: Party,
    /// The call counts against the trunk's sessions and call rate like a real one
    /// (`count_limits`); otherwise it takes nothing from the capacity it tests.
    pub counted: bool,
    /// Outbound: this trunk's candidates go first, the route's others after them as
    /// failover (a trunk that is down or drilled is skipped as for any call).
    pub prefer: Option<TrunkId>,
}

pub struct Proxy {
    config: ProxyConfig,
    routing: Arc<dyn Routing>,
    admission: Arc<dyn Admission>,
    /// The media relay; `None`: no call is anchored.
    media: Option<Arc<dyn MediaRelay>>,
    metrics: Arc<ProxyMetrics>,
    /// `config.limits` plus room for what we add to requests we forward.
    inbound_limits: Limits,
    /// Hosts that are us: the advertised hosts and every specific listener IP (as text).
    own_hosts: Vec<String>,
    /// The IP literals among `own_hosts`, compared by value (`[::1]` is
    /// `[0:0:0:0:0:0:0:1]`, RFC 5118 §4.3; IPv4-mapped IPv6 is its IPv4 address).
    own_ips: Vec<std::net::IpAddr>,
    /// The host each listener writes in Via, Record-Route and Contact (by local address).
    sent_by_hosts: Vec<(SocketAddr, String)>,
    /// `Server: ...` line for responses we write.
    server_header: String,
    /// `User-Agent: ...` line for requests we write (BYE on media timeout).
    user_agent_header: String,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    timers: TimerHeap,
    next_id: u64,
    /// Random per process: makes our branches and tags unguessable and unique across restarts.
    salt: u64,
    /// Server transactions before their final response.
    servers: IdMap<u64, ServerTx>,
    /// Server transactions past their final response (compact records, `finished.rs`).
    finished_servers: IdMap<u64, FinishedServer>,
    /// Both kinds by key (RFC 3261 §17.2.3).
    server_index: HashMap<Arc<[u8]>, u64>,
    /// Client transactions before their final response.
    clients: IdMap<(u64, Sub), ClientTx>,
    /// Client transactions past their final response (compact records, `finished.rs`).
    finished_clients: IdMap<(u64, Sub), FinishedClient>,
    dialogs: IdMap<u64, Dialog>,
    dialog_index: HashMap<Vec<u8>, u64>,
    /// Forked dialogs by Call-ID + caller tag + callee tag ([`dialog`]).
    fork_index: HashMap<Vec<u8>, u64>,
    /// Forks and subscriptions in `dialogs` (bounded by `dialog::MAX_SIDE_DIALOGS`).
    side_dialogs: usize,
    /// Sessions (dialogs) in progress per trunk index, by [`crate::Direction::index`]: the
    /// exact counts the limits are checked against.
    sessions: Vec<[u32; 2]>,
    /// The same per account id (`[[account]]`), from the same events: a dialog remembers
    /// its account at creation and when it moves (`move_callee`), so the count it gives
    /// back is the one it took, whatever a later policy says about the trunk's account.
    account_sessions: Vec<[u32; 2]>,
    shutting_down: bool,
    /// Rate limit for the "unknown source" warning.
    last_unknown_warn: Option<Instant>,
    unknown_since_warn: u64,
    scratch: Vec<crate::routing::Target>,
    /// Credentials per trunk for answering its 401/407 on the PBX's behalf (`auth.rs`).
    trunk_auth: HashMap<TrunkId, Arc<crate::digest::Credentials>>,
    /// Outbound registrations per trunk (`register.rs`).
    registrations: HashMap<TrunkId, register::Registration>,
    /// Topology hiding toward trunks: keys and per-dialog state (`topology.rs`).
    topology: topology::Topology,
    /// Set while [`Proxy::handle_internal`] handles a message of a test call.
    injected: Option<InternalOrigin>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("servers", &self.servers.len())
            .field("finished_servers", &self.finished_servers.len())
            .field("clients", &self.clients.len())
            .field("finished_clients", &self.finished_clients.len())
            .field("dialogs", &self.dialogs.len())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        routing: Arc<dyn Routing>,
        metrics: Arc<ProxyMetrics>,
    ) -> Proxy {
        let salt = random_salt();
        let inbound_limits = Limits {
            max_message_size: config.limits.max_message_size.saturating_add(1024),
            max_headers: config.limits.max_headers.saturating_add(4),
            max_via: config.limits.max_via.saturating_add(1),
        };
        let mut own_hosts = vec![config.advertised.clone()];
        own_hosts.extend(config.advertised_alternate.iter().cloned());
        for l in &config.listeners {
            let ip = l.local.ip();
            if !ip.is_unspecified() && !own_hosts.contains(&ip.to_string()) {
                own_hosts.push(ip.to_string());
            }
        }
        let own_ips = own_hosts
            .iter()
            .filter_map(|h| h.parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        let sent_by_hosts = config
            .listeners
            .iter()
            .map(|l| (l.local, addressing::listener_host(&config, l.local)))
            .collect();
        let server_header = format!("Server: {}", config.server_name);
        let user_agent_header = format!("User-Agent: {}", config.server_name);
        Proxy {
            inbound_limits,
            own_hosts,
            own_ips,
            sent_by_hosts,
            server_header,
            user_agent_header,
            config,
            routing,
            admission: Arc::new(NoAdmission),
            media: None,
            metrics,
            out: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerHeap::default(),
            next_id: 1,
            salt,
            servers: IdMap::default(),
            finished_servers: IdMap::default(),
            server_index: HashMap::new(),
            clients: IdMap::default(),
            finished_clients: IdMap::default(),
            dialogs: IdMap::default(),
            dialog_index: HashMap::new(),
            fork_index: HashMap::new(),
            side_dialogs: 0,
            sessions: Vec::new(),
            account_sessions: Vec::new(),
            shutting_down: false,
            last_unknown_warn: None,
            unknown_since_warn: 0,
            scratch: Vec::new(),
            trunk_auth: HashMap::new(),
            registrations: HashMap::new(),
            topology: topology::Topology::default(),
            injected: None,
        }
    }

    /// Use `admission` for limits, floods and allow-list policy (default: no limits,
    /// unknown sources dropped).
    pub fn with_admission(mut self, admission: Arc<dyn Admission>) -> Proxy {
        self.admission = admission;
        self
    }

    /// Anchor the media of calls (on trunks whose `media.anchor` is on) at `media`.
    pub fn with_media(mut self, media: Arc<dyn MediaRelay>) -> Proxy {
        self.media = Some(media);
        self
    }

    /// After an input batch (and what it sent): let the media relay act on what the batch
    /// asked of it ([`MediaRelay::flush`]).
    pub fn flush_media(&self) {
        if let Some(media) = &self.media {
            media.flush();
        }
    }

    #[cfg(test)]
    pub(crate) fn set_media(&mut self, media: Arc<dyn MediaRelay>) {
        self.media = Some(media);
    }

    /// Swap the admission policy (session counts are kept: they are facts, not policy).
    pub fn set_admission(&mut self, admission: Arc<dyn Admission>) {
        self.admission = admission;
    }

    /// Feed one received datagram or stream frame.
    pub fn handle_input(&mut self, now: Instant, flow: Flow, source: SocketAddr, data: Bytes) {
        // Admission before work: classification and the flood check cost a table lookup
        // and a token bucket; nothing is parsed for a source that is dropped.
        let party = self.routing.classify_at(source);
        if let Verdict::Drop(reason) = self.admission.datagram(source.ip(), party) {
            self.metrics.reject(0, reason);
            if reason == RejectReason::UnknownSource {
                self.unknown_source(now, source);
            }
            return;
        }
        // Parsed with room for what we add ourselves (responses to what we forwarded carry
        // our Via and Record-Route); requests are then held to the policy's exact bounds, so
        // what we forward always fits when it comes back.
        let msg = match SipMessage::parse(data.clone(), &self.inbound_limits) {
            Ok(msg) => msg,
            Err(error) => {
                self.unparseable(flow, source, party, data, &error);
                return;
            }
        };
        if msg.is_request() {
            if let Some(error) = self.over_bounds(&msg) {
                self.unparseable(flow, source, party, data, &error);
                return;
            }
        }
        if party == Party::Unknown {
            // Only here under `security.unknown_source = "reject"`.
            self.metrics.reject(0, RejectReason::UnknownSource);
            self.unknown_source(now, source);
            if msg.is_request() && msg.method() != Some(crate::message::Method::Ack) {
                self.respond_local(&msg, flow, source, 403, "Forbidden", &[]);
            }
            return;
        }
        let msg = self.unhide_from(party, msg);
        if msg.is_request() {
            self.handle_request(now, flow, source, party, msg);
        } else {
            self.handle_response(now, flow, source, party, msg);
        }
    }

    /// Feed one message of Trunkgate's own test-call agent, speaking for `origin.party`.
    /// What the core sends back to it goes out as transmits over [`INTERNAL_FLOW`] to
    /// [`INTERNAL_ADDR`]; the shell hands those to the agent, never to a socket.
    pub fn handle_internal(&mut self, now: Instant, origin: InternalOrigin, data: Bytes) {
        let msg = match SipMessage::parse(data, &OWN_LIMITS) {
            Ok(msg) => msg,
            Err(error) => {
                tracing::warn!(%error, "test-call agent message not parseable: dropped");
                return;
            }
        };
        self.injected = Some(origin);
        if msg.is_request() {
            self.handle_request(now, INTERNAL_FLOW, INTERNAL_ADDR, origin.party, msg);
        } else {
            self.handle_response(now, INTERNAL_FLOW, INTERNAL_ADDR, origin.party, msg);
        }
        self.injected = None;
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            self.fire(now, timer);
        }
        self.compact_timers();
    }

    /// Timers are never cancelled, only checked when they fire; most of them end up stale
    /// (Timer C waits 180 s for calls answered in one). When stale entries clearly dominate,
    /// drop them: memory then follows the live transactions, not the call rate × 180 s.
    fn compact_timers(&mut self) {
        let live = self.active_transactions() + self.dialogs.len();
        if self.timers.len() < 2 * live + 4096 {
            return;
        }
        let (servers, clients, dialogs) = (&self.servers, &self.clients, &self.dialogs);
        let (finished_servers, finished_clients) = (&self.finished_servers, &self.finished_clients);
        self.timers.retain(|timer| match *timer {
            Timer::ServerRetransmit(id) | Timer::ServerTimeout(id) | Timer::ServerExpire(id) => {
                finished_servers.contains_key(&id)
            }
            Timer::Trying(id) => servers.contains_key(&id),
            Timer::ClientRetransmit(id, sub) | Timer::ClientTimeout(id, sub) => {
                clients.contains_key(&(id, sub))
            }
            Timer::ClientExpire(id, sub) => finished_clients.contains_key(&(id, sub)),
            Timer::TimerC(id) | Timer::CancelGuard(id) | Timer::TryTimeout(id) => {
                clients.get(&(id, Sub::Main)).is_some_and(|c| {
                    matches!(
                        c.state,
                        state::ClientState::Calling | state::ClientState::Proceeding
                    )
                })
            }
            Timer::ProbeTimeout(id) => clients.contains_key(&(id, Sub::Main)),
            Timer::SetupTimeout(id) => servers.contains_key(&id),
            Timer::DialogExpire(id) => dialogs.contains_key(&id),
            Timer::Register(_) => true,
        });
    }

    /// The earliest deadline at which [`Proxy::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Next message to send, if any. Drain after every input or timeout.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event (call attempts, branch outcomes, answers, ends, probe results), in the
    /// order they happened. Drain after every input or timeout, like `poll_transmit`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Sessions in progress on `trunk` (both directions): the exact counts limits use.
    pub fn trunk_sessions(&self, trunk: TrunkId) -> u32 {
        let [outbound, inbound] = self.sessions_of(trunk);
        outbound + inbound
    }

    /// Sessions in progress on all trunks of account `account` (both directions): the exact
    /// counts the account's limits use.
    pub fn account_sessions(&self, account: AccountId) -> u32 {
        let [outbound, inbound] = self.account_sessions_of(account);
        outbound + inbound
    }

    /// A stream connection closed: dialogs and transactions that used it fall back to
    /// opening a new connection to the peer's address.
    pub fn connection_closed(&mut self, flow: Flow) {
        if flow.conn.is_none() {
            return;
        }
        for dialog in self.dialogs.values_mut() {
            for leg in [&mut dialog.caller, &mut dialog.callee] {
                if leg.flow == flow {
                    leg.flow.conn = None;
                }
            }
        }
        for answer in self
            .finished_servers
            .values_mut()
            .filter_map(|s| s.answer.as_deref_mut())
        {
            if answer.flow == flow {
                answer.flow.conn = None;
            }
        }
        for server in self.servers.values_mut() {
            if server.flow == flow {
                server.flow.conn = None;
                // RFC 3261 §18.2.2: with the connection gone, responses go to a new
                // connection to the source IP at the Via's sent-by port (5060 if none),
                // not to the ephemeral port the closed connection came from.
                let port = (!server.request.is_empty())
                    .then(|| SipMessage::parse(server.request.clone(), &OWN_LIMITS).ok())
                    .flatten()
                    .map(|m| m.top_via().port.unwrap_or(5060));
                if let Some(port) = port {
                    server.source.set_port(port);
                }
            }
        }
        for client in self.clients.values_mut() {
            if client.flow == flow {
                client.flow.conn = None;
            }
        }
        for ack in self
            .finished_clients
            .values_mut()
            .filter_map(|c| c.ack.as_deref_mut())
        {
            if ack.flow == flow {
                ack.flow.conn = None;
            }
        }
    }

    /// Swap the routing policy (calls in progress keep their dialogs' targets).
    pub fn set_routing(&mut self, routing: Arc<dyn Routing>) {
        self.routing = routing;
    }

    /// Stop accepting new INVITEs (answered 503); everything in progress continues.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Calls in progress (early or confirmed); forks and subscriptions are not counted
    /// (the drain at shutdown waits for calls only).
    pub fn active_dialogs(&self) -> usize {
        self.dialogs.len().saturating_sub(self.side_dialogs)
    }

    /// Transactions in flight (server and client).
    pub fn active_transactions(&self) -> usize {
        self.servers.len()
            + self.finished_servers.len()
            + self.clients.len()
            + self.finished_clients.len()
    }

    // ---- shared helpers ------------------------------------------------------------

    /// A message that did not parse, or a request over the policy's bounds. Counted either
    /// way (`parse_errors`, a `malformed` or `too_large` reject), never a panic. A request
    /// from an allowed source that can still be answered gets the answer RFC 3261 gives
    /// (the error's [`ParseError::response`]: `400` naming the problem, `505`, `513`);
    /// everything else is dropped: responses (a trunk's malformed response is never relayed
    /// half-parsed), ACKs, sources in no allow list, and garbage without a usable top Via.
    fn unparseable(
        &mut self,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        data: Bytes,
        error: &ParseError,
    ) {
        ProxyMetrics::inc(&self.metrics.parse_errors);
        let reason = match error {
            ParseError::TooLarge(_) => RejectReason::TooLarge,
            _ => RejectReason::Malformed,
        };
        self.metrics.reject(0, reason);
        let answer = (party != Party::Unknown)
            .then(|| error.response())
            .flatten()
            .and_then(|answer| Some((answer, SipMessage::parse_answerable(data)?)));
        let Some(((code, phrase), msg)) = answer else {
            tracing::debug!(%source, %error, "unparseable SIP message dropped");
            return;
        };
        tracing::debug!(%source, %error, code, "malformed SIP request refused");
        self.respond_local(&msg, flow, source, code, &phrase, &[]);
    }

    /// A request over the policy's bounds (it parsed only thanks to the headroom).
    fn over_bounds(&self, msg: &SipMessage) -> Option<ParseError> {
        let limits = &self.config.limits;
        if msg.as_bytes().len() > limits.max_message_size {
            Some(ParseError::TooLarge(msg.as_bytes().len()))
        } else if msg.headers().len() > limits.max_headers {
            Some(ParseError::TooManyHeaders)
        } else if msg.via_count() > limits.max_via {
            Some(ParseError::TooManyVias)
        } else {
            None
        }
    }

    /// Sessions in progress on trunk `trunk` in `direction`, and in both directions.
    fn sessions_of(&self, trunk: u16) -> [u32; 2] {
        self.sessions
            .get(usize::from(trunk))
            .copied()
            .unwrap_or_default()
    }

    /// Sessions in progress on account `account`, by direction.
    fn account_sessions_of(&self, account: AccountId) -> [u32; 2] {
        self.account_sessions
            .get(usize::from(account))
            .copied()
            .unwrap_or_default()
    }

    /// A session starts on `trunk` (and its `account`): both exact counts go up together.
    fn session_started(
        &mut self,
        trunk: u16,
        account: Option<AccountId>,
        direction: crate::Direction,
    ) {
        count_up(&mut self.sessions, usize::from(trunk), direction);
        if let Some(account) = account {
            count_up(&mut self.account_sessions, usize::from(account), direction);
            if let Some(gauge) = self.metrics.account(account) {
                gauge.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A session on `trunk` (counted against `account` when it started or moved) ends.
    fn session_ended(
        &mut self,
        trunk: u16,
        account: Option<AccountId>,
        direction: crate::Direction,
    ) {
        count_down(&mut self.sessions, usize::from(trunk), direction);
        if let Some(account) = account {
            if count_down(&mut self.account_sessions, usize::from(account), direction) {
                if let Some(gauge) = self.metrics.account(account) {
                    gauge.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn unknown_source(&mut self, now: Instant, source: SocketAddr) {
        ProxyMetrics::inc(&self.metrics.unknown_source);
        self.unknown_since_warn += 1;
        let due = self
            .last_unknown_warn
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                %source,
                dropped = self.unknown_since_warn,
                "SIP from a source in no allow list dropped (one line per 10 s)"
            );
            self.last_unknown_warn = Some(now);
            self.unknown_since_warn = 0;
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, flow: Flow, destination: SocketAddr, data: Bytes) {
        let data = self.hide_toward(&flow, destination, data);
        self.out.push_back(Transmit {
            flow,
            destination,
            data,
        });
    }

    /// The listener flow used to send over `transport` toward `destination`.
    fn listener_for(&self, transport: Transport, destination: SocketAddr) -> Option<Flow> {
        let listeners = &self.config.listeners;
        listeners
            .iter()
            .find(|l| l.transport == transport && l.local.is_ipv4() == destination.is_ipv4())
            .or_else(|| listeners.iter().find(|l| l.transport == transport))
            .map(|l| Flow { conn: None, ..*l })
    }

    /// `host:port` of our sent-by for a listener.
    fn sent_by(&self, flow: &Flow) -> String {
        let host = self
            .sent_by_hosts
            .iter()
            .find(|(local, _)| *local == flow.local)
            .map_or(self.config.advertised.as_str(), |(_, host)| host.as_str());
        host_port(host, flow.local.port())
    }

    /// Is `host[:port]` one of our own addresses?
    fn is_us(&self, host: &[u8], port: Option<u16>) -> bool {
        let host_matches = self
            .own_hosts
            .iter()
            .any(|own| host.eq_ignore_ascii_case(own.as_bytes()))
            || std::str::from_utf8(host)
                .ok()
                .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| self.own_ips.contains(&ip.to_canonical()));
        if !host_matches {
            return false;
        }
        let port = port.unwrap_or(5060);
        self.config.listeners.iter().any(|l| l.local.port() == port)
    }

    /// A branch for a new client transaction: magic cookie, our mark, salt, id.
    fn branch_for(&self, id: u64) -> String {
        format!("{BRANCH_PREFIX}{:x}-{id:x}", self.salt & 0xffff_ffff)
    }

    /// The transaction id inside one of our branches, if it is one of ours.
    fn id_from_branch(&self, branch: &[u8]) -> Option<u64> {
        let rest = branch.strip_prefix(BRANCH_PREFIX.as_bytes())?;
        let dash = rest.iter().position(|&b| b == b'-')?;
        let (salt, id) = (&rest[..dash], &rest[dash + 1..]);
        let salt = u64::from_str_radix(std::str::from_utf8(salt).ok()?, 16).ok()?;
        if salt != self.salt & 0xffff_ffff {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()
    }

    /// A stable tag for responses Trunkgate writes itself (same request → same tag, so a
    /// stateless answer to a retransmission is identical).
    fn local_tag(&self, msg: &SipMessage) -> String {
        let mut h = Fnv::new(self.salt);
        h.write(msg.call_id());
        h.write(msg.from_tag().unwrap_or_default());
        h.write(msg.top_via().branch().unwrap_or_default());
        format!("tg{:x}", h.finish())
    }

    /// Write a response to `req` and send it to `source` over `flow`. Returns the bytes.
    fn respond_local(
        &mut self,
        req: &SipMessage,
        flow: Flow,
        source: SocketAddr,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
    ) -> Bytes {
        let tag = (code > 100).then(|| self.local_tag(req));
        let mut lines: smallvec::SmallVec<[&[u8]; 4]> = smallvec::SmallVec::new();
        lines.extend_from_slice(extra);
        lines.push(self.server_header.as_bytes());
        // Empty: `rewrite::response` reserves what it needs (a final is kept for Timer J).
        let mut out = BytesMut::new();
        crate::message::rewrite::response(
            req,
            code,
            reason,
            tag.as_deref().map(str::as_bytes),
            &lines,
            &mut out,
        );
        drop(lines);
        let data = out.freeze();
        self.count_response(0, code);
        self.send(flow, source, data.clone());
        data
    }

    fn count_response(&self, peer: usize, code: u16) {
        let class = (code / 100).clamp(1, 6) as usize - 1;
        if let Some(p) = self.metrics.peer(peer) {
            ProxyMetrics::inc(&p.responses[class]);
        }
    }

    fn tx_created(&self) {
        self.metrics.transactions.fetch_add(1, Ordering::Relaxed);
    }

    fn tx_removed(&self) {
        self.metrics.transactions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forget server transaction `id`, before or after its final.
    fn remove_server(&mut self, id: u64) {
        let key = match self.servers.remove(&id) {
            Some(tx) => tx.key,
            None => match self.finished_servers.remove(&id) {
                Some(record) => record.key,
                None => return,
            },
        };
        if self.server_index.get(&key) == Some(&id) {
            self.server_index.remove(&key);
        }
        self.tx_removed();
    }

    /// Forget client transaction `(id, sub)`, before or after its final.
    fn remove_client(&mut self, id: u64, sub: Sub) {
        if self.clients.remove(&(id, sub)).is_some()
            || self.finished_clients.remove(&(id, sub)).is_some()
        {
            self.tx_removed();
        }
    }

    fn remove_dialog(&mut self, id: u64, why: EndReason) {
        self.forget_hidden(id);
        let kind = self.dialogs.get(&id).map(|d| d.kind);
        if let Some(kind @ (state::DialogKind::Fork | state::DialogKind::Subscription)) = kind {
            if let Some(dialog) = self.dialogs.remove(&id) {
                let index = match kind {
                    state::DialogKind::Fork => &mut self.fork_index,
                    _ => &mut self.dialog_index,
                };
                if index.get(&dialog.index_key) == Some(&id) {
                    index.remove(&dialog.index_key);
                }
                self.side_dialogs = self.side_dialogs.saturating_sub(1);
                tracing::debug!(dialog = id, ?kind, ?why, "dialog ended");
            }
            return;
        }
        if let Some(dialog) = self.dialogs.remove(&id) {
            self.events.push_back(Event::CallEnded {
                dialog: id,
                trunk: dialog.trunk,
                reason: why,
            });
            self.dialog_index.remove(&dialog.index_key);
            if let (Some(trunk), true) = (dialog.trunk, dialog.counted) {
                self.session_ended(trunk, dialog.account, dialog.direction);
            }
            if let (Some(media), Some(_)) = (&self.media, &dialog.media) {
                media.delete(id);
            }
            if dialog.counted {
                self.metrics.dialogs_total.fetch_sub(1, Ordering::Relaxed);
                if let Some(p) = self.metrics.peer(dialog.metric_peer) {
                    p.dialogs[dialog.direction.index()].fetch_sub(1, Ordering::Relaxed);
                }
            }
            tracing::debug!(
                dialog = id,
                confirmed = dialog.confirmed,
                ?why,
                "dialog ended"
            );
        }
    }
}

fn count_up(counts: &mut Vec<[u32; 2]>, index: usize, direction: crate::Direction) {
    if counts.len() <= index {
        counts.resize(index + 1, [0, 0]);
    }
    counts[index][direction.index()] += 1;
}

/// One session fewer; `false` when there was none to end (never below zero).
fn count_down(counts: &mut [[u32; 2]], index: usize, direction: crate::Direction) -> bool {
    match counts
        .get_mut(index)
        .map(|pair| &mut pair[direction.index()])
    {
        Some(count) if *count > 0 => {
            *count -= 1;
            true
        }
        _ => false,
    }
}

/// The core's session counts as [`TrunkLoad`] for routing strategies.
pub(crate) struct SessionLoad<'a>(pub &'a [[u32; 2]]);

impl TrunkLoad for SessionLoad<'_> {
    fn sessions(&self, trunk: TrunkId) -> u32 {
        self.0
            .get(usize::from(trunk))
            .map_or(0, |[outbound, inbound]| outbound + inbound)
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// FNV-1a, seeded; for tags and stateless branches (not for hash tables).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub fn new(seed: u64) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325 ^ seed)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// A per-process random value from the std hasher's random keys (no extra dependency).
fn random_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7472_756e_6b67_6174);
    h.finish()
}
