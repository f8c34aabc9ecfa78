//! RTP sockets, the paced sender/receiver workers and the in-process lossy forwarder.
//!
//! Every call has a UAC-side socket (A) and a UAS-side socket (B). A sends the UAC→UAS
//! stream to the relay's leg-A address and receives the UAS→UAC stream; B the reverse.
//! With impairment on, A sits behind a forwarder socket F: the SDP names F, A sends to F,
//! F drops/delays and forwards to the relay, and F passes what the relay sends back to A.
//!
//! Workers own disjoint sets of calls. Each runs one epoll loop: a cursor walks the
//! worker's streams in send-time order (all streams share one period and are spread evenly
//! across it), a timerfd armed at the next deadline (absolute CLOCK_MONOTONIC, ns precision)
//! wakes the loop, and readable sockets are read once per readiness event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::{Context, Result, bail};
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::{MS, SEC, now_ns, ns_to_ts};
use crate::hist::Histogram;

pub const RTP_HEADER: usize = 12;
/// Send time (8) + stream id (4) + packet number (4) at the start of the payload.
pub const STAMP: usize = 16;

/// Even-port allocator over a range on one IP.
pub struct Ports {
    ip: IpAddr,
    next: u32,
    hi: u32,
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl Ports {
    pub fn new(ip: IpAddr, lo: u16, hi: u16) -> Self {
        let lo = u32::from(lo) + u32::from(lo) % 2;
        Self {
            ip,
            next: lo,
            hi: u32::from(hi),
        }
    }

    /// Binds the next free even port.
    pub fn bind_even(&mut self) -> Result<(UdpSocket, SocketAddr)> {
        while self.next <= self.hi {
            let port = self.next as u16;
            self.next += 2;
            let addr = SocketAddr::new(self.ip, port);
            match udp_socket(addr) {
                Ok(s) => return Ok((s, addr)),
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e).with_context(|| format!("bind {addr}")),
            }
        }
        bail!("RTP port range exhausted on {} (use --rtp-ports)", self.ip)
    }

    /// Binds any port (the generator socket behind a forwarder is not in any SDP).
    pub fn bind_any(&self) -> Result<(UdpSocket, SocketAddr)> {
        let s = udp_socket(SocketAddr::new(self.ip, 0)).context("bind")?;
        let a = s.local_addr()?;
        Ok((s, a))
    }
}

/// The media side of one call.
pub struct CallMedia {
    pub idx: usize,
    /// Shared-socket mode: the index of the shared socket pair this call uses (and `a`/`b`
    /// are `None`).
    pub group: Option<usize>,
    pub a: Option<UdpSocket>,
    pub a_local: SocketAddr,
    pub fwd: Option<(UdpSocket, SocketAddr)>,
    pub b: Option<UdpSocket>,
    pub b_local: SocketAddr,
    /// Where the UAC side sends (the relay's leg facing the PBX).
    pub a_remote: Option<SocketAddr>,
    /// Where the UAS side sends (the relay's leg facing the trunk).
    pub b_remote: Option<SocketAddr>,
}

impl CallMedia {
    /// A side from `ports[0]`, B side from the last entry (the same one when both sides
    /// share an IP).
    pub fn open(idx: usize, ports: &mut [Ports], impaired: bool) -> Result<Self> {
        let Some(a_ports) = ports.first_mut() else {
            bail!("no RTP port range");
        };
        let (a, a_local, fwd) = if impaired {
            let f = a_ports.bind_even()?;
            let (a, al) = a_ports.bind_any()?;
            (a, al, Some(f))
        } else {
            let (a, al) = a_ports.bind_even()?;
            (a, al, None)
        };
        let Some(b_ports) = ports.last_mut() else {
            bail!("no RTP port range");
        };
        let (b, b_local) = b_ports.bind_even()?;
        Ok(Self {
            idx,
            group: None,
            a: Some(a),
            a_local,
            fwd,
            b: Some(b),
            b_local,
            a_remote: None,
            b_remote: None,
        })
    }

