//! Relay load harness: N anchored calls, G.711-sized RTP at 50 packets/s in both directions,
//! through a `Relay` on loopback. Reports the relay threads' CPU per relayed packet (from
//! /proc/self/task/*/stat), delivery and added latency (generator send → generator receive).
//!
//! `cargo bench -p trunkgate-media --bench relay_load -- [calls...] [--secs S] [--threads T]
//!  [--tokio | --tokio-ct]`
//!
//! `--tokio` replaces `Relay` with the same hot path as tokio tasks on a multi-thread runtime
//! with T worker threads, `--tokio-ct` on a current-thread runtime (see `tokio_relay.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "relay_load/tokio_relay.rs"]
mod tokio_relay;

use tokio_relay::{Flavor, TokioRelay};
use trunkgate_media::{CallInfo, Latch, MediaConfig, Relay, SdpKind, Side, raise_fd_limit};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PEERS: usize = 16;

fn sdp(port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\n")
        .into_bytes()
}

fn m_port(body: &[u8]) -> u16 {
    let s = std::str::from_utf8(body).unwrap();
    s.lines()
        .find(|l| l.starts_with("m="))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// utime + stime (clock ticks) of this process's threads whose name starts with `prefix`.
fn thread_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    total
}

fn peer_sock() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&SocketAddr::new(LO, 0).into()).unwrap();
    let s: UdpSocket = s.into();
    s.set_nonblocking(true).unwrap();
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Epoll,
    Tokio(Flavor),
}

#[allow(clippy::large_enum_variant)] // one value per run
enum Backend {
    Epoll(Relay),
    Tokio(TokioRelay),
}

fn start_epoll(
    calls: usize,
    threads: usize,
    base_port: u16,
    a_peers: &[UdpSocket],
    b_peers: &[UdpSocket],
) -> (Backend, Vec<(u16, u16)>) {
    let cfg = MediaConfig {
        bind: LO,
        advertised: LO,
        alternate: None,
        port_min: base_port,
        port_max: 60999,
        dscp: 46,
        latch: Latch::Any,
        timeout: Duration::from_secs(600),
        hold_timeout: Duration::from_secs(3600),
        threads,
        quarantine: Duration::from_secs(1),
        nice: 0,
        max_sockets: usize::MAX,
        quality: trunkgate_media::QualityConfig::default(),
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
    };
    let relay = Relay::start(cfg, vec![], Box::new(|_| {})).unwrap();
    let mut targets = Vec::with_capacity(calls); // (to A leg, to B leg)
    for i in 0..calls {
        let info = CallInfo {
            id: i as u64,
            call_id: b"bench",
            trunk: None,
            inbound: false,
            peers: [None, None],
        };
        let pa = a_peers[i % PEERS].local_addr().unwrap().port();
        let pb = b_peers[i % PEERS].local_addr().unwrap().port();
        let mut out = Vec::new();
        relay
            .update(&info, Side::A, SdpKind::Offer, &sdp(pa), &mut out)
            .unwrap();
        let to_b = m_port(&out);
        out.clear();
        relay
            .update(&info, Side::B, SdpKind::Answer, &sdp(pb), &mut out)
            .unwrap();
        // Answered: the one-way audio check runs for every call, as it does in production.
        relay.answered(i as u64);
        targets.push((m_port(&out), to_b));
    }
    (Backend::Epoll(relay), targets)
}

