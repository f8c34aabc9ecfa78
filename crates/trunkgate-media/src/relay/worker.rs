//! One relay thread: a level-triggered epoll over the sockets of the sessions it owns.
//!
//! Hot path per ready socket: epoll token → `streams[token >> 2]` (the only lookup), one
//! `recvmmsg` of up to [`BATCH`] datagrams into preallocated buffers, per datagram a latch
//! check, the RTP header / RTCP report read at fixed offsets, and a `send_to` on the other
//! leg's socket. No allocation, no lock (the stats are single-writer `Relaxed` atomics).
//!
//! In the `sk_lookup` mode of the kernel fast path the legs have no sockets: the thread's
//! one socket per media address receives the datagrams of all its legs (their original
//! destination says which leg: one hash lookup), and replies leave through the raw sender
//! with the anchored port as source. Only what the kernel does not forward comes here.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use smallvec::SmallVec;

use super::quality::{self as q, LegQuality, QualityConfig, QualityCounters, SessionQuality};
use super::shared::{Cmd, LegInit, LegShared, PeerSpec, RTCP_VALID, bump};
use crate::fastpath::KernelPath;
use crate::stats::{self, ReceiveStats, ReportBlock};
use crate::{Event, Latch};

/// Datagrams read per `recvmmsg`.
pub(crate) const BATCH: usize = 16;
/// Receive buffer per datagram (larger datagrams are dropped as truncated).
const BUF: usize = 2048;
const WAKE: u64 = u64::MAX;
/// Tokens of the thread's steered sockets: `SHARED | index`.
const SHARED: u64 = 1 << 62;

mod kernel;
mod tick;

pub(crate) type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// A relay thread's wake-up: an eventfd written only when no wake-up is pending, so a burst
/// of commands (offer, answer, delete of many calls) costs one write and one wake-up.
///
/// Held ([`Wake::hold`], the daemon's SIP thread): `notify` only marks the wake-up due and
/// [`Wake::release`] sends it, once per input batch of the SIP thread instead of once per
/// SDP. Measured at 2,500 anchored calls/s (kernel fast path): the eventfd writes were 8 % of
/// the SIP thread's samples, about four per call (offer, answer, answered, delete).
pub(crate) struct Wake {
    fd: EventFd,
    pending: AtomicBool,
    held: AtomicBool,
    due: AtomicBool,
}

impl Wake {
    pub fn new() -> std::io::Result<Wake> {
        use nix::sys::eventfd::EfdFlags;
        Ok(Wake {
            fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            pending: AtomicBool::new(false),
            held: AtomicBool::new(false),
            due: AtomicBool::new(false),
        })
    }

    /// After queueing commands: wake the thread unless a wake-up is already on its way (or,
    /// held, at the next [`Wake::release`]).
    pub fn notify(&self) {
        if self.held.load(Relaxed) {
            self.due.store(true, SeqCst);
        } else {
            self.now();
        }
    }

    /// Wake the thread now unless a wake-up is already on its way, held or not (a caller
    /// about to wait for the thread's answer).
    pub fn now(&self) {
        if !self.pending.swap(true, SeqCst) {
            let _ = self.fd.write(1);
        }
    }

    /// Hold wake-ups from now on, or send them at once again.
    pub fn hold(&self, on: bool) {
        self.held.store(on, SeqCst);
        if !on {
            self.release();
        }
    }

    /// Send the wake-up held since the last release, if any.
    pub fn release(&self) {
        if self.due.swap(false, SeqCst) {
            self.now();
        }
    }

    /// Wake the thread regardless (stop).
    pub fn force(&self) {
        let _ = self.fd.write(1);
    }

    /// On the relay thread, before draining the command queue: commands queued from here
    /// on trigger a new wake-up.
    fn consume(&self) {
        let _ = self.fd.read();
        self.pending.store(false, SeqCst);
    }
}

