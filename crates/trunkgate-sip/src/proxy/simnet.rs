//! A simulated network for the core: PBX and trunk endpoints on loopback addresses, a fake
//! clock, fixed latency and a scriptable loss rule. Tests play the user agents by hand so
//! every retransmission and timer is visible, and nothing sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Proxy, ProxyConfig, Timers};
use crate::admission::{AccountId, Admission, RejectReason, TrunkLimits, UnknownSource, Verdict};
use crate::message::{Limits, SipMessage};
use crate::metrics::ProxyMetrics;
use crate::routing::{FailoverPolicy, Party, RouteChoice, Routing, Target, TrunkLoad};
use crate::transport::{Flow, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PROXY: &str = "127.0.0.1:5060";
pub const PBX: &str = "127.0.0.2:5060";
pub const TRUNK: &str = "127.0.0.3:5060";
pub const TRUNK_B: &str = "127.0.0.4:5060";
/// Trunk 2, routed only with `TestRouting::third_trunk`.
pub const TRUNK_C: &str = "127.0.0.6:5060";
pub const STRANGER: &str = "127.0.0.9:5060";
/// Where the core's transmits to the test-call agent arrive (`INTERNAL_ADDR`).
pub const INTERNAL: &str = "0.0.0.0:0";
/// The TLS listener of [`SimNet::with_tls`].
pub const PROXY_TLS: &str = "127.0.0.1:5061";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// PBX at 127.0.0.2, trunk 0 at 127.0.0.3, trunk 1 at 127.0.0.4; PBX calls try trunk 0
/// then trunk 1 (then trunk 2 at 127.0.0.6 when `third_trunk`), trunk calls go to the PBX
/// (and to a second PBX node at 127.0.0.5 when `second_pbx`). `failover`: the route's
/// failover policy (default: none, one attempt).
#[derive(Debug, Clone, Copy)]
pub struct TestRouting {
    pub failover: FailoverPolicy,
    pub second_pbx: bool,
    /// Trunk 0 is answered locally with this code (a `reject-503` drill).
    pub reject_first: Option<u16>,
    /// PBX calls may also use trunk 2 (after trunks 0 and 1).
    pub third_trunk: bool,
    /// Trunk 0 (and the PBX for calls from trunks) is reached over this transport
    /// (`None`: the one the request came in on).
    pub first_transport: Option<Transport>,
}

pub const PBX_B: &str = "127.0.0.5:5060";

impl Default for TestRouting {
    fn default() -> Self {
        TestRouting {
            failover: FailoverPolicy::NONE,
            second_pbx: false,
            reject_first: None,
            third_trunk: false,
            first_transport: None,
        }
    }
}

impl Routing for TestRouting {
    fn classify(&self, source: IpAddr) -> Party {
        match source.to_string().as_str() {
            "127.0.0.2" | "127.0.0.5" => Party::Pbx,
            "127.0.0.3" => Party::Trunk(0),
            "127.0.0.4" => Party::Trunk(1),
            "127.0.0.6" => Party::Trunk(2),
            _ => Party::Unknown,
        }
    }
    fn candidates(
        &self,
        _now: Instant,
        from: Party,
        _user: Option<&[u8]>,
        _load: &dyn TrunkLoad,
        out: &mut Vec<Target>,
    ) -> RouteChoice {
        match from {
            Party::Pbx => {
                out.push(Target {
                    party: Party::Trunk(0),
                    address: addr(TRUNK),
                    transport: self.first_transport,
                    uri_host: TRUNK.into(),
                    local_answer: self.reject_first,
                });
                out.push(Target {
                    party: Party::Trunk(1),
                    address: addr(TRUNK_B),
                    transport: None,
                    uri_host: TRUNK_B.into(),
                    local_answer: None,
                });
                if self.third_trunk {
                    out.push(Target {
                        party: Party::Trunk(2),
                        address: addr(TRUNK_C),
                        transport: None,
                        uri_host: TRUNK_C.into(),
                        local_answer: None,
                    });
                }
            }
            Party::Trunk(_) => {
                out.push(Target {
                    party: Party::Pbx,
                    address: addr(PBX),
                    transport: None,
                    uri_host: PBX.into(),
                    local_answer: None,
                });
                if self.second_pbx {
                    out.push(Target {
                        party: Party::Pbx,
                        address: addr(PBX_B),
                        transport: None,
                        uri_host: PBX_B.into(),
                        local_answer: None,
                    });
                }
            }
            Party::Unknown => {}
        }
        RouteChoice {
            route: Some(0),
            failover: self.failover,
        }
    }
}

/// Admission with settable limits, for the admission scenarios.
#[derive(Debug, Default)]
pub struct TestAdmission {
    pub limits: [TrunkLimits; 2],
    /// Call-rate tokens left per trunk (`None`: unlimited).
    pub cps_tokens: Mutex<[Option<u32>; 2]>,
    /// The account of trunks 0, 1 and 2 (`[[account]]`).
    pub accounts: [Option<AccountId>; 3],
    /// Session limits of accounts 0 and 1.
    pub account_limits: [TrunkLimits; 2],
    /// Call-rate tokens left per account (`None`: unlimited).
    pub account_tokens: Mutex<[Option<u32>; 2]>,
    pub unknown: UnknownSource,
    pub blocked_agent: Option<&'static str>,
    pub register_retry: Option<u32>,
    pub banned: Option<IpAddr>,
}

impl Admission for TestAdmission {
    fn datagram(&self, source: IpAddr, party: Party) -> Verdict {
        if Some(source) == self.banned {
            return Verdict::Drop(RejectReason::Flood);
        }
        match (party, self.unknown) {
            (Party::Unknown, UnknownSource::Drop) => Verdict::Drop(RejectReason::UnknownSource),
            _ => Verdict::Pass,
        }
    }
    fn unknown_source(&self) -> UnknownSource {
        self.unknown
    }
    fn blocked_user_agent(&self, _party: Party, user_agent: &[u8]) -> bool {
        self.blocked_agent
            .is_some_and(|b| String::from_utf8_lossy(user_agent).contains(b))
    }
    fn trunk_limits(&self, trunk: u16) -> TrunkLimits {
        self.limits
            .get(usize::from(trunk))
            .copied()
            .unwrap_or_default()
    }
    fn try_call_rate(&self, trunk: u16) -> bool {
        let mut tokens = self.cps_tokens.lock().unwrap();
        match tokens.get_mut(usize::from(trunk)) {
            Some(Some(0)) => false,
            Some(Some(n)) => {
                *n -= 1;
                true
            }
            _ => true,
        }
    }
    fn give_back_call_rate(&self, trunk: u16) {
        let mut tokens = self.cps_tokens.lock().unwrap();
        if let Some(Some(n)) = tokens.get_mut(usize::from(trunk)) {
            *n += 1;
        }
    }
    fn trunk_account(&self, trunk: u16) -> Option<AccountId> {
        self.accounts.get(usize::from(trunk)).copied().flatten()
    }
    fn account_limits(&self, account: AccountId) -> TrunkLimits {
        self.account_limits
            .get(usize::from(account))
            .copied()
            .unwrap_or_default()
    }
    fn try_account_rate(&self, account: AccountId) -> bool {
        let mut tokens = self.account_tokens.lock().unwrap();
        match tokens.get_mut(usize::from(account)) {
            Some(Some(0)) => false,
            Some(Some(n)) => {
                *n -= 1;
                true
            }
            _ => true,
        }
    }
    fn try_register(&self, _party: Party) -> Option<u32> {
        self.register_retry
    }
    fn overflow_retry_after(&self) -> u32 {
        10
    }
}

type DropRule = Box<dyn FnMut(SocketAddr, SocketAddr, &str) -> bool>;

pub struct SimNet {
    pub proxy: Proxy,
    pub metrics: Arc<ProxyMetrics>,
    pub now: Instant,
    pub latency: Duration,
    /// (deliver at, from, to, bytes); `to == PROXY` goes into the core.
    in_flight: Vec<(Instant, SocketAddr, SocketAddr, Bytes)>,
    inbox: HashMap<SocketAddr, Vec<SipMessage>>,
    /// What the proxy sent that does not parse (answers to malformed requests).
    unparsed: HashMap<SocketAddr, Vec<Bytes>>,
    /// Return true to drop a packet (from, to, text).
    pub drop_rule: Option<DropRule>,
    pub dropped: usize,
    /// Every transmit's destination and flow, in order (transport and connection checks).
    pub sent_flows: Vec<(SocketAddr, Flow)>,
}

impl SimNet {
    pub fn new() -> SimNet {
        SimNet::with_admission(None)
    }

    pub fn with_admission(admission: Option<Arc<dyn Admission>>) -> SimNet {
        SimNet::with(admission, TestRouting::default())
    }

    /// PBX calls fail over between the two trunks per `failover`.
    pub fn with_failover(failover: FailoverPolicy) -> SimNet {
        SimNet::with(
            None,
            TestRouting {
                failover,
                second_pbx: true,
                reject_first: None,
                third_trunk: false,
                first_transport: None,
            },
        )
    }

    pub fn with(admission: Option<Arc<dyn Admission>>, routing: TestRouting) -> SimNet {
        Self::build(admission, routing, None)
    }

    /// With a TCP listener beside the UDP one (TCP flows: `send_tcp`).
    pub fn with_tcp() -> SimNet {
        Self::build(None, TestRouting::default(), Some(Transport::Tcp))
    }

    /// With a TLS listener on [`PROXY_TLS`] beside the UDP one (TLS flows: `send_stream`).
    pub fn with_tls(routing: TestRouting) -> SimNet {
        Self::build(None, routing, Some(Transport::Tls))
    }

    fn build(
        admission: Option<Arc<dyn Admission>>,
        routing: TestRouting,
        stream: Option<Transport>,
    ) -> SimNet {
        let flow = Flow {
            transport: Transport::Udp,
            local: addr(PROXY),
            conn: None,
        };
        let mut listeners = vec![flow];
        match stream {
            Some(Transport::Tls) => listeners.push(Flow {
                transport: Transport::Tls,
                local: addr(PROXY_TLS),
                conn: None,
            }),
            Some(transport) => listeners.push(Flow { transport, ..flow }),
            None => {}
        }
        let config = ProxyConfig {
            advertised: "127.0.0.1".into(),
            advertised_alternate: None,
            listeners,
            timers: Timers::default(),
            limits: Limits::default(),
            server_name: "Trunkgate/test".into(),
            dialog_timeout: Duration::from_secs(12 * 3600),
        };
        let metrics = Arc::new(ProxyMetrics::with_accounts(3, 2));
        let mut proxy = Proxy::new(config, Arc::new(routing), metrics.clone());
        if let Some(admission) = admission {
            proxy = proxy.with_admission(admission);
        }
        SimNet {
            proxy,
            metrics,
            now: Instant::now(),
            latency: Duration::from_millis(5),
            in_flight: Vec::new(),
            inbox: HashMap::new(),
            unparsed: HashMap::new(),
            drop_rule: None,
            dropped: 0,
            sent_flows: Vec::new(),
        }
    }

    /// An endpoint sends `text` (LF or CRLF line ends) to the proxy.
    pub fn send(&mut self, from: &str, text: &str) {
        let data = crlf(text);
        self.put(addr(from), addr(PROXY), Bytes::from(data));
    }

    fn put(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        if let Some(rule) = self.drop_rule.as_mut() {
            if rule(from, to, &String::from_utf8_lossy(&data)) {
                self.dropped += 1;
                return;
            }
        }
        self.in_flight
            .push((self.now + self.latency, from, to, data));
    }

    /// Advance the clock by `d`, delivering packets and firing timers in time order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_packet = self.in_flight.iter().map(|p| p.0).min();
            let next_timer = self.proxy.poll_timeout();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.deliver_due();
                    self.proxy.handle_timeout(self.now);
                    self.drain_proxy();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Deliver everything in flight (a little more than one latency).
    pub fn settle(&mut self) {
        self.run_for(self.latency * 3);
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due: Vec<_> = Vec::new();
        self.in_flight.retain(|p| {
            if p.0 <= now {
                due.push(p.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|p| p.0);
        for (_, from, to, data) in due {
            if to == addr(PROXY) {
                let flow = Flow {
                    transport: Transport::Udp,
                    local: to,
                    conn: None,
                };
                self.proxy.handle_input(now, flow, from, data);
                self.drain_proxy();
            } else {
                match SipMessage::parse(data.clone(), &super::OWN_LIMITS) {
                    Ok(msg) => self.inbox.entry(to).or_default().push(msg),
                    // An answer to a malformed request copies its malformed headers: kept
                    // raw for `take_raw`; `take` refuses to hand them out as parsed.
                    Err(_) => self.unparsed.entry(to).or_default().push(data),
                }
            }
        }
    }

    /// The relay reports dead media on `dialog` now.
    pub fn media_timeout(&mut self, dialog: u64, idle: Duration) -> bool {
        let ended = self.proxy.media_timeout(self.now, dialog, idle);
        self.drain_proxy();
        ended
    }

    fn drain_proxy(&mut self) {
        while let Some(t) = self.proxy.poll_transmit() {
            self.sent_flows.push((t.destination, t.flow));
            self.put(t.flow.local, t.destination, t.data);
        }
    }

    /// The test-call agent injects `text`, speaking for `origin.party`; what the core sends
    /// it arrives at [`INTERNAL`].
    pub fn inject(&mut self, origin: super::InternalOrigin, text: &str) {
        self.proxy
            .handle_internal(self.now, origin, Bytes::from(crlf(text)));
        self.drain_proxy();
    }

    /// `text` arrives on TCP connection `conn` from `from` (the connection's source
    /// address: an ephemeral port, not the peer's listening one).
    pub fn send_tcp(&mut self, from: &str, conn: u64, text: &str) {
        let flow = Flow {
            transport: Transport::Tcp,
            local: addr(PROXY),
            conn: Some(crate::transport::ConnId(conn)),
        };
        self.proxy
            .handle_input(self.now, flow, addr(from), Bytes::from(crlf(text)));
        self.drain_proxy();
    }

    /// `text` arrives over `transport` (TCP or TLS) on connection `conn` from `from`, at
    /// the listener of that transport.
    pub fn send_stream(&mut self, transport: Transport, from: &str, conn: u64, text: &str) {
        let local = match transport {
            Transport::Tls => addr(PROXY_TLS),
            _ => addr(PROXY),
        };
        let flow = Flow {
            transport,
            local,
            conn: Some(crate::transport::ConnId(conn)),
        };
        self.proxy
            .handle_input(self.now, flow, addr(from), Bytes::from(crlf(text)));
        self.drain_proxy();
    }

    /// TCP connection `conn` closed.
    pub fn close_tcp(&mut self, conn: u64) {
        self.proxy.connection_closed(Flow {
            transport: Transport::Tcp,
            local: addr(PROXY),
            conn: Some(crate::transport::ConnId(conn)),
        });
    }

    /// Every event the core produced since the last call.
    pub fn events(&mut self) -> Vec<super::Event> {
        std::iter::from_fn(|| self.proxy.poll_event()).collect()
    }

    /// Send an OPTIONS probe to `target` now.
    pub fn probe(&mut self, target: &crate::routing::Target, timeout: Duration) -> bool {
        let sent = self.proxy.probe(self.now, target, timeout);
        self.drain_proxy();
        sent
    }

    /// Start trunk `trunk`'s registration now.
    pub fn register(&mut self, trunk: crate::routing::TrunkId, config: super::RegistrationConfig) {
        self.proxy.set_registration(self.now, trunk, Some(config));
        self.drain_proxy();
    }

    /// Deregister everything now (shutdown).
    pub fn deregister_all(&mut self) {
        self.proxy.deregister_all(self.now);
        self.drain_proxy();
    }

    /// The shell reports that `destination` cannot be reached over `transport`.
    pub fn transport_failed(&mut self, transport: Transport, destination: &str) {
        self.proxy
            .transport_failed(self.now, transport, addr(destination));
        self.drain_proxy();
    }

    /// Everything `at` received since the last call.
    /// What `at` received, parsed. Panics if the proxy sent `at` something that does not
    /// parse (only answers to malformed requests may: see [`Self::take_raw`]).
    pub fn take(&mut self, at: &str) -> Vec<SipMessage> {
        if let Some(raw) = self.unparsed.remove(&addr(at)) {
            let text: Vec<_> = raw.iter().map(|d| String::from_utf8_lossy(d)).collect();
            panic!(
                "the proxy sent {at} unparseable messages:\n{}",
                text.join("\n")
            );
        }
        self.inbox.remove(&addr(at)).unwrap_or_default()
    }

    /// Everything `at` received, as bytes: parsed messages first, then unparseable ones.
    pub fn take_raw(&mut self, at: &str) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self
            .inbox
            .remove(&addr(at))
            .unwrap_or_default()
            .iter()
            .map(|m| m.buffer().clone())
            .collect();
        out.extend(self.unparsed.remove(&addr(at)).unwrap_or_default());
        out
    }

    /// An endpoint sends exactly `data` to the proxy (no line-end conversion).
    pub fn send_bytes(&mut self, from: &str, data: &[u8]) {
        self.put(addr(from), addr(PROXY), Bytes::copy_from_slice(data));
    }

    /// The one message `at` received (panics otherwise, naming what arrived).
    /// Sessions in progress on trunk `trunk` (both directions).
    pub fn sessions(&self, trunk: u16) -> u32 {
        self.proxy.trunk_sessions(trunk)
    }

    /// No transaction, dialog (of any kind) or index entry left.
    pub fn proxy_is_idle(&self) -> bool {
        let p = &self.proxy;
        p.servers.is_empty()
            && p.finished_servers.is_empty()
            && p.server_index.is_empty()
            && p.clients.is_empty()
            && p.finished_clients.is_empty()
            && p.dialogs.is_empty()
            && p.dialog_index.is_empty()
            && p.fork_index.is_empty()
            && p.side_dialogs == 0
    }

    /// Has something arrived at `at` (left where it is)?
    pub fn has_arrived(&self, at: &str) -> bool {
        self.inbox.get(&addr(at)).is_some_and(|v| !v.is_empty())
            || self.unparsed.get(&addr(at)).is_some_and(|v| !v.is_empty())
    }

    pub fn take_one(&mut self, at: &str) -> SipMessage {
        let mut got = self.take(at);
        assert_eq!(
            got.len(),
            1,
            "{at} expected one message, got {}",
            describe(&got)
        );
        got.remove(0)
    }
}

pub fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.trim_start_matches('\n').split('\n') {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    out
}

pub fn describe(msgs: &[SipMessage]) -> String {
    msgs.iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m.as_bytes()).to_string();
            text.lines().next().unwrap_or_default().to_string()
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A user agent's view of one call, enough to write its messages.
#[derive(Clone)]
pub struct Call {
    pub call_id: String,
    pub caller: &'static str,
    pub callee: &'static str,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub branch_seq: u32,
}

impl Call {
    pub fn new(id: &str, caller: &'static str, callee: &'static str) -> Call {
        Call {
            call_id: format!("{id}@test"),
            caller,
            callee,
            from_tag: format!("ft-{id}"),
            to_tag: None,
            cseq: 1,
            branch_seq: 0,
        }
    }

    pub fn next_branch(&mut self) -> String {
        self.branch_seq += 1;
        format!(
            "z9hG4bK-{}-{}",
            self.call_id.replace('@', "."),
            self.branch_seq
        )
    }

    /// Initial INVITE from `caller`, Request-URI at the proxy, no Route (as SIPp does).
    pub fn invite(&mut self) -> (String, String) {
        let branch = self.next_branch();
        let msg = format!(
            "INVITE sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {caller};branch={branch}
Max-Forwards: 70
From: <sip:alice@{caller}>;tag={ftag}
To: <sip:5551234@{PROXY}>
Call-ID: {cid}
CSeq: {cseq} INVITE
Contact: <sip:alice@{caller}>
Content-Type: application/sdp
Content-Length: 5

v=0
",
            caller = self.caller,
            ftag = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
        );
        (msg, branch)
    }

    /// An in-dialog request from the caller (no Route, Request-URI at the proxy).
    pub fn caller_request(&mut self, method: &str) -> String {
        if method != "ACK" {
            self.cseq += 1;
        }
        let branch = self.next_branch();
        format!(
            "{method} sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {caller};branch={branch}
Max-Forwards: 70
From: <sip:alice@{caller}>;tag={ftag}
To: <sip:5551234@{PROXY}>;tag={ttag}
Call-ID: {cid}
CSeq: {cseq} {method}
Contact: <sip:alice@{caller}>
Content-Length: 0

",
            caller = self.caller,
            ftag = self.from_tag,
            ttag = self.to_tag.as_deref().unwrap_or("none-yet"),
            cid = self.call_id,
            cseq = self.cseq,
        )
    }

    /// An in-dialog request from the callee, with the Route set taken from Record-Route.
    pub fn callee_request(&mut self, method: &str, route: &str, cseq: u32) -> String {
        let branch = self.next_branch();
        format!(
            "{method} sip:alice@{caller} SIP/2.0
Via: SIP/2.0/UDP {callee};branch={branch}
Max-Forwards: 70
Route: {route}
From: <sip:5551234@{PROXY}>;tag={ttag}
To: <sip:alice@{caller}>;tag={ftag}
Call-ID: {cid}
CSeq: {cseq} {method}
Content-Length: 0

",
            caller = self.caller,
            callee = self.callee,
            ftag = self.from_tag,
            ttag = self.to_tag.as_deref().unwrap_or("none-yet"),
            cid = self.call_id,
        )
    }
}

/// A UAS response to a received request: copies Via, From, To (adding `to_tag`), Call-ID,
/// CSeq; adds Contact (for 2xx/1xx to INVITE) and Content-Length.
pub fn reply(req: &SipMessage, code: u16, reason: &str, to_tag: &str, contact: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for entry in req.headers() {
        use crate::message::HeaderName::*;
        let value = String::from_utf8_lossy(req.value(entry));
        match entry.name {
            Via => out.push_str(&format!("Via: {value}\r\n")),
            From | CallId | CSeq | RecordRoute => {
                let name = entry.name.canonical();
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            To => {
                if value.contains("tag=") || to_tag.is_empty() {
                    out.push_str(&format!("To: {value}\r\n"));
                } else {
                    out.push_str(&format!("To: {value};tag={to_tag}\r\n"));
                }
            }
            _ => {}
        }
    }
    if !contact.is_empty() {
        out.push_str(&format!("Contact: <sip:{contact}>\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