    /// A call on shared socket pair `group` (addresses only; the sockets live elsewhere).
    pub fn shared(idx: usize, group: usize, a_local: SocketAddr, b_local: SocketAddr) -> Self {
        Self {
            idx,
            group: Some(group),
            a: None,
            a_local,
            fwd: None,
            b: None,
            b_local,
            a_remote: None,
            b_remote: None,
        }
    }

    /// The UAC side's media address as written into its SDP.
    pub fn a_sdp_addr(&self) -> SocketAddr {
        self.fwd.as_ref().map(|f| f.1).unwrap_or(self.a_local)
    }

    pub fn is_up(&self) -> bool {
        self.a_remote.is_some() && self.b_remote.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct MediaOpts {
    pub pps: u32,
    pub payload: usize,
    pub pt: u8,
    pub drop: f64,
    pub jitter_ms: f64,
    pub seed: u64,
    /// The UAS side (the trunk) stops sending this long after the media start (0: never).
    pub uas_stop_after: f64,
}

/// splitmix64: small, seeded, good enough for loss and jitter draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Direction 0: UAC→UAS (sent by A, received by B); 1: UAS→UAC.
#[derive(Debug, Clone, Default)]
pub struct DirStats {
    pub sent: u64,
    pub received: u64,
}

#[derive(Clone, Default)]
pub struct WorkerStats {
    pub dir: [DirStats; 2],
    pub send_errors: u64,
    pub recv_errors: u64,
    pub foreign: u64,
    pub reordered: u64,
    pub fwd_dropped: u64,
    pub fwd_delayed: u64,
    pub latency_us: Histogram,
    /// How late sends left relative to their schedule (µs).
    pub send_lag_us: Histogram,
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        for d in 0..2 {
            self.dir[d].sent += o.dir[d].sent;
            self.dir[d].received += o.dir[d].received;
        }
        self.send_errors += o.send_errors;
        self.recv_errors += o.recv_errors;
        self.foreign += o.foreign;
        self.reordered += o.reordered;
        self.fwd_dropped += o.fwd_dropped;
        self.fwd_delayed += o.fwd_delayed;
        self.latency_us.merge(&o.latency_us);
        self.send_lag_us.merge(&o.send_lag_us);
    }
}

/// Schedule of the RTP phase, shared by all workers (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start_ns: u64,
    pub stop_send_ns: u64,
    pub end_ns: u64,
    /// Streams in the whole run, for spreading send offsets over the period.
    pub total_streams: u64,
}

struct Stream {
    call: usize,
    dir: usize,
    id: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
    pkt: u32,
    offset: u64,
}

/// A jittered forwarder packet: (due ns, arrival order, call, bytes).
type Delayed = (u64, u64, usize, Vec<u8>);

const KIND_A: u64 = 0;
const KIND_B: u64 = 1;
const KIND_F: u64 = 2;
const TIMER: u64 = u64::MAX;