/// What every relay thread shares with the control side.
pub(crate) struct WorkerCtx {
    pub epoch: Instant,
    pub events: Events,
    pub timeouts: Arc<[AtomicU64]>,
    pub stop: Arc<AtomicBool>,
    pub timeout: Duration,
    pub hold_timeout: Duration,
    /// The configured latch mode, used for a leg whose side has sent no SDP yet.
    pub latch: Latch,
    /// `media.nice` for the relay threads.
    pub nice: i8,
    pub quality: QualityConfig,
    /// Per trunk slot, written at quality ticks.
    pub counters: QualityCounters,
    /// Trunk names by slot (slot 0: none), for log lines.
    pub trunk_names: Arc<[String]>,
    /// The kernel fast path, when in use.
    pub kernel: Option<Arc<KernelPath>>,
    /// TOS / traffic class byte of media (`media.dscp` << 2), for kernel entries.
    pub tos: u8,
    /// sk_lookup mode: the raw sockets steered legs send from.
    pub raw: Option<super::raw::RawSend>,
}

pub(crate) fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

struct WLeg {
    /// RTP and RTCP sockets (`None`: a steered leg, received on the thread's socket).
    socks: Option<(UdpSocket, UdpSocket)>,
    v6: bool,
    shared: Arc<LegShared>,
    /// From this side's newest SDP (None: no SDP from this side yet).
    peer: Option<PeerSpec>,
    latched_rtp: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    stats: ReceiveStats,
    clock_rate: u32,
    q: LegQuality,
    /// The RTP socket's local address (the kernel entry's key).
    local: Option<SocketAddr>,
    /// This leg's kernel fast path entry, when installed.
    kernel: Option<kernel::KernelLeg>,
    /// No kernel entry is installed before this time (relay ns; `u64::MAX`: never).
    kernel_retry: u64,
}

/// Is a datagram from `src` arriving on a leg's RTCP (`rtcp_sock`) or RTP socket from that
/// side's peer? Latches on the first acceptable one.
fn accept(
    peer: Option<PeerSpec>,
    latched_rtp: &mut Option<SocketAddr>,
    latched_rtcp: &mut Option<SocketAddr>,
    shared: &LegShared,
    rtcp_sock: bool,
    src: SocketAddr,
    default: Latch,
) -> bool {
    let mode = match peer {
        Some(p) => p.latch,
        None => match default {
            Latch::Auto => Latch::Any,
            m => m,
        },
    };
    let sdp_ip = peer.and_then(|p| p.rtp).map(|a| a.ip());
    let latched = if rtcp_sock { latched_rtcp } else { latched_rtp };
    match (mode, *latched) {
        (Latch::Off, _) => true,
        (_, Some(l)) => l == src,
        (Latch::SdpIp, None) if sdp_ip != Some(src.ip()) => false,
        (_, None) => {
            *latched = Some(src);
            if !rtcp_sock {
                shared.set_latched(Some(src));
            }
            true
        }
    }
}

impl WLeg {
    fn dest_rtp(&self) -> Option<SocketAddr> {
        let p = self.peer?;
        if !p.enabled {
            return None;
        }
        let d = match p.latch {
            Latch::Off => p.rtp,
            _ => self.latched_rtp.or(p.rtp),
        };
        d.map(|d| fit(d, self.v6))
    }

    fn dest_rtcp(&self) -> Option<SocketAddr> {
        let p = self.peer?;
        if !p.enabled {
            return None;
        }
        if p.mux {
            return self.dest_rtp();
        }
        let d = match p.latch {
            Latch::Off => p.rtcp,
            _ => self.latched_rtcp.or(p.rtcp),
        };
        d.map(|d| fit(d, self.v6))
    }
}

/// A v4 destination seen from a v6 (dual-stack) socket is sent to its mapped form.
fn fit(d: SocketAddr, v6: bool) -> SocketAddr {
    match (d, v6) {
        (SocketAddr::V4(a), true) => SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port()),
        _ => d,
    }
}

fn to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::from(*a));
    }
    let a = SocketAddr::from(*s.as_sockaddr_in6()?);
    // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
    Some(SocketAddr::new(a.ip().to_canonical(), a.port()))
}

/// One `recvmmsg` of up to [`BATCH`] datagrams on `fd`: per datagram its length and source
/// (`None` when truncated) into `meta`, and, for a steered socket (`dst`), its original
/// destination. Returns how many arrived.
fn receive(
    fd: std::os::fd::RawFd,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [[u8; BUF]; BATCH],
    meta: &mut [(usize, Option<SocketAddr>); BATCH],
    mut dst: Option<&mut [Option<SocketAddr>; BATCH]>,
) -> usize {
    let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
    let Ok(msgs) = recvmmsg(fd, hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) else {
        return 0;
    };
    let mut n = 0;
    for m in msgs {
        let addr = if m.flags.contains(MsgFlags::MSG_TRUNC) {
            None
        } else {
            m.address.as_ref().and_then(to_std)
        };
        if let Some(dst) = dst.as_deref_mut() {
            dst[n] = m.cmsgs().ok().and_then(|mut c| c.find_map(orig_dst));
        }
        meta[n] = (m.bytes, addr);
        n += 1;
    }
    n
}

