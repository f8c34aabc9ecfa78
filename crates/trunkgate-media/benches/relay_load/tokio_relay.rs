//! `--tokio` / `--tokio-ct` mode of the load bench: the relay's hot path rewritten as tokio
//! tasks, to compare against the dedicated epoll threads of `Relay` (issue 4, item 7).
//!
//! Kept equal to the epoll relay where the harness can see it:
//! - sockets: per call and leg one RTP and one RTCP socket, bound on consecutive ports of the
//!   same range, DSCP 46, non-blocking, default buffer sizes (4 sockets per call); the RTCP
//!   sockets are registered and have their own (idle) task, as they are registered with epoll;
//! - per datagram: latch check (`any`), the same per-leg single-writer atomic counters
//!   (`rx`/`tx` packets and bytes, `last_rx`), RTCP demux by PT, RTP header +
//!   `stats::ReceiveStats::on_packet` and the four figure stores, then one non-blocking
//!   `send_to` on the other leg's socket (a full socket buffer drops and counts, like the
//!   relay). Arrival time is read once per wake-up (the relay: once per `recvmmsg` batch);
//! - no allocation per packet: each task owns a 2 KiB buffer and its `ReceiveStats`.
//!
//! Left out (both negligible here): the once-a-second idle sweep, the command channel, the
//! RTCP report-block parsing (the harness sends no RTCP).
//!
//! One task per leg socket: `readable().await`, then `try_recv_from` until `WouldBlock`
//! (tokio's readiness is edge-style, so each wake-up ends with one `EAGAIN` read that the
//! level-triggered relay does not need).

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use trunkgate_media::stats;

/// Thread-name prefix of the runtime's threads (CPU is read from these).
pub const THREAD_PREFIX: &str = "tg-tokio";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `new_multi_thread()` with this many worker threads.
    Multi(usize),
    /// `new_current_thread()`, driven by one dedicated thread.
    Current,
}

/// The per-leg counters of `relay/shared.rs` (single writer, load + store).
#[derive(Default)]
struct LegShared {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rtcp_rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    expected: AtomicU64,
    received_rtp: AtomicU64,
    jitter_nanos: AtomicU64,
    last_rx: AtomicU64,
    /// Latched RTP source, packed (see `pack`); 0 = not latched. Read by the other leg's task.
    latched: AtomicU64,
}

#[inline]
fn bump(v: &AtomicU64, by: u64) {
    v.store(v.load(Relaxed).wrapping_add(by), Relaxed);
}

fn pack(a: SocketAddr) -> u64 {
    match a {
        SocketAddr::V4(v) => (1 << 48) | (u64::from(v.ip().to_bits()) << 16) | u64::from(v.port()),
        SocketAddr::V6(_) => 0,
    }
}

fn unpack(v: u64) -> Option<SocketAddr> {
    (v != 0).then(|| {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from_bits((v >> 16) as u32),
            v as u16,
        ))
    })
}

struct Leg {
    rtp: StdUdpSocket,
    rtcp: StdUdpSocket,
    /// The SDP address of this side's peer (RTP; RTCP = port + 1).
    sdp: SocketAddr,
    shared: Arc<LegShared>,
}

/// What `bind_one` in `relay/mod.rs` does.
fn bind_one(addr: SocketAddr, dscp: u8) -> std::io::Result<StdUdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_tos_v4(u32::from(dscp & 0x3f) << 2)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

pub struct TokioRelay {
    legs: Vec<[Arc<LegShared>; 2]>,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl TokioRelay {
    /// Binds two legs per call (RTP + RTCP each) from `base_port` up, with `peers[i]` =
    /// (A peer, B peer) as the SDP addresses, and starts the runtime. Returns the relay and,
    /// per call, (port of the A leg, port of the B leg).
    pub fn start(
        bind: IpAddr,
        base_port: u16,
        peers: &[(SocketAddr, SocketAddr)],
        flavor: Flavor,
    ) -> (Self, Vec<(u16, u16)>) {
        let mut port = base_port & !1;
        let mut next_leg = |sdp: SocketAddr| -> Leg {
            loop {
                let p = port;
                port = port.checked_add(2).expect("ports exhausted");
                let Ok(rtp) = bind_one(SocketAddr::new(bind, p), 46) else {
                    continue;
                };
                let Ok(rtcp) = bind_one(SocketAddr::new(bind, p + 1), 46) else {
                    continue;
                };
                return Leg {
                    rtp,
                    rtcp,
                    sdp,
                    shared: Arc::default(),
                };
            }
        };
        let mut calls = Vec::with_capacity(peers.len());
        let mut ports = Vec::with_capacity(peers.len());
        for &(pa, pb) in peers {
            let a = next_leg(pa);
            let b = next_leg(pb);
            ports.push((
                a.rtp.local_addr().unwrap().port(),
                b.rtp.local_addr().unwrap().port(),
            ));
            calls.push([a, b]);
        }
        let legs = calls
            .iter()
            .map(|[a, b]| [a.shared.clone(), b.shared.clone()])
            .collect();
        let epoch = Instant::now();
        let stop: Box<dyn FnOnce() + Send> = match flavor {
            Flavor::Multi(workers) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name(format!("{THREAD_PREFIX}-w"))
                    .enable_io()
                    .build()
                    .unwrap();
                {
                    let _g = rt.enter();
                    spawn_all(calls, epoch);
                }
                Box::new(move || rt.shutdown_background())
            }
            Flavor::Current => {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let th = std::thread::Builder::new()
                    .name(format!("{THREAD_PREFIX}-ct"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()
                            .unwrap();
                        rt.block_on(async move {
                            spawn_all(calls, epoch);
                            let _ = rx.await;
                        });
                    })
                    .unwrap();
                Box::new(move || {
                    let _ = tx.send(());
                    th.join().unwrap();
                })
            }
        };
        (
            Self {
                legs,
                stop: Some(stop),
            },
            ports,
        )
    }

