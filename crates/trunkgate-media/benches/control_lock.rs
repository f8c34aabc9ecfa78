//! Control-path harness (issue 13 item 3): how long the SIP thread's relay calls take while
//! `GET /calls` and the metrics scrape read the relay.
//!
//! N anchored calls are set up through the relay's API (offer from side A, answer from side
//! B, answered). Then one "SIP" thread churns calls at R calls/s — per call an offer and an
//! answer for a new call and a delete of the oldest, so N stay anchored — and records the
//! latency of every one of those calls. A reader thread meanwhile does, per window:
//!
//! - `none`:   nothing (the baseline);
//! - `scrape`: every `--interval` ms `calls()` + its JSON encoding + `metrics().snapshot()`
//!   (what `GET /calls` and a Prometheus scrape do);
//! - `hammer`: the same back to back (the worst case: a reader always inside);
//! - `cpu`:    JSON-encodes a `calls()` result taken once, back to back: the reader's CPU
//!   competition without touching the relay (tells CPU contention from lock waiting).
//!
//! Windows run in the order given (`--modes none,scrape,hammer,cpu,none`), each `--secs`.
//! Per window: SIP-side latency p50/p99/p99.9/max of `update` (offer/answer) and `delete`
//! together, of offers alone (they bind the sockets), of `idle()` (O(1) under the control
//! lock: its tail is the lock wait plus scheduling), the achieved rate, the reader's pass time (p50/max) and relay thread wake-ups
//! (voluntary context switches of `tg-media-*`) per SDP.
//!
//! `cargo bench -p trunkgate-media --bench control_lock -- [--calls N] [--rate R]
//!  [--secs S] [--interval MS] [--modes LIST] [--threads T]`
//!
//! Media sockets bind on 127.0.190.1 (ports 20000–60999), 4 per call: N = 3,000 holds 12,000
//! descriptors (the build machines' hard limit is 20,000). No RTP flows: the cost measured
//! is the control path's (the readers' work per call does not depend on traffic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use trunkgate_media::{CallInfo, Latch, MediaConfig, Relay, SdpKind, Side, raise_fd_limit};

const BIND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 190, 1));
const TRUNKS: u16 = 4;

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    .into_bytes()
}