/// A steered leg's RTP address and its RTCP address (port + 1), canonical.
fn steered_pair(local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let ip = local.ip().to_canonical();
    (
        SocketAddr::new(ip, local.port()),
        SocketAddr::new(ip, local.port().wrapping_add(1)),
    )
}

/// The original destination of a steered datagram, canonical.
fn orig_dst(c: nix::sys::socket::ControlMessageOwned) -> Option<SocketAddr> {
    use nix::sys::socket::ControlMessageOwned as C;
    use std::net::{Ipv4Addr, Ipv6Addr};
    match c {
        C::Ipv4OrigDstAddr(a) => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
            u16::from_be(a.sin_port),
        )),
        C::Ipv6OrigDstAddr(a) => Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)).to_canonical(),
            u16::from_be(a.sin6_port),
        )),
        _ => None,
    }
}

/// After RTP from side `side`'s peer: move that direction into the kernel if it may go.
fn install(ctx: &WorkerCtx, st: &mut WStream, side: usize, now: u64) {
    if let Some(kp) = &ctx.kernel
        && st.rtp
    {
        let [a, b] = &mut st.legs;
        let (x, y) = if side == 0 { (a, b) } else { (b, a) };
        kernel::try_install(kp, x, y, ctx.tos, now);
    }
}

/// One datagram from `src` on side `side`'s RTP (or, `rtcp_sock`, RTCP) port of `st`: the
/// latch check, the counters, RTP statistics or the RTCP report, and the relay to the other
/// side — through the other leg's socket, or (steered) the raw sender from its port.
#[allow(clippy::too_many_arguments)]
fn relay_one(
    ctx: &WorkerCtx,
    st: &mut WStream,
    side: usize,
    rtcp_sock: bool,
    pkt: &[u8],
    src: Option<SocketAddr>,
    now: u64,
    reports: &mut SmallVec<[ReportBlock; 4]>,
) {
    let is_rtp_stream = st.rtp;
    let [a, b] = &mut st.legs;
    let (x, y) = if side == 0 { (a, b) } else { (b, a) };
    let Some(src) = src else {
        bump(&x.shared.dropped, 1);
        return;
    };
    if !accept(
        x.peer,
        &mut x.latched_rtp,
        &mut x.latched_rtcp,
        &x.shared,
        rtcp_sock,
        src,
        ctx.latch,
    ) {
        bump(&x.shared.dropped, 1);
        return;
    }
    let len = pkt.len();
    let xs: &LegShared = &x.shared;
    let ys: &LegShared = &y.shared;
    bump(&xs.rx_packets, 1);
    bump(&xs.rx_bytes, len as u64);
    xs.last_rx.store(now, Relaxed);
    if xs.first_rx.load(Relaxed) == 0 {
        xs.first_rx.store(now, Relaxed);
    }
    let is_rtcp = rtcp_sock || (is_rtp_stream && stats::is_rtcp(pkt));
    if !is_rtcp && kernel::declined(&x.kernel, stats::rtp_header(pkt).map(|h| h.ssrc), now) {
        // The kernel left this RTP datagram to us (new SSRC, sequence jump, no route…):
        // count it here, back in userspace for a while.
        if let Some(kp) = &ctx.kernel {
            kernel::uninstall_parts(
                kp,
                &mut x.kernel,
                &mut x.stats,
                xs,
                ys,
                &mut x.kernel_retry,
                now,
                true,
            );
        }
    }
    if is_rtp_stream {
        if is_rtcp {
            bump(&xs.rtcp_rx_packets, 1);
            reports.clear();
            stats::rtcp_reports(pkt, reports);
            if let Some(ntp) = stats::sender_report_ntp_middle(pkt) {
                x.q.sr = Some((ntp, now));
            }
            if let Some(r) = reports.first() {
                q::note_report(&mut x.q, xs, y.q.sr, r.lsr, r.dlsr, now);
                let loss = RTCP_VALID
                    | (u64::from(r.fraction_lost) << 32)
                    | u64::from(r.cumulative_lost as u32);
                xs.rtcp_loss.store(loss, Relaxed);
                xs.rtcp_jitter.store(u64::from(r.jitter), Relaxed);
            }
        } else if let Some(h) = stats::rtp_header(pkt) {
            x.stats.on_packet(&h, now, x.clock_rate);
            q::note_payload_type(&mut x.q, h.payload_type);
            xs.store_rtp_stats(&x.stats);
        }
    }
    // RTCP goes to the other side's RTCP port unless that side muxes it.
    let to_rtp = !is_rtcp || y.peer.is_some_and(|p| p.mux);
    let dest = if to_rtp { y.dest_rtp() } else { y.dest_rtcp() };
    let Some(dest) = dest else {
        bump(&xs.dropped, 1);
        return;
    };
    let sent = match (&y.socks, &ctx.raw, y.local) {
        (Some((rtp, rtcp)), _, _) => {
            let sock = if to_rtp { rtp } else { rtcp };
            sock.send_to(pkt, dest).is_ok()
        }
        (None, Some(raw), Some(local)) => {
            let (rtp, rtcp) = steered_pair(local);
            raw.send(if to_rtp { rtp } else { rtcp }, dest, pkt).is_ok()
        }
        _ => false,
    };
    if sent {
        bump(&ys.tx_packets, 1);
        bump(&ys.tx_bytes, len as u64);
    } else {
        bump(&xs.dropped, 1);
    }
}

