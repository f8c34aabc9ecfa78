//! The peers of the in-process core benches (`core_calls`, `core_memory`): a PBX and one
//! trunk that answer like a UAS, the core with a simulated clock, and one whole call
//! (INVITE, 180, 200, ACK, BYE, 200 — six messages into the core, six out).

#![allow(dead_code)]

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trunkgate_sip::message::{HeaderName, Limits, SipMessage};
use trunkgate_sip::{
    Flow, Party, Proxy, ProxyConfig, ProxyMetrics, RouteChoice, Routing, Target, Timers, Transport,
    TrunkLoad,
};

pub const PROXY: &str = "127.0.0.1:5060";
pub const PBX: &str = "127.0.0.2:5060";
pub const TRUNK: &str = "127.0.0.3:5060";
/// Simulated time between two calls: 4,000 calls/s.
pub const STEP: Duration = Duration::from_micros(250);

pub fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

/// The PBX and one trunk; `hide`: the trunk has `topology_hiding` on (its media anchoring
/// is not modelled: the core has no relay here, so the SDP passes as the peers wrote it).
struct OneTrunk {
    hide: bool,
}

impl Routing for OneTrunk {
    fn classify(&self, source: IpAddr) -> Party {
        match source.to_string().as_str() {
            "127.0.0.2" => Party::Pbx,
            "127.0.0.3" => Party::Trunk(0),
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
        if from == Party::Pbx {
            out.push(Target {
                party: Party::Trunk(0),
                address: addr(TRUNK),
                transport: None,
                uri_host: TRUNK.into(),
                local_answer: None,
            });
        }
        RouteChoice::default()
    }
    fn topology_hiding(&self, trunk: u16) -> bool {
        self.hide && trunk == 0
    }
    fn any_topology_hiding(&self) -> bool {
        self.hide
    }
}

pub fn proxy(hide: bool) -> Proxy {
    let flow = Flow {
        transport: Transport::Udp,
        local: addr(PROXY),
        conn: None,
    };
    let config = ProxyConfig {
        advertised: "127.0.0.1".into(),
        advertised_alternate: None,
        listeners: vec![flow],
        timers: Timers::default(),
        limits: Limits {
            max_message_size: 65535,
            max_headers: 128,
            max_via: 16,
        },
        server_name: "Trunkgate/bench".into(),
        dialog_timeout: Duration::from_secs(7200),
    };
    Proxy::new(
        config,
        Arc::new(OneTrunk { hide }),
        Arc::new(ProxyMetrics::new(4)),
    )
}

const LIMITS: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 4096,
    max_via: 4096,
};