struct Opts {
    calls: usize,
    rate: u64,
    secs: f64,
    interval: Duration,
    modes: Vec<String>,
    threads: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        calls: 3000,
        rate: 5000,
        secs: 3.0,
        interval: Duration::from_millis(100),
        modes: ["none", "scrape", "hammer", "cpu", "none"]
            .map(String::from)
            .to_vec(),
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("value");
        match a.as_str() {
            "--calls" => o.calls = val().parse().unwrap(),
            "--rate" => o.rate = val().parse().unwrap(),
            "--secs" => o.secs = val().parse().unwrap(),
            "--interval" => o.interval = Duration::from_millis(val().parse().unwrap()),
            "--modes" => o.modes = val().split(',').map(String::from).collect(),
            "--threads" => o.threads = val().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// Voluntary context switches of this process's threads named `tg-media*` (each one is a
/// relay thread going to sleep, i.e. one wake-up consumed).
fn relay_wakeups() -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("tg-media") {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Sip {
    relay: Arc<Relay>,
    next_id: u64,
    live: VecDeque<u64>,
    out: Vec<u8>,
}

impl Sip {
    /// One call's offer and answer, their latencies into `lat` (the offer's also into
    /// `offers`).
    fn setup(&mut self, lat: &mut Vec<u64>, offers: &mut Vec<u64>) {
        let id = self.next_id;
        self.next_id += 1;
        let call_id = format!("{id:016x}-bench@pbx.example");
        let info = CallInfo {
            id,
            call_id: call_id.as_bytes(),
            trunk: Some((id % u64::from(TRUNKS)) as u16),
            inbound: id % 3 == 0,
            peers: [None, None],
        };
        let port = 30000 + (id % 10000) as u16 * 2;
        let offer = sdp("127.0.190.2", port);
        let answer = sdp("127.0.190.3", port);
        let t = Instant::now();
        self.out.clear();
        self.relay
            .update(&info, Side::A, SdpKind::Offer, &offer, &mut self.out)
            .unwrap();
        let t1 = Instant::now();
        self.out.clear();
        self.relay
            .update(&info, Side::B, SdpKind::Answer, &answer, &mut self.out)
            .unwrap();
        let t2 = Instant::now();
        self.relay.answered(id);
        lat.push((t1 - t).as_nanos() as u64);
        offers.push((t1 - t).as_nanos() as u64);
        lat.push((t2 - t1).as_nanos() as u64);
        self.live.push_back(id);
    }

    /// `idle()` of the oldest call: a SIP-side call doing O(1) work under the control lock,
    /// so its latency is the lock wait (plus scheduling).
    fn probe(&mut self, probes: &mut Vec<u64>) {
        if let Some(&id) = self.live.front() {
            let t = Instant::now();
            std::hint::black_box(self.relay.idle(id));
            probes.push(t.elapsed().as_nanos() as u64);
        }
    }

    fn delete_oldest(&mut self, lat: &mut Vec<u64>) {
        if let Some(id) = self.live.pop_front() {
            let t = Instant::now();
            self.relay.delete(id);
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
}

/// Reader passes: (whole pass, `calls()`, `metrics().snapshot()`) in ns.
type Passes = Vec<[u64; 3]>;

fn reader(relay: Arc<Relay>, mode: String, interval: Duration, stop: Arc<AtomicBool>) -> Passes {
    let mut passes = Vec::new();
    let frozen = relay.calls();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let (c, m) = match mode.as_str() {
            "scrape" | "hammer" => {
                let calls = relay.calls();
                let c = t.elapsed();
                let json = serde_json::to_vec(&calls).unwrap();
                let t2 = Instant::now();
                let m = relay.metrics().snapshot();
                let m2 = t2.elapsed();
                std::hint::black_box((json.len(), m.sessions));
                (c, m2)
            }
            "cpu" => {
                let json = serde_json::to_vec(&frozen).unwrap();
                std::hint::black_box(json.len());
                (Duration::ZERO, Duration::ZERO)
            }
            _ => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        passes.push([t.elapsed(), c, m].map(|d| d.as_nanos() as u64));
        if mode == "scrape" {
            next += interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }
    passes
}

fn window(sip: &mut Sip, o: &Opts, mode: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let r = {
        let (relay, mode, stop) = (sip.relay.clone(), mode.to_string(), stop.clone());
        let interval = o.interval;
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || reader(relay, mode, interval, stop))
            .unwrap()
    };
    let mut lat = Vec::with_capacity((o.rate as f64 * o.secs * 3.0) as usize + 16);
    let mut offers = Vec::with_capacity((o.rate as f64 * o.secs) as usize + 16);
    let mut probes = Vec::with_capacity((o.rate as f64 * o.secs) as usize + 16);
    let wake0 = relay_wakeups();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.secs);
    let mut done = 0u64;
    // Paced in 1 ms ticks (as SIPp sends): the calls due by now, then sleep to the next tick.
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * o.rate as f64) as u64;
        while done < due {
            sip.setup(&mut lat, &mut offers);
            sip.probe(&mut probes);
            sip.delete_oldest(&mut lat);
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(1).saturating_sub(now.elapsed()));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let wakes = relay_wakeups() - wake0;
    stop.store(true, Ordering::Relaxed);
    let passes = r.join().unwrap();
    lat.sort_unstable();
    offers.sort_unstable();
    probes.sort_unstable();
    let part = |i: usize| {
        let mut v: Vec<u64> = passes.iter().map(|p| p[i]).collect();
        v.sort_unstable();
        v
    };
    let (whole, calls, snap) = (part(0), part(1), part(2));
    let us = |ns: u64| ns as f64 / 1000.0;
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "{mode:<6} {:>5.0}/s | all µs p50 {:>5.1} p99 {:>6.1} p99.9 {:>7.1} max {:>7.1} | \
         offer p50 {:>5.1} p99 {:>6.1} | idle() p99 {:>6.1} max {:>7.1} | reader x{:<4} pass {:>5.1} calls() {:>5.1} \
         snapshot {:>5.2} ms p50, pass max {:>5.1} | wake/SDP {:.2}",
        done as f64 / elapsed,
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99)),
        us(pct(&lat, 0.999)),
        us(lat.last().copied().unwrap_or(0)),
        us(pct(&offers, 0.5)),
        us(pct(&offers, 0.99)),
        us(pct(&probes, 0.99)),
        us(probes.last().copied().unwrap_or(0)),
        passes.len(),
        ms(pct(&whole, 0.5)),
        ms(pct(&calls, 0.5)),
        ms(pct(&snap, 0.5)),
        ms(whole.last().copied().unwrap_or(0)),
        wakes as f64 / (2 * done).max(1) as f64,
    );
}

fn main() {
    let o = opts();
    let (soft, _) = raise_fd_limit().unwrap();
    assert!(
        soft as usize > o.calls * 4 + 2000,
        "{} calls need {} descriptors (4 per call); the limit is {soft}",
        o.calls,
        o.calls * 4
    );
    let cfg = MediaConfig {
        bind: BIND,
        advertised: BIND,
        alternate: None,
        port_min: 20000,
        port_max: 60999,
        dscp: 46,
        latch: Latch::Any,
        timeout: Duration::from_secs(600),
        hold_timeout: Duration::from_secs(3600),
        threads: o.threads,
        quarantine: Duration::from_secs(1),
        nice: 0,
        max_sockets: usize::MAX,
        quality: trunkgate_media::QualityConfig::default(),
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
    };
    let names = (0..TRUNKS).map(|t| format!("carrier-{t}")).collect();
    let relay = Arc::new(Relay::start(cfg, names, Box::new(|_| {})).unwrap());
    let mut sip = Sip {
        relay: relay.clone(),
        next_id: 1,
        live: VecDeque::new(),
        out: Vec::new(),
    };
    let (mut scratch, mut scratch2) = (Vec::new(), Vec::new());
    for _ in 0..o.calls {
        sip.setup(&mut scratch, &mut scratch2);
    }
    let calls = relay.calls();
    let json = serde_json::to_vec(&calls).unwrap();
    let t = Instant::now();
    let _ = relay.metrics().snapshot();
    let snap_us = t.elapsed().as_secs_f64() * 1e6;
    println!(
        "{} anchored calls ({} sockets), /calls JSON {} KiB, one scrape snapshot {snap_us:.0} µs; \
         churn {} calls/s ({} SDPs/s + {} deletes/s), windows of {} s",
        calls.len(),
        relay.sockets_in_use(),
        json.len() / 1024,
        o.rate,
        o.rate * 2,
        o.rate,
        o.secs
    );
    for mode in &o.modes {
        window(&mut sip, &o, mode);
    }
    relay.shutdown();
}