fn fold_stream(kp: &KernelPath, st: &mut WStream) {
    let [a, b] = &mut st.legs;
    kernel::fold(kp, &mut a.kernel, &mut a.stats, &a.shared, &b.shared);
    kernel::fold(kp, &mut b.kernel, &mut b.stats, &b.shared, &a.shared);
}

struct WStream {
    rtp: bool,
    legs: [WLeg; 2],
}

struct WSession {
    trunk: usize,
    last_update: u64,
    last_report: u64,
    reported: bool,
    quality: SessionQuality,
    /// (m= index, slot in `streams`)
    streams: SmallVec<[(usize, usize); 4]>,
}

struct Io {
    /// Receive headers for IPv4 sockets and for IPv6 sockets, kept apart: nix 0.32's
    /// `recvmmsg` sets each header's `msg_namelen` once (in `preallocate`) and never resets
    /// it, while the kernel writes back the length of the address it stored. One set shared
    /// by both families would, after an IPv4 datagram (16 bytes), cut the next IPv6 source
    /// address to 16 bytes of its 28: `[::1]:p` read back as `[::]:p`, `2001:db8::1` as
    /// `2001:db8::` — a wrong latch, and every later packet from the real peer dropped.
    /// Per family the stored length never changes (a dual-stack socket reports IPv4 peers
    /// as IPv4-mapped IPv6, 28 bytes too).
    hdrs: MultiHeaders<SockaddrStorage>,
    hdrs_v6: MultiHeaders<SockaddrStorage>,
    /// Per steered socket (one family each, so lengths never change either), with room for
    /// the original-destination control message.
    hdrs_shared: Vec<MultiHeaders<SockaddrStorage>>,
    bufs: Box<[[u8; BUF]; BATCH]>,
    meta: [(usize, Option<SocketAddr>); BATCH],
    /// Original destinations (steered sockets).
    dst: [Option<SocketAddr>; BATCH],
}

struct Worker {
    ctx: Arc<WorkerCtx>,
    epoll: Epoll,
    wake: Arc<Wake>,
    rx: Receiver<Cmd>,
    streams: Vec<Option<WStream>>,
    free: Vec<usize>,
    sessions: HashMap<u64, WSession>,
    /// sk_lookup mode: the thread's socket per media address, and which leg an anchored
    /// (address, port) belongs to (a stream token, as for per-leg sockets).
    shared: Vec<UdpSocket>,
    ports: HashMap<SocketAddr, u64>,
    /// Steered datagrams for a port no leg of this thread holds (late packets of a call
    /// just deleted, or a port steered by another instance).
    unknown: u64,
}