fn run(mode: Mode, calls: usize, secs: u64, threads: usize, base_port: u16) {
    // A small set of shared peer sockets per side (latching is per leg, so legs may share).
    let a_peers: Vec<UdpSocket> = (0..PEERS).map(|_| peer_sock()).collect();
    let b_peers: Vec<UdpSocket> = (0..PEERS).map(|_| peer_sock()).collect();
    let (backend, targets) = match mode {
        Mode::Epoll => start_epoll(calls, threads, base_port, &a_peers, &b_peers),
        Mode::Tokio(flavor) => {
            let peers: Vec<(SocketAddr, SocketAddr)> = (0..calls)
                .map(|i| {
                    (
                        a_peers[i % PEERS].local_addr().unwrap(),
                        b_peers[i % PEERS].local_addr().unwrap(),
                    )
                })
                .collect();
            let (r, t) = TokioRelay::start(LO, base_port, &peers, flavor);
            (Backend::Tokio(r), t)
        }
    };
    let prefix = match mode {
        Mode::Epoll => "tg-media",
        Mode::Tokio(_) => tokio_relay::THREAD_PREFIX,
    };
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Receiver: all peer sockets, latency from the timestamp in the payload.
    let rx_socks: Vec<UdpSocket> = a_peers
        .iter()
        .chain(&b_peers)
        .map(|s| s.try_clone().unwrap())
        .collect();
    let rx_stop = stop.clone();
    let receiver = std::thread::Builder::new()
        .name("gen-rx".into())
        .spawn(move || {
            let mut lat = Vec::with_capacity(1 << 22);
            let mut buf = [0u8; 2048];
            let mut got = 0u64;
            let mut idle_since: Option<Instant> = None;
            loop {
                let mut any = false;
                for s in &rx_socks {
                    while let Ok((n, _)) = s.recv_from(&mut buf) {
                        any = true;
                        got += 1;
                        if n >= 20 {
                            let sent = u64::from_be_bytes(buf[12..20].try_into().unwrap());
                            let now = epoch.elapsed().as_nanos() as u64;
                            lat.push(now.saturating_sub(sent));
                        }
                    }
                }
                if rx_stop.load(Ordering::Relaxed) {
                    if any {
                        idle_since = None;
                    } else if idle_since.get_or_insert_with(Instant::now).elapsed()
                        > Duration::from_millis(200)
                    {
                        break;
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            (got, lat)
        })
        .unwrap();
    // Sender: every call, both directions, 50 packets/s, spread evenly over each 20 ms.
    let ticks0 = thread_ticks(prefix);
    let t0 = Instant::now();
    let total = (secs * 50) as usize;
    let per_tick = calls * 2;
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    pkt[1] = 8;
    let mut sent = 0u64;
    for tick in 0..total {
        for j in 0..per_tick {
            let due = t0
                + Duration::from_nanos(
                    (tick as u64 * 20_000_000) + (j as u64 * 20_000_000 / per_tick as u64),
                );
            let now = Instant::now();
            if due > now {
                let d = due - now;
                if d > Duration::from_micros(200) {
                    std::thread::sleep(d - Duration::from_micros(100));
                }
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
            let call = j / 2;
            let (to_a, to_b) = targets[call];
            pkt[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&((tick as u32) * 160).to_be_bytes());
            pkt[8..12].copy_from_slice(&(j as u32).to_be_bytes());
            pkt[12..20].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
            let r = if j % 2 == 0 {
                a_peers[call % PEERS].send_to(&pkt, (LO, to_a))
            } else {
                b_peers[call % PEERS].send_to(&pkt, (LO, to_b))
            };
            if r.is_ok() {
                sent += 1;
            }
        }
    }
    let elapsed = t0.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let ticks = thread_ticks(prefix) - ticks0;
    stop.store(true, Ordering::Relaxed);
    let (got, mut lat) = receiver.join().unwrap();
    let (relayed, dropped) = match &backend {
        Backend::Epoll(relay) => {
            let m = relay.metrics().snapshot();
            (
                m.trunks.iter().map(|t| t.packets[0] + t.packets[1]).sum(),
                m.trunks.iter().map(|t| t.dropped).sum(),
            )
        }
        Backend::Tokio(r) => (r.relayed(), r.dropped()),
    };
    let hz = 100.0; // USER_HZ
    let cpu_s = ticks as f64 / hz;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{:<9} calls {calls:5} threads {threads} | {:.0} pps for {:.1} s | sent {sent} relayed {relayed} received {got} loss {:.4}% dropped {dropped} | relay CPU {:.2} s = {:.2} us/pkt ({:.0}% of a core) | latency p50 {:.0} us p99 {:.0} us",
        match mode {
            Mode::Epoll => "epoll",
            Mode::Tokio(Flavor::Multi(_)) => "tokio-mt",
            Mode::Tokio(Flavor::Current) => "tokio-ct",
        },
        sent as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        100.0 * (sent.saturating_sub(got)) as f64 / sent.max(1) as f64,
        cpu_s,
        cpu_s * 1e6 / relayed.max(1) as f64,
        100.0 * cpu_s / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
    match backend {
        Backend::Epoll(relay) => relay.shutdown(),
        Backend::Tokio(r) => r.shutdown(),
    }
}

fn main() {
    let _ = raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut secs = 5;
    let mut threads = 1;
    let mut backend = "epoll";
    let mut calls = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(threads),
            "--tokio" => backend = "tokio",
            "--tokio-ct" => backend = "tokio-ct",
            "--bench" => {}
            v => {
                if let Ok(n) = v.parse() {
                    calls.push(n)
                }
            }
        }
    }
    if calls.is_empty() {
        calls = vec![100, 1000, 3500];
    }
    let mode = match backend {
        "tokio" => Mode::Tokio(Flavor::Multi(threads)),
        "tokio-ct" => Mode::Tokio(Flavor::Current),
        _ => Mode::Epoll,
    };
    for n in calls {
        run(mode, n, secs, threads, 20000);
    }
}