/// A response to `req` as a UAS writes it (Vias, Record-Route, From, To with `tag`, …).
pub fn respond(req: &SipMessage, code: u16, reason: &str, tag: &str, body: &str) -> Bytes {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
    for (name, header) in [
        ("Via", HeaderName::Via),
        ("Record-Route", HeaderName::RecordRoute),
    ] {
        for v in req.values(header) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(req.from_value());
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(req.to_value());
    if req.to_tag().is_none() && !tag.is_empty() {
        out.extend_from_slice(format!(";tag={tag}").as_bytes());
    }
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(req.call_id());
    out.extend_from_slice(format!("\r\nCSeq: {} ", req.cseq().0).as_bytes());
    out.extend_from_slice(req.cseq_method_token());
    out.extend_from_slice(
        format!(
            "\r\nContact: <sip:callee@{TRUNK}>\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Bytes::from(out)
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                   m=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:101 telephone-event/8000\r\n";

pub fn pbx_request(method: &str, n: u64, cseq: u32, to_tag: Option<&str>, body: &str) -> Bytes {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let route = if to_tag.is_empty() {
        String::new()
    } else {
        format!("Route: <sip:{PROXY};lr>\r\n")
    };
    let uri = if to_tag.is_empty() {
        format!("sip:+15551234567@{PROXY}")
    } else {
        format!("sip:callee@{TRUNK}")
    };
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK-b{n}-{cseq}{method}\r\n\
         {route}Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@pbx.example>;tag=f{n}\r\n\
         To: <sip:+15551234567@carrier.example>{to_tag}\r\nCall-ID: bench-{n}@10.0.0.5\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:1001@{PBX}>\r\nUser-Agent: ExamplePBX\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Bytes::from(text)
}

/// The core plus the simulated clock and the peers' mailboxes.
pub struct Bench {
    pub proxy: Proxy,
    pub now: Instant,
    /// Time spent inside the core since the last reset.
    pub core: Duration,
    to_trunk: Vec<Bytes>,
    to_pbx: usize,
    /// The trunk hides the topology: what it receives must carry our Call-ID.
    hide: bool,
    /// Calls whose messages did not all arrive where they should (a broken bench must say
    /// so rather than measure something else).
    pub broken: u64,
}

impl Bench {
    pub fn new(hide: bool) -> Bench {
        Bench {
            proxy: proxy(hide),
            now: Instant::now(),
            core: Duration::ZERO,
            to_trunk: Vec::new(),
            to_pbx: 0,
            hide,
            broken: 0,
        }
    }

    /// Feed `data` from `from`; collect what the core sends (timed).
    pub fn input(&mut self, from: &str, data: Bytes) {
        let flow = Flow {
            transport: Transport::Udp,
            local: addr(PROXY),
            conn: None,
        };
        let started = Instant::now();
        self.proxy.handle_input(self.now, flow, addr(from), data);
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_transmit() {
            out.push(t);
        }
        // The shell drains the events after every input (left queued, they would grow
        // without bound here).
        while self.proxy.poll_event().is_some() {}
        self.core += started.elapsed();
        for t in out {
            if t.destination == addr(TRUNK) {
                self.to_trunk.push(t.data);
            } else if t.destination == addr(PBX) {
                self.to_pbx += 1;
            }
        }
    }

    /// Advance the simulated clock by `step` and run the timers due (timed).
    pub fn advance(&mut self, step: Duration) {
        self.now += step;
        let started = Instant::now();
        self.proxy.handle_timeout(self.now);
        while self.proxy.poll_transmit().is_some() {}
        while self.proxy.poll_event().is_some() {}
        self.core += started.elapsed();
    }

    pub fn tick(&mut self) {
        self.advance(STEP);
    }

    fn trunk_got(&mut self) -> Option<SipMessage> {
        let data = self.to_trunk.pop()?;
        self.to_trunk.clear();
        SipMessage::parse(data, &LIMITS).ok()
    }

    /// Set up call `n` (INVITE, 180, 200, ACK): true when the trunk got the INVITE and the
    /// PBX got 180 and 200.
    pub fn answer(&mut self, n: u64) -> bool {
        self.to_pbx = 0;
        self.input(PBX, pbx_request("INVITE", n, 1, None, SDP));
        let Some(invite) = self.trunk_got() else {
            self.broken += 1;
            return false;
        };
        if self.hide && !invite.call_id().starts_with(b"tg") {
            // Not hidden: this would measure the plain path under the hiding label.
            self.broken += 1;
        }
        let tag = format!("t{n}");
        self.input(TRUNK, respond(&invite, 180, "Ringing", &tag, ""));
        self.input(TRUNK, respond(&invite, 200, "OK", &tag, SDP));
        self.input(PBX, pbx_request("ACK", n, 1, Some(&tag), ""));
        let ok = self.to_pbx == 2 && self.to_trunk.len() == 1;
        self.to_trunk.clear();
        if !ok {
            self.broken += 1;
        }
        ok
    }

    /// The PBX hangs up call `n` (BYE, 200): true when both arrived.
    pub fn hang_up(&mut self, n: u64) -> bool {
        self.to_pbx = 0;
        let tag = format!("t{n}");
        self.input(PBX, pbx_request("BYE", n, 2, Some(&tag), ""));
        let Some(bye) = self.trunk_got() else {
            self.broken += 1;
            return false;
        };
        self.input(TRUNK, respond(&bye, 200, "OK", "", ""));
        if self.to_pbx != 1 {
            self.broken += 1;
            return false;
        }
        true
    }

    /// One whole call, `n` unique, then one step of simulated time.
    pub fn call(&mut self, n: u64) {
        if self.answer(n) {
            self.hang_up(n);
        }
        self.tick();
    }
}