    /// Datagrams sent on to a peer (the epoll run's `packets[0] + packets[1]`).
    pub fn relayed(&self) -> u64 {
        self.sum(|l| &l.tx_packets)
    }

    pub fn dropped(&self) -> u64 {
        self.sum(|l| &l.dropped)
    }

    fn sum(&self, f: impl Fn(&LegShared) -> &AtomicU64) -> u64 {
        self.legs.iter().flatten().map(|l| f(l).load(Relaxed)).sum()
    }

    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Registers every socket with the current runtime and spawns one task per leg socket.
fn spawn_all(calls: Vec<[Leg; 2]>, epoch: Instant) {
    for [a, b] in calls {
        let reg = |s: StdUdpSocket| Arc::new(UdpSocket::from_std(s).unwrap());
        let (a_rtp, a_rtcp) = (reg(a.rtp), reg(a.rtcp));
        let (b_rtp, b_rtcp) = (reg(b.rtp), reg(b.rtcp));
        for (rx_rtp, rx_rtcp, x, y_rtp, y_rtcp, y, y_sdp) in [
            (
                &a_rtp, &a_rtcp, &a.shared, &b_rtp, &b_rtcp, &b.shared, b.sdp,
            ),
            (
                &b_rtp, &b_rtcp, &b.shared, &a_rtp, &a_rtcp, &a.shared, a.sdp,
            ),
        ] {
            for (rx, rtcp_sock) in [(rx_rtp, false), (rx_rtcp, true)] {
                tokio::spawn(leg_task(LegTask {
                    rx: rx.clone(),
                    y_rtp: y_rtp.clone(),
                    y_rtcp: y_rtcp.clone(),
                    x: x.clone(),
                    y: y.clone(),
                    y_sdp,
                    rtcp_sock,
                    epoch,
                }));
            }
        }
    }
}

struct LegTask {
    /// The socket this task reads (leg X's RTP or RTCP socket).
    rx: Arc<UdpSocket>,
    /// The other leg's sockets, to send on.
    y_rtp: Arc<UdpSocket>,
    y_rtcp: Arc<UdpSocket>,
    x: Arc<LegShared>,
    y: Arc<LegShared>,
    y_sdp: SocketAddr,
    rtcp_sock: bool,
    epoch: Instant,
}

async fn leg_task(t: LegTask) {
    let mut buf = [0u8; 2048];
    let mut latched: Option<SocketAddr> = None;
    let mut rstats = stats::ReceiveStats::new();
    let (x, y) = (&*t.x, &*t.y);
    loop {
        if t.rx.readable().await.is_err() {
            return;
        }
        let now = u64::try_from(t.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        loop {
            let (len, src) = match t.rx.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            };
            // Latch `any`: the first source is learned, later other sources are dropped.
            match latched {
                Some(l) if l != src => {
                    bump(&x.dropped, 1);
                    continue;
                }
                Some(_) => {}
                None => {
                    latched = Some(src);
                    if !t.rtcp_sock {
                        x.latched.store(pack(src), Relaxed);
                    }
                }
            }
            let pkt = &buf[..len];
            bump(&x.rx_packets, 1);
            bump(&x.rx_bytes, len as u64);
            x.last_rx.store(now, Relaxed);
            let is_rtcp = t.rtcp_sock || stats::is_rtcp(pkt);
            if is_rtcp {
                bump(&x.rtcp_rx_packets, 1);
            } else if let Some(h) = stats::rtp_header(pkt) {
                rstats.on_packet(&h, now, 8000);
                x.lost.store(rstats.lost(), Relaxed);
                x.expected.store(rstats.expected(), Relaxed);
                x.received_rtp.store(rstats.received(), Relaxed);
                x.jitter_nanos
                    .store((rstats.jitter_seconds() * 1e9) as u64, Relaxed);
            }
            // Destination: the other side's latched address, else its SDP address.
            let (sock, dest) = if is_rtcp {
                let mut d = t.y_sdp;
                d.set_port(d.port() + 1);
                (&t.y_rtcp, d)
            } else {
                (&t.y_rtp, unpack(y.latched.load(Relaxed)).unwrap_or(t.y_sdp))
            };
            match sock.try_send_to(pkt, dest) {
                Ok(_) => {
                    bump(&y.tx_packets, 1);
                    bump(&y.tx_bytes, len as u64);
                }
                Err(_) => bump(&x.dropped, 1),
            }
        }
    }
}
