//! The SIP core driven in process, no sockets: whole calls (INVITE, 180, 200, ACK, BYE,
//! 200 — six messages into the core, six out) from a PBX through the proxy to a trunk, with
//! a simulated clock that advances 250 µs per call (4,000 calls/s) so timers fire and
//! finished transactions expire as they would in production (steady state, not a growing
//! table). Only the time spent inside the core (`handle_input`, `handle_timeout`,
//! `poll_transmit`) is measured; building the peers' messages is not.
//!
//! `cargo bench -p trunkgate-sip --bench core_calls`: calls per second per core, and the
//! same with the calls sharded by Call-ID over 2 threads, one `Proxy` each (the design in
//! docs/design/sip.md, "Past one core").

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trunkgate_sip::message::{HeaderName, Limits, SipMessage};
use trunkgate_sip::{
    Flow, Party, Proxy, ProxyConfig, ProxyMetrics, RouteChoice, Routing, Target, Timers, Transport,
    TrunkLoad,
};

const PROXY: &str = "127.0.0.1:5060";
const PBX: &str = "127.0.0.2:5060";
const TRUNK: &str = "127.0.0.3:5060";
/// Simulated time between two calls: 4,000 calls/s.
const STEP: Duration = Duration::from_micros(250);

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

struct OneTrunk;

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
}

fn proxy() -> Proxy {
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
    Proxy::new(config, Arc::new(OneTrunk), Arc::new(ProxyMetrics::new(4)))
}

const LIMITS: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 4096,
    max_via: 4096,
};

/// A response to `req` as a UAS writes it (Vias, Record-Route, From, To with `tag`, …).
fn respond(req: &SipMessage, code: u16, reason: &str, tag: &str, body: &str) -> Bytes {
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

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                   m=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:101 telephone-event/8000\r\n";

fn pbx_request(method: &str, n: u64, cseq: u32, to_tag: Option<&str>, body: &str) -> Bytes {
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
struct Bench {
    proxy: Proxy,
    now: Instant,
    core: Duration,
    to_trunk: Vec<Bytes>,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            proxy: proxy(),
            now: Instant::now(),
            core: Duration::ZERO,
            to_trunk: Vec::new(),
        }
    }

    /// Feed `data` from `from`; collect what the core sends (timed).
    fn input(&mut self, from: &str, data: Bytes) {
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
        self.core += started.elapsed();
        for t in out {
            if t.destination == addr(TRUNK) {
                self.to_trunk.push(t.data);
            }
        }
    }

    fn tick(&mut self) {
        self.now += STEP;
        let started = Instant::now();
        self.proxy.handle_timeout(self.now);
        while self.proxy.poll_transmit().is_some() {}
        self.core += started.elapsed();
    }

    fn trunk_got(&mut self) -> Option<SipMessage> {
        let data = self.to_trunk.pop()?;
        self.to_trunk.clear();
        SipMessage::parse(data, &LIMITS).ok()
    }

    /// One whole call, `n` unique.
    fn call(&mut self, n: u64) {
        self.input(PBX, pbx_request("INVITE", n, 1, None, SDP));
        let Some(invite) = self.trunk_got() else {
            return;
        };
        let tag = format!("t{n}");
        self.input(TRUNK, respond(&invite, 180, "Ringing", &tag, ""));
        self.input(TRUNK, respond(&invite, 200, "OK", &tag, SDP));
        self.input(PBX, pbx_request("ACK", n, 1, Some(&tag), ""));
        self.to_trunk.clear();
        self.input(PBX, pbx_request("BYE", n, 2, Some(&tag), ""));
        if let Some(bye) = self.trunk_got() {
            self.input(TRUNK, respond(&bye, 200, "OK", "", ""));
        }
        self.tick();
    }
}

/// Warm a core to steady state (32 s of simulated calls: Timer J/K tables full).
fn warmed() -> (Bench, u64) {
    let mut b = Bench::new();
    let warm = (Duration::from_secs(34).as_micros() / STEP.as_micros()) as u64;
    for n in 0..warm {
        b.call(n);
    }
    (b, warm)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("call_one_core", |bencher| {
        let (mut b, mut n) = warmed();
        bencher.iter_custom(|iters| {
            b.core = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                b.call(n);
            }
            b.core
        });
    });
    // Sharded by Call-ID: each thread owns a core of its own (no shared state on the call
    // path). Wall time of whole calls, the peers' message building included, for 1 and 2
    // shards: the ratio is what a second core gives when SIPp does not take it.
    for shards in [1u64, 2] {
        let mut benches: Vec<(Bench, u64)> = (0..shards).map(|_| warmed()).collect();
        group.bench_function(format!("call_wall_{shards}_shards"), |bencher| {
            bencher.iter_custom(|iters| {
                let per = iters.div_ceil(shards);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for (b, n) in benches.iter_mut() {
                        scope.spawn(move || {
                            for _ in 0..per {
                                *n += 1;
                                b.call(*n);
                            }
                        });
                    }
                });
                started.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(core_calls, benches);
criterion_main!(core_calls);