/// `calls` are (rank among established calls, media); rank r owns stream ids 2r and 2r+1.
pub fn run_worker(
    wid: usize,
    calls: Vec<(usize, CallMedia)>,
    sched: Schedule,
    opts: &MediaOpts,
) -> Result<WorkerStats> {
    let mut st = WorkerStats::default();
    let period = SEC / u64::from(opts.pps.max(1));
    let samples = 8000 / opts.pps.max(1);
    let mut rng = Rng::new(opts.seed ^ (wid as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll")?;
    let timer =
        TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).context("timerfd")?;
    epoll.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;

    let mut streams = Vec::with_capacity(calls.len() * 2);
    // Last sequence number seen per (call, direction) for reorder counting.
    let mut last_seq: Vec<[Option<u16>; 2]> = vec![[None, None]; calls.len()];
    for (ci, (rank, c)) in calls.iter().enumerate() {
        let tok = (ci as u64) << 2;
        let (Some(a), Some(b)) = (&c.a, &c.b) else {
            bail!("call {} has no sockets of its own", c.idx);
        };
        epoll.add(a, EpollEvent::new(EpollFlags::EPOLLIN, tok | KIND_A))?;
        epoll.add(b, EpollEvent::new(EpollFlags::EPOLLIN, tok | KIND_B))?;
        if let Some((f, _)) = &c.fwd {
            epoll.add(f, EpollEvent::new(EpollFlags::EPOLLIN, tok | KIND_F))?;
        }
        for dir in 0..2 {
            let id = (*rank * 2 + dir) as u32;
            streams.push(Stream {
                call: ci,
                dir,
                id,
                ssrc: rng.next_u64() as u32,
                seq: rng.next_u64() as u16,
                ts: rng.next_u64() as u32,
                pkt: 0,
                offset: u64::from(id) * period / sched.total_streams.max(1),
            });
        }
    }
    streams.sort_by_key(|s| s.offset);

    let pkt_len = RTP_HEADER + opts.payload.max(STAMP);
    let mut buf = vec![0xD5u8; pkt_len]; // A-law silence
    let mut rbuf = [0u8; 2048];
    let mut events = vec![EpollEvent::empty(); 512];
    let mut delayed: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
    let mut delayed_seq = 0u64;
    let jitter_ns = (opts.jitter_ms.max(0.0) * MS as f64) as u64;

    let mut cursor = 0usize;
    let mut cycle = 0u64;
    let mut armed: Option<u64> = None;
    let due = |cursor: usize, cycle: u64, streams: &[Stream]| -> u64 {
        sched.start_ns + cycle * period + streams.get(cursor).map_or(0, |s| s.offset)
    };

    loop {
        let mut now = now_ns();
        if now >= sched.end_ns {
            break;
        }
        // 1. Sends that are due (bounded, so receives are not starved).
        let sending = now < sched.stop_send_ns && !streams.is_empty();
        let mut budget = 256;
        while sending && budget > 0 {
            let d = due(cursor, cycle, &streams);
            if d > now {
                break;
            }
            budget -= 1;
            let s = &mut streams[cursor];
            let (_, c) = &calls[s.call];
            let (sock, dest) = if s.dir == 0 {
                let dest = match &c.fwd {
                    Some((_, fa)) => Some(*fa),
                    None => c.a_remote,
                };
                (&c.a, dest)
            } else {
                (&c.b, c.b_remote)
            };
            let uas_stopped = s.dir == 1
                && opts.uas_stop_after > 0.0
                && now >= sched.start_ns + (opts.uas_stop_after * SEC as f64) as u64;
            if let (Some(sock), Some(dest), false) = (sock, dest, uas_stopped) {
                buf[0] = 0x80;
                buf[1] = (opts.pt & 0x7f) | if s.pkt == 0 { 0x80 } else { 0 };
                buf[2..4].copy_from_slice(&s.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&s.ts.to_be_bytes());
                buf[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                let t = now_ns();
                buf[12..20].copy_from_slice(&t.to_be_bytes());
                buf[20..24].copy_from_slice(&s.id.to_be_bytes());
                buf[24..28].copy_from_slice(&s.pkt.to_be_bytes());
                match sock.send_to(&buf, dest) {
                    Ok(_) => {
                        st.dir[s.dir].sent += 1;
                        st.send_lag_us.record(t.saturating_sub(d) / 1000);
                    }
                    Err(_) => st.send_errors += 1,
                }
            }
            // The schedule advances even when a send failed: pacing never bunches up.
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(samples);
            s.pkt = s.pkt.wrapping_add(1);
            cursor += 1;
            if cursor == streams.len() {
                cursor = 0;
                cycle += 1;
            }
            now = now_ns();
        }
        // 2. Delayed (jittered) forwarder packets that are due.
        while let Some(Reverse((t, _, ci, _))) = delayed.peek() {
            if *t > now {
                break;
            }
            let ci = *ci;
            if let Some(Reverse((_, _, _, pkt))) = delayed.pop() {
                let (_, c) = &calls[ci];
                if let (Some((f, _)), Some(dest)) = (&c.fwd, c.a_remote) {
                    if f.send_to(&pkt, dest).is_err() {
                        st.send_errors += 1;
                    }
                }
            }
        }
        // 3. Wait for the next deadline or for packets.
        let mut next = sched.end_ns;
        if now < sched.stop_send_ns && !streams.is_empty() {
            next = next.min(due(cursor, cycle, &streams));
        }
        if let Some(Reverse((t, ..))) = delayed.peek() {
            next = next.min(*t);
        }
        let timeout = if budget == 0 || next <= now {
            PollTimeout::ZERO
        } else {
            if armed != Some(next) {
                timer
                    .set(
                        Expiration::OneShot(ns_to_ts(next)),
                        TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                    )
                    .context("timerfd_settime")?;
                armed = Some(next);
            }
            PollTimeout::from(100u16)
        };
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        for ev in &events[..n] {
            let tok = ev.data();
            if tok == TIMER {
                let _ = timer.wait();
                armed = None;
                continue;
            }
            let ci = (tok >> 2) as usize;
            let kind = tok & 3;
            let Some((rank, c)) = calls.get(ci) else {
                continue;
            };
            match kind {
                KIND_A | KIND_B => {
                    let Some(sock) = (if kind == KIND_A { &c.a } else { &c.b }) else {
                        continue;
                    };
                    let len = match sock.recv_from(&mut rbuf) {
                        Ok((len, _)) => len,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Err(_) => {
                            st.recv_errors += 1;
                            continue;
                        }
                    };
                    let t = now_ns();
                    // A receives direction 1 (UAS→UAC), B direction 0.
                    let dir = if kind == KIND_A { 1 } else { 0 };
                    if len < RTP_HEADER + STAMP || rbuf[0] >> 6 != 2 {
                        st.foreign += 1;
                        continue;
                    }
                    let rank_id = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let id = rank_id(&rbuf[20..24]);
                    if id != (*rank * 2 + dir) as u32 {
                        st.foreign += 1;
                        continue;
                    }
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&rbuf[12..20]);
                    let sent = u64::from_be_bytes(ts);
                    st.dir[dir].received += 1;
                    st.latency_us.record(t.saturating_sub(sent) / 1000);
                    let seq = u16::from_be_bytes([rbuf[2], rbuf[3]]);
                    let last = &mut last_seq[ci][dir];
                    if let Some(l) = *last {
                        if seq.wrapping_sub(l) >= 0x8000 || seq == l {
                            st.reordered += 1;
                        } else {
                            *last = Some(seq);
                        }
                    } else {
                        *last = Some(seq);
                    }
                }
                _ => {
                    let Some((f, _)) = &c.fwd else { continue };
                    let (len, src) = match f.recv_from(&mut rbuf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Err(_) => {
                            st.recv_errors += 1;
                            continue;
                        }
                    };
                    if src == c.a_local {
                        // Upstream: the generator towards the relay, impaired.
                        if opts.drop > 0.0 && rng.next_f64() < opts.drop {
                            st.fwd_dropped += 1;
                            continue;
                        }
                        if jitter_ns > 0 {
                            let d = rng.next_u64() % (jitter_ns + 1);
                            delayed_seq += 1;
                            delayed.push(Reverse((
                                now_ns() + d,
                                delayed_seq,
                                ci,
                                rbuf[..len].to_vec(),
                            )));
                            st.fwd_delayed += 1;
                        } else if let Some(dest) = c.a_remote {
                            if f.send_to(&rbuf[..len], dest).is_err() {
                                st.send_errors += 1;
                            }
                        }
                    } else if f.send_to(&rbuf[..len], c.a_local).is_err() {
                        // Downstream: from the relay back to the generator, untouched.
                        st.send_errors += 1;
                    }
                }
            }
        }
    }
    Ok(st)
}