pub(crate) fn spawn(
    n: usize,
    ctx: Arc<WorkerCtx>,
    rx: Receiver<Cmd>,
    wake: Arc<Wake>,
    shared: Vec<UdpSocket>,
) -> std::io::Result<JoinHandle<()>> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(wake.fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
    for (i, s) in shared.iter().enumerate() {
        epoll.add(
            s.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, SHARED | i as u64),
        )?;
    }
    let w = Worker {
        ctx,
        epoll,
        wake,
        rx,
        streams: Vec::new(),
        free: Vec::new(),
        sessions: HashMap::new(),
        shared,
        ports: HashMap::new(),
        unknown: 0,
    };
    let nice = w.ctx.nice;
    std::thread::Builder::new()
        .name(format!("tg-media-{n}"))
        .spawn(move || {
            super::priority::set_nice(n, nice);
            w.run()
        })
}

impl Worker {
    fn run(mut self) {
        let mut io = Io {
            hdrs: MultiHeaders::preallocate(BATCH, None),
            hdrs_v6: MultiHeaders::preallocate(BATCH, None),
            hdrs_shared: self
                .shared
                .iter()
                .map(|_| {
                    MultiHeaders::preallocate(
                        BATCH,
                        Some(nix::cmsg_space!(nix::libc::sockaddr_in6)),
                    )
                })
                .collect(),
            bufs: Box::new([[0u8; BUF]; BATCH]),
            meta: [(0, None); BATCH],
            dst: [None; BATCH],
        };
        let mut events = [EpollEvent::empty(); 256];
        let shortest = self
            .ctx
            .timeout
            .min(self.ctx.hold_timeout)
            .min(self.ctx.quality.one_way_after);
        let interval = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut next_check = Instant::now() + interval;
        loop {
            if self.ctx.stop.load(Relaxed) {
                break;
            }
            let wait = next_check.saturating_duration_since(Instant::now());
            let ms = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(ms)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "media relay thread: epoll_wait failed");
                    break;
                }
            };
            let now = nanos_since(self.ctx.epoch);
            for ev in &events[..n] {
                let token = ev.data();
                if token == WAKE {
                    self.wake.consume();
                    self.commands();
                } else if token & SHARED != 0 {
                    self.forward_shared((token & !SHARED) as usize, now, &mut io);
                } else {
                    self.forward(token, now, &mut io);
                }
            }
            if Instant::now() >= next_check {
                // Commands whose wake-up was held and never released (no further input
                // on the SIP thread) still run, at the latest one interval later.
                self.commands();
                self.fold_kernel();
                self.check_idle();
                self.check_quality();
                next_check = Instant::now() + interval;
            }
        }
        // Sockets close when `self` drops.
    }

    fn commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.ctx.stop.store(true, Relaxed);
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Touch {
                call,
                trunk,
                at,
                call_id,
            } => {
                let s = self.sessions.entry(call).or_insert_with(|| WSession {
                    trunk,
                    last_update: at,
                    last_report: 0,
                    reported: false,
                    quality: SessionQuality::default(),
                    streams: SmallVec::new(),
                });
                s.last_update = s.last_update.max(at);
                if call_id.is_some() {
                    s.quality.call_id = call_id;
                }
            }
            Cmd::Trunk { call, trunk } => {
                if let Some(s) = self.sessions.get_mut(&call) {
                    s.trunk = trunk;
                }
            }
            Cmd::Answered { call, at } => {
                if let Some(s) = self.sessions.get_mut(&call) {
                    s.quality.answered.get_or_insert(at);
                }
            }
            Cmd::AddStream {
                call,
                index,
                rtp,
                legs,
            } => {
                let Some(s) = self.sessions.get_mut(&call) else {
                    return;
                };
                let slot = self.free.pop().unwrap_or(self.streams.len());
                let [a, b] = *legs;
                let leg = |l: LegInit| WLeg {
                    local: Some(l.local),
                    v6: l.local.is_ipv6(),
                    socks: l.socks,
                    shared: l.shared,
                    peer: None,
                    latched_rtp: None,
                    latched_rtcp: None,
                    stats: ReceiveStats::new(),
                    clock_rate: 8000,
                    q: LegQuality::default(),
                    kernel: None,
                    kernel_retry: 0,
                };
                let st = WStream {
                    rtp,
                    legs: [leg(a), leg(b)],
                };
                for (side, l) in st.legs.iter().enumerate() {
                    let token = |kind: u64| ((slot as u64) << 2) | ((side as u64) << 1) | kind;
                    match &l.socks {
                        Some((rtp, rtcp)) => {
                            for (kind, sock) in [rtp, rtcp].into_iter().enumerate() {
                                if let Err(e) = self.epoll.add(
                                    sock.as_fd(),
                                    EpollEvent::new(EpollFlags::EPOLLIN, token(kind as u64)),
                                ) {
                                    tracing::error!(error = %e, call, "media relay: epoll add failed");
                                }
                            }
                        }
                        None => {
                            if let Some(local) = l.local {
                                let (rtp, rtcp) = steered_pair(local);
                                self.ports.insert(rtp, token(0));
                                self.ports.insert(rtcp, token(1));
                            }
                        }
                    }
                }
                if slot == self.streams.len() {
                    self.streams.push(Some(st));
                } else {
                    self.streams[slot] = Some(st);
                }
                s.streams.push((index, slot));
            }
            Cmd::SetPeer {
                call,
                index,
                side,
                peer,
                clock_rate,
            } => {
                let Some(s) = self.sessions.get(&call) else {
                    return;
                };
                let Some(&(_, slot)) = s.streams.iter().find(|(i, _)| *i == index) else {
                    return;
                };
                let Some(Some(st)) = self.streams.get_mut(slot) else {
                    return;
                };
                if let Some(kp) = &self.ctx.kernel {
                    // Either side's new SDP may change a destination: both directions go
                    // back to userspace until the next datagram re-installs them.
                    let now = nanos_since(self.ctx.epoch);
                    let [a, b] = &mut st.legs;
                    kernel::uninstall(kp, a, &b.shared, now, false);
                    kernel::uninstall(kp, b, &a.shared, now, false);
                }
                let leg = &mut st.legs[side & 1];
                if peer.reset_latch {
                    leg.latched_rtp = None;
                    leg.latched_rtcp = None;
                    leg.shared.set_latched(None);
                }
                leg.peer = Some(peer);
                if clock_rate > 0 {
                    leg.clock_rate = clock_rate;
                }
            }
            Cmd::Fold { call: None, done } => {
                self.fold_kernel();
                let _ = done.try_send(());
            }
            Cmd::Fold {
                call: Some(call),
                done,
            } => {
                if let (Some(kp), Some(s)) = (&self.ctx.kernel, self.sessions.get(&call)) {
                    for &(_, slot) in &s.streams {
                        if let Some(Some(st)) = self.streams.get_mut(slot) {
                            fold_stream(kp, st);
                        }
                    }
                }
                let _ = done.try_send(());
            }
            Cmd::Delete { call } => {
                let Some(s) = self.sessions.remove(&call) else {
                    return;
                };
                self.final_quality(call, &s);
                for (_, slot) in s.streams {
                    if let Some(st) = self.streams.get_mut(slot).and_then(Option::take) {
                        if let Some(kp) = &self.ctx.kernel {
                            for l in &st.legs {
                                if let Some(k) = &l.kernel {
                                    kp.remove(k.key());
                                }
                            }
                        }
                        for (side, l) in st.legs.iter().enumerate() {
                            if let (None, Some(local)) = (&l.socks, l.local) {
                                let (rtp, rtcp) = steered_pair(local);
                                for (kind, a) in [(0u64, rtp), (1, rtcp)] {
                                    let token = ((slot as u64) << 2) | ((side as u64) << 1) | kind;
                                    // The port may already belong to a newer call.
                                    if self.ports.get(&a) == Some(&token) {
                                        self.ports.remove(&a);
                                    }
                                }
                            }
                        }
                        // Closing a socket takes it out of the epoll set (no other
                        // descriptor refers to it): no EPOLL_CTL_DEL needed.
                        drop(st);
                        self.free.push(slot);
                    }
                }
            }
        }
    }

    /// Relay everything waiting on one leg's socket.
    fn forward(&mut self, token: u64, now: u64, io: &mut Io) {
        let slot = (token >> 2) as usize;
        let side = ((token >> 1) & 1) as usize;
        let rtcp_sock = token & 1 == 1;
        let Some(Some(st)) = self.streams.get_mut(slot) else {
            return;
        };
        let x = &st.legs[side];
        let Some((rtp, rtcp)) = &x.socks else { return };
        let fd = if rtcp_sock {
            rtcp.as_raw_fd()
        } else {
            rtp.as_raw_fd()
        };
        let hdrs = if x.v6 { &mut io.hdrs_v6 } else { &mut io.hdrs };
        let n = receive(fd, hdrs, &mut io.bufs, &mut io.meta, None);
        if n == 0 {
            return;
        }
        let mut reports: SmallVec<[ReportBlock; 4]> = SmallVec::new();
        for i in 0..n {
            let (len, src) = io.meta[i];
            let pkt = &io.bufs[i][..len.min(BUF)];
            relay_one(&self.ctx, st, side, rtcp_sock, pkt, src, now, &mut reports);
        }
        if !rtcp_sock {
            install(&self.ctx, st, side, now);
        }
    }

    /// Relay everything waiting on one of the thread's steered sockets (sk_lookup mode):
    /// each datagram's original destination names its leg.
    fn forward_shared(&mut self, index: usize, now: u64, io: &mut Io) {
        let Some(sock) = self.shared.get(index) else {
            return;
        };
        let fd = sock.as_raw_fd();
        let Some(hdrs) = io.hdrs_shared.get_mut(index) else {
            return;
        };
        let n = receive(fd, hdrs, &mut io.bufs, &mut io.meta, Some(&mut io.dst));
        let mut reports: SmallVec<[ReportBlock; 4]> = SmallVec::new();
        for i in 0..n {
            let (len, src) = io.meta[i];
            let Some(dst) = io.dst[i] else {
                self.unknown += 1;
                continue;
            };
            let token = match self.ports.get(&dst) {
                Some(&t) => t,
                None => {
                    // The command adding the leg is queued before its SDP leaves; it may
                    // not have been read yet.
                    self.commands();
                    match self.ports.get(&dst) {
                        Some(&t) => t,
                        None => {
                            self.unknown += 1;
                            continue;
                        }
                    }
                }
            };
            let slot = (token >> 2) as usize;
            let side = ((token >> 1) & 1) as usize;
            let rtcp_sock = token & 1 == 1;
            let Some(Some(st)) = self.streams.get_mut(slot) else {
                continue;
            };
            let pkt = &io.bufs[i][..len.min(BUF)];
            relay_one(&self.ctx, st, side, rtcp_sock, pkt, src, now, &mut reports);
            if !rtcp_sock {
                install(&self.ctx, st, side, now);
            }
        }
    }

    /// Fold every kernel entry's counters into its leg's figures (before the idle and
    /// quality checks read them).
    fn fold_kernel(&mut self) {
        let Some(kp) = &self.ctx.kernel else { return };
        for st in self.streams.iter_mut().flatten() {
            fold_stream(kp, st);
        }
    }

    /// Report sessions with no packet (and no update) for the timeout.
    fn check_idle(&mut self) {
        let now = nanos_since(self.ctx.epoch);
        let mut fire: SmallVec<[(u64, Duration, bool); 8]> = SmallVec::new();
        for (&call, s) in &mut self.sessions {
            let mut last = s.last_update;
            let (mut active, mut held) = (0, 0);
            for &(_, slot) in &s.streams {
                let Some(Some(st)) = self.streams.get(slot) else {
                    continue;
                };
                for l in &st.legs {
                    last = last.max(l.shared.last_rx.load(Relaxed));
                }
                let disabled = st.legs.iter().any(|l| l.peer.is_some_and(|p| !p.enabled));
                if !disabled {
                    active += 1;
                    if st.legs.iter().any(|l| l.peer.is_some_and(|p| p.hold)) {
                        held += 1;
                    }
                }
            }
            let on_hold = active > 0 && held == active;
            let limit = if on_hold {
                self.ctx.hold_timeout
            } else {
                self.ctx.timeout
            };
            let since = last.max(s.last_report);
            if now.saturating_sub(since) >= u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX) {
                s.last_report = now;
                if !s.reported {
                    s.reported = true;
                    if let Some(t) = self.ctx.timeouts.get(s.trunk) {
                        t.fetch_add(1, Relaxed);
                    }
                }
                fire.push((
                    call,
                    Duration::from_nanos(now.saturating_sub(last)),
                    on_hold,
                ));
            }
        }
        for (call, idle, on_hold) in fire {
            tracing::info!(
                call,
                idle_ms = idle.as_millis() as u64,
                on_hold,
                "media timeout"
            );
            (self.ctx.events)(Event::Timeout {
                call,
                idle,
                on_hold,
            });
        }
    }
}
