//! The relay: control side (`update`/`delete`/`calls`, socket binding, port pool) and
//! the relay threads ([`worker`]). See `docs/design/media.md`.

mod bind;
mod metrics;
mod priority;
mod quality;
mod raw;
mod shared;
mod snapshot;
#[cfg(test)]
mod walk_tests;
mod worker;

pub use bind::raise_fd_limit;
pub use metrics::{
    Histogram, JITTER_BUCKETS, LOSS_BUCKETS, MediaMetrics, MediaMetricsSnapshot, TrunkMedia,
};
pub use priority::apply_nice;
pub use quality::{MOS_BUCKETS, Missing, QualityConfig};
pub use snapshot::{
    CallQuality, CallSnapshot, LegSnapshot, LegSummary, OneWaySnapshot, RtcpSnapshot,
    StreamSnapshot, StreamSummary,
};

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::fastpath::{FastPath, FastPathMode, KernelPath};
use crate::ports::PortPool;
use crate::sdp::{self, MediaKind};
use crate::{CallInfo, Event, Latch, MediaConfig, MediaError, SdpKind, Side};
use bind::{BoundLeg, release_leg, take_leg};
use metrics::{Counts, Folded, Walk};
use shared::{Cmd, LegInit, LegShared, PeerSpec};
use worker::WorkerCtx;

/// Control-side state of one leg.
#[derive(Clone)]
pub(crate) struct CtlLeg {
    /// Local RTP port (RTCP = +1).
    pub port: u16,
    /// The address SDP toward this leg's peer names (its family is the leg's socket's).
    pub ip: IpAddr,
    pub shared: Arc<LegShared>,
    /// From this side's newest SDP.
    pub peer: Option<PeerSpec>,
}

#[derive(Clone)]
pub(crate) struct CtlStream {
    pub kind: MediaKind,
    pub rtp: bool,
    pub clock_rate: u32,
    /// First payload type of the newest SDP that enabled the stream.
    pub payload_type: Option<u8>,
    pub legs: [CtlLeg; 2],
}

pub(crate) struct CtlSession {
    pub call_id: Arc<str>,
    pub slot: usize,
    pub inbound: bool,
    pub created: Instant,
    pub last_update: Instant,
    pub thread: usize,
    /// Indexed by m= line.
    pub streams: Vec<Option<CtlStream>>,
    /// Each side's media address (by [`Side::index`]), chosen by its peer's family when the
    /// session was created; every stream's leg of that side binds and is advertised there.
    pub sides: [crate::MediaAddress; 2],
}

/// Everything behind the control lock (never taken by relay threads). The SIP thread holds it
/// for one `update`/`delete`/`idle`; a reader (`/calls`, the scrape) for one chunk of at most
/// [`WALK_CHUNK`] sessions at a time, copying or summing, never building output under it
/// (docs/design/media.md, "The control path").
pub(crate) struct Control {
    /// By dialog id: ordered, so that a reader's walk can let go of the lock between chunks
    /// and carry on from the next id.
    pub sessions: BTreeMap<u64, CtlSession>,
    pub pool: PortPool,
    /// Streams (m= lines with sockets) of all sessions.
    pub streams: usize,
    pub folded: Vec<Folded>,
    pub last_scrape: Vec<Counts>,
    /// The metrics scrape walking the sessions now, if one is.
    pub walk: Option<Walk>,
    pub next_thread: usize,
}

/// Sessions a reader visits per hold of the control lock.
pub(crate) const WALK_CHUNK: usize = 128;

struct WorkerHandle {
    tx: Sender<Cmd>,
    wake: Arc<worker::Wake>,
}

/// The media relay: anchors RTP/RTCP of calls on local port pairs and relays them between
/// side A (PBX) and side B (trunk) on dedicated threads.
pub struct Relay {
    config: MediaConfig,
    control: Arc<Mutex<Control>>,
    workers: Vec<WorkerHandle>,
    joins: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    metrics: Arc<MediaMetrics>,
    epoch: Instant,
    /// Labels of the trunk slots, shared with the metrics; replaced by a policy reload.
    trunk_names: TrunkNames,
    fastpath: FastPathMode,
    kernel: Option<Arc<KernelPath>>,
}

/// Trunk names by slot − 1 (`""`: no trunk has that id now).
pub(crate) type TrunkNames = Arc<std::sync::RwLock<Vec<String>>>;

pub(crate) fn read_names(names: &TrunkNames) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
    names.read().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("threads", &self.workers.len())
            .finish()
    }
}

/// The `tg_socks` slot of relay thread `thread`'s socket for media address `addr` (0: the
/// configured address, 1: the alternate).
fn steer_slot(thread: usize, addr: usize) -> u32 {
    u32::try_from(thread * 2 + addr).unwrap_or(u32::MAX)
}

fn lock(m: &Mutex<Control>) -> MutexGuard<'_, Control> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Public = not private/loopback/link-local/CGNAT/ULA/unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (s & 0xffc0) == 0xfe80
                || (s & 0xfe00) == 0xfc00)
        }
    }
}

/// Each side's media address for a new session: the side `from` whose SDP creates it by that
/// SDP's first connection address (where it wants media; else its signaling address), the
/// other side by its signaling address.
fn sides_for(
    cfg: &MediaConfig,
    call: &CallInfo,
    from: Side,
    sdp: &sdp::Sdp,
) -> [crate::MediaAddress; 2] {
    let offered = sdp
        .media
        .iter()
        .find_map(|m| m.conn.filter(|ip| !ip.is_unspecified()));
    let pick = |side: Side| {
        let peer = call.peers[side.index()];
        cfg.address_for(if side == from { offered.or(peer) } else { peer })
    };
    [pick(Side::A), pick(Side::B)]
}

/// Ask a relay thread to fold the kernel's counters in (one call, or all) and wait for it,
/// bounded: the relay thread never takes the control lock, so this cannot deadlock.
fn fold_on(w: &WorkerHandle, call: Option<u64>) {
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    if w.tx.send(Cmd::Fold { call, done }).is_ok() {
        w.wake.now();
        let _ = wait.recv_timeout(Duration::from_millis(50));
    }
}

/// Load the kernel fast path as `media.fastpath` asks: `Ok(None)` for the userspace relay
/// (configured, or `auto` where the kernel path cannot load: said once, here).
fn load_fastpath(cfg: &MediaConfig, epoch: Instant) -> io::Result<Option<KernelPath>> {
    if cfg.fastpath == FastPath::Userspace {
        tracing::info!("media fast path: userspace (media.fastpath = \"userspace\")");
        return Ok(None);
    }
    let mut addrs = vec![cfg.bind];
    if let Some(alt) = cfg.alternate {
        addrs.push(alt.bind);
    }
    // One entry per leg at most; a leg holds one port pair.
    let pairs = (u32::from(cfg.port_max) + 1)
        .saturating_sub(u32::from(cfg.port_min))
        .div_ceil(2);
    let now = worker::nanos_since(epoch);
    match KernelPath::load(&addrs, cfg.port_min, cfg.port_max, pairs, now, true) {
        Ok(k) => {
            tracing::info!(
                interfaces = ?k.interfaces(),
                ports = %format_args!("{}-{}", cfg.port_min, cfg.port_max),
                "media fast path: kernel (BPF at tc ingress); latched RTP is forwarded in the kernel"
            );
            Ok(Some(k))
        }
        Err(e) if cfg.fastpath == FastPath::Auto => {
            tracing::warn!(
                reason = %e,
                "media fast path: userspace (media.fastpath = \"auto\" and the kernel path cannot load here)"
            );
            Ok(None)
        }
        Err(e) => Err(io::Error::other(format!(
            "media.fastpath = \"kernel\": {e}"
        ))),
    }
}

fn resolve_latch(cfg: Latch, ip: Option<IpAddr>) -> Latch {
    match cfg {
        Latch::Auto => match ip {
            Some(ip) if is_public(ip) => Latch::SdpIp,
            _ => Latch::Any,
        },
        m => m,
    }
}

pub(crate) fn media_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Image => "image",
        MediaKind::Application => "application",
        MediaKind::Text => "text",
        MediaKind::Message => "message",
        MediaKind::Other => "other",
    }
}

impl Relay {
    /// Spawn `config.threads` relay threads. `trunk_names[i]` labels metrics slot `i + 1`
    /// (`CallInfo.trunk == Some(i)`); slot 0 counts calls with no trunk, and calls of a trunk
    /// id beyond the list. Give room for trunks a reload may add (names `""`, not exported
    /// until [`Relay::set_trunk_names`] names them). `events` is called from relay threads
    /// and must not block.
    pub fn start(
        config: MediaConfig,
        trunk_names: Vec<String>,
        events: Box<dyn Fn(Event) + Send + Sync>,
    ) -> io::Result<Relay> {
        let slots = trunk_names.len() + 1;
        let control = Arc::new(Mutex::new(Control {
            sessions: BTreeMap::new(),
            pool: PortPool::new(config.port_min, config.port_max, config.quarantine),
            streams: 0,
            folded: vec![Folded::new(); slots],
            last_scrape: Vec::new(),
            walk: None,
            next_thread: 0,
        }));
        let timeouts: Arc<[AtomicU64]> = (0..slots).map(|_| AtomicU64::new(0)).collect();
        let counters: quality::QualityCounters = (0..slots)
            .map(|_| quality::SlotQuality::default())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut kernel = load_fastpath(&config, epoch)?;
        // Steered legs send through raw sockets (CAP_NET_RAW): without them, no steering.
        let mut raw = None;
        if let Some(k) = kernel.as_mut().filter(|k| k.steering()) {
            let mut fams = vec![config.bind];
            fams.extend(config.alternate.map(|a| a.bind));
            match raw::RawSend::open(
                fams.iter().any(|a| a.is_ipv4()),
                fams.iter().any(|a| a.is_ipv6()),
                (config.dscp & 0x3f) << 2,
            ) {
                Ok(r) => raw = Some(r),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "media fast path: no raw socket (needs CAP_NET_RAW); sk_lookup is off and each anchored leg binds its own sockets"
                    );
                    k.drop_steering();
                }
            }
        }
        let kernel = kernel.map(Arc::new);
        let fastpath = if kernel.is_some() {
            FastPathMode::Kernel
        } else {
            FastPathMode::Userspace
        };
        // sk_lookup mode: each relay thread receives every steered leg's datagrams on one
        // socket per media address, and userspace sends from anchored ports through raw
        // sockets — no socket per leg.
        let threads = config.threads.max(1);
        let mut addrs = vec![config.bind];
        if let Some(alt) = config.alternate {
            addrs.push(alt.bind);
        }
        let mut thread_socks: Vec<Vec<std::net::UdpSocket>> = Vec::new();
        if let Some(kp) = kernel.as_deref().filter(|k| k.steering()) {
            if threads * 2 > crate::fastpath::SOCKET_SLOTS as usize {
                return Err(io::Error::other(format!(
                    "media.threads = {threads}: the kernel fast path steers to at most {} threads",
                    crate::fastpath::SOCKET_SLOTS / 2
                )));
            }
            for n in 0..threads {
                let mut socks = Vec::new();
                for (i, &a) in addrs.iter().enumerate() {
                    let sock = bind::steered_socket(a, config.dscp)?;
                    kp.set_socket(steer_slot(n, i), &sock)
                        .map_err(|e| io::Error::other(format!("sk_lookup socket map: {e}")))?;
                    socks.push(sock);
                }
                thread_socks.push(socks);
            }
            tracing::info!(
                threads,
                "media fast path: sk_lookup — anchored legs hold no socket of their own"
            );
        }
        let ctx = Arc::new(WorkerCtx {
            raw,
            kernel: kernel.clone(),
            tos: (config.dscp & 0x3f) << 2,
            epoch,
            events: Arc::from(events),
            timeouts: timeouts.clone(),
            stop: stop.clone(),
            timeout: config.timeout,
            hold_timeout: config.hold_timeout,
            latch: config.latch,
            nice: config.nice,
            quality: config.quality,
            counters: counters.clone(),
            trunk_names: trunk_names.clone().into(),
        });
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        let mut thread_socks = thread_socks.into_iter();
        for n in 0..threads {
            let (tx, rx) = channel();
            let wake = Arc::new(worker::Wake::new()?);
            let socks = thread_socks.next().unwrap_or_default();
            match worker::spawn(n, ctx.clone(), rx, wake.clone(), socks) {
                Ok(j) => joins.push(j),
                Err(e) => {
                    stop.store(true, Relaxed);
                    for w in &workers {
                        let w: &WorkerHandle = w;
                        w.wake.force();
                    }
                    for j in joins {
                        let _ = j.join();
                    }
                    return Err(e);
                }
            }
            workers.push(WorkerHandle { tx, wake });
        }
        let trunk_names: TrunkNames = Arc::new(std::sync::RwLock::new(trunk_names));
        let metrics = Arc::new(MediaMetrics {
            control: control.clone(),
            scrape: Mutex::new(()),
            timeouts,
            quality: counters,
            trunk_names: trunk_names.clone(),
            fastpath,
            kernel: kernel.clone(),
        });
        Ok(Relay {
            config,
            control,
            workers,
            joins: Mutex::new(joins),
            stop,
            metrics,
            epoch,
            trunk_names,
            fastpath,
            kernel,
        })
    }

    /// The path latched RTP takes (`media.fastpath` resolved at start).
    pub fn fastpath(&self) -> FastPathMode {
        self.fastpath
    }

    /// The interfaces the kernel fast path is attached to (empty in userspace mode).
    pub fn fastpath_interfaces(&self) -> Vec<String> {
        self.kernel
            .as_ref()
            .map(|k| k.interfaces().to_vec())
            .unwrap_or_default()
    }

    /// The relay thread to wait for before `s`'s figures are final or its new SDP is in
    /// force: `Some` when one of its legs is in the kernel fast path now.
    fn kernel_thread(&self, s: &CtlSession) -> Option<usize> {
        self.kernel.as_ref()?;
        s.streams
            .iter()
            .flatten()
            .any(|st| st.legs.iter().any(|l| l.shared.in_kernel()))
            .then_some(s.thread)
    }

    /// Hold the relay threads' wake-ups after commands until [`Relay::release_wakes`]
    /// (`true`), or send each at once again (`false`, the default). The daemon's SIP thread
    /// holds them and releases once per input batch, so a batch of SDPs costs one wake-up
    /// per relay thread, not one per SDP. Commands whose wake-up is never released still run
    /// within the relay thread's check interval (≤ 1 s).
    pub fn hold_wakes(&self, on: bool) {
        for w in &self.workers {
            w.wake.hold(on);
        }
    }

    /// Send the wake-ups held since the last release.
    pub fn release_wakes(&self) {
        for w in &self.workers {
            w.wake.release();
        }
    }

    /// Have relay thread `thread` fold the kernel's counters of `call`'s legs in now (bounded
    /// wait; commands run in order, so everything queued before has been applied too): what a
    /// call record then reads misses nothing the kernel forwarded. Called without the control
    /// lock.
    fn fold_kernel(&self, call: u64, thread: Option<usize>) {
        if let Some(w) = thread.and_then(|t| self.workers.get(t)) {
            fold_on(w, Some(call));
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// An SDP body passing from side `from`: create/extend the session, record `from`'s
    /// peer per stream, and write into `out` the body rewritten to `config.advertised` and,
    /// per stream, the local RTP port of the other side's leg. On error nothing changes.
    pub fn update(
        &self,
        call: &CallInfo,
        from: Side,
        kind: SdpKind,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        let _ = kind; // offer and answer are handled alike: each names its sender's address.
        let parsed = sdp::parse(body).map_err(|e| MediaError::BadSdp(e.as_str()))?;
        let now = Instant::now();
        let cfg = &self.config;
        let mut guard = lock(&self.control);
        let ctl = &mut *guard;

        // 1. Bind what is missing (may fail: then release and leave everything as it was),
        //    within the descriptor budget: 4 sockets per new stream.
        let existing = ctl.sessions.get(&call.id);
        let sides = existing.map_or_else(|| sides_for(cfg, call, from, &parsed), |s| s.sides);
        let missing = parsed
            .media
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                m.port != 0
                    && !existing
                        .and_then(|s| s.streams.get(*i))
                        .is_some_and(Option::is_some)
            })
            .count();
        let steering = self.kernel.as_deref().filter(|k| k.steering());
        let in_use = ctl.pool.in_use().saturating_mul(2);
        // Steered legs hold no socket: the budget does not apply.
        if steering.is_none() && missing > 0 && in_use.saturating_add(missing * 4) > cfg.max_sockets
        {
            return Err(MediaError::BudgetExhausted {
                in_use,
                limit: cfg.max_sockets,
            });
        }
        // The relay thread that owns (or will own) the call: a steered leg's ports are
        // pointed at that thread's socket before the SDP naming them leaves.
        let thread = existing.map_or(ctl.next_thread % self.workers.len().max(1), |s| s.thread);
        let steer_for = |bind: IpAddr| {
            steering.map(|k| {
                (
                    k,
                    steer_slot(
                        thread,
                        usize::from(Some(bind) == cfg.alternate.map(|a| a.bind)),
                    ),
                )
            })
        };
        let mut fresh: SmallVec<[(usize, [BoundLeg; 2]); 4]> = SmallVec::new();
        let mut failed = None;
        for (i, m) in parsed.media.iter().enumerate() {
            let have = existing
                .and_then(|s| s.streams.get(i))
                .is_some_and(Option::is_some);
            if m.port == 0 || have {
                continue;
            }
            let a = match take_leg(
                &mut ctl.pool,
                now,
                cfg,
                sides[0].bind,
                steer_for(sides[0].bind),
            ) {
                Ok(a) => a,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            match take_leg(
                &mut ctl.pool,
                now,
                cfg,
                sides[1].bind,
                steer_for(sides[1].bind),
            ) {
                Ok(b) => fresh.push((i, [a, b])),
                Err(e) => {
                    release_leg(&mut ctl.pool, steering, sides[0].bind, a.0, now, false);
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for (_, legs) in &fresh {
                for (side, l) in legs.iter().enumerate() {
                    release_leg(&mut ctl.pool, steering, sides[side].bind, l.0, now, false);
                }
            }
            return Err(e);
        }

        // 2. Commit.
        let slot = call
            .trunk
            .map(|t| usize::from(t) + 1)
            .filter(|&s| s < ctl.folded.len())
            .unwrap_or(0);
        let is_new = !ctl.sessions.contains_key(&call.id);
        if is_new {
            ctl.next_thread = ctl.next_thread.wrapping_add(1);
        }
        let session = ctl.sessions.entry(call.id).or_insert_with(|| CtlSession {
            call_id: Arc::from(String::from_utf8_lossy(call.call_id)),
            slot,
            inbound: call.inbound,
            created: now,
            last_update: now,
            thread,
            streams: Vec::new(),
            sides,
        });
        session.last_update = now;
        let Some(w) = self.workers.get(session.thread) else {
            return Err(MediaError::Io(io::Error::other("relay stopped")));
        };
        let send = |cmd: Cmd| {
            let _ = w.tx.send(cmd);
        };
        send(Cmd::Touch {
            call: call.id,
            trunk: session.slot,
            at: self.nanos(now),
            call_id: is_new.then(|| session.call_id.clone()),
        });
        ctl.streams += fresh.len();
        for (i, legs) in fresh {
            let m = &parsed.media[i];
            let [(pa, socks_a), (pb, socks_b)] = legs;
            let sa = Arc::new(LegShared::default());
            let sb = Arc::new(LegShared::default());
            if session.streams.len() <= i {
                session.streams.resize_with(i + 1, || None);
            }
            session.streams[i] = Some(CtlStream {
                kind: m.kind,
                rtp: m.rtp,
                clock_rate: if m.clock_rate > 0 { m.clock_rate } else { 8000 },
                payload_type: m.payload_type,
                legs: [
                    CtlLeg {
                        port: pa,
                        ip: sides[0].advertised,
                        shared: sa.clone(),
                        peer: None,
                    },
                    CtlLeg {
                        port: pb,
                        ip: sides[1].advertised,
                        shared: sb.clone(),
                        peer: None,
                    },
                ],
            });
            send(Cmd::AddStream {
                call: call.id,
                index: i,
                rtp: m.rtp,
                legs: Box::new([
                    LegInit {
                        socks: socks_a,
                        local: SocketAddr::new(sides[0].bind, pa),
                        shared: sa,
                    },
                    LegInit {
                        socks: socks_b,
                        local: SocketAddr::new(sides[1].bind, pb),
                        shared: sb,
                    },
                ]),
            });
        }
        let mut ports: SmallVec<[Option<u16>; 4]> = SmallVec::new();
        for (i, m) in parsed.media.iter().enumerate() {
            let Some(Some(st)) = session.streams.get_mut(i) else {
                ports.push(None);
                continue;
            };
            let enabled = m.port != 0;
            let ip = m.conn.filter(|ip| !ip.is_unspecified());
            let rtp = ip.filter(|_| enabled).map(|ip| SocketAddr::new(ip, m.port));
            let rtcp = if m.rtcp_mux {
                rtp
            } else {
                rtp.map(|a| SocketAddr::new(a.ip(), m.rtcp_port.unwrap_or(m.port.wrapping_add(1))))
            };
            let leg = &mut st.legs[from.index()];
            let changed = leg.peer.is_none_or(|p| p.rtp != rtp || p.rtcp != rtcp);
            let peer = PeerSpec {
                rtp,
                rtcp,
                mux: m.rtcp_mux,
                latch: resolve_latch(cfg.latch, ip),
                hold: m.on_hold(),
                enabled,
                reset_latch: changed,
            };
            leg.peer = Some(peer);
            if enabled && m.clock_rate > 0 {
                st.clock_rate = m.clock_rate;
            }
            if enabled && m.payload_type.is_some() {
                st.payload_type = m.payload_type;
            }
            if enabled {
                st.kind = m.kind;
            }
            send(Cmd::SetPeer {
                call: call.id,
                index: i,
                side: from.index(),
                peer,
                clock_rate: m.clock_rate,
            });
            ports.push(if enabled {
                Some(st.legs[from.other().index()].port)
            } else {
                None
            });
        }
        // The body goes to the other side: it names that side's media address.
        let toward = session.sides[from.other().index()].advertised;
        w.wake.notify();
        let kernel = self.kernel_thread(session);
        drop(guard);
        // A leg in the kernel forwards on its own: wait (outside the lock) until the relay
        // thread has taken it back for the new SDP (commands run in order), so no datagram
        // after this update reaches the old destination.
        self.fold_kernel(call.id, kernel);
        sdp::rewrite(body, &parsed, toward, &ports, out);
        Ok(())
    }

    /// Forget the call: its relay thread closes the sockets, the port pairs go to
    /// quarantine, and the final per-stream figures are folded into the per-trunk metrics.
    /// Unknown id: no-op.
    pub fn delete(&self, call: u64) {
        self.delete_with_summary(call);
    }

    /// [`Relay::delete`], returning what each of the call's streams carried (for the call
    /// record). `None`: unknown id.
    pub fn delete_with_summary(&self, call: u64) -> Option<Vec<StreamSummary>> {
        // The kernel's share is folded in first, without the lock (the same dialog is only
        // ever updated or deleted by one SIP thread, so nothing comes in between).
        let kernel = self.kernel_thread(lock(&self.control).sessions.get(&call)?);
        self.fold_kernel(call, kernel);
        let now = Instant::now();
        let mut guard = lock(&self.control);
        let ctl = &mut *guard;
        let s = ctl.sessions.remove(&call)?;
        ctl.streams = ctl
            .streams
            .saturating_sub(s.streams.iter().flatten().count());
        let summary = snapshot::summary(&s, now);
        // A scrape walking the sessions that has not reached this one yet counts it at its
        // final figures (it read the folded totals before this fold).
        if let Some(w) = ctl.walk.as_mut().filter(|w| call >= w.next)
            && let Some(late) = w.late.get_mut(s.slot)
        {
            for st in s.streams.iter().flatten() {
                late.add(st);
            }
        }
        if let Some(f) = ctl.folded.get_mut(s.slot) {
            for st in s.streams.iter().flatten() {
                f.counts.add(st);
                for side in 0..2 {
                    let rx = &*st.legs[side].shared;
                    if st.rtp {
                        let expected = rx.expected.load(Relaxed);
                        if expected > 0 {
                            f.loss_ratio
                                .observe(rx.lost.load(Relaxed) as f64 / expected as f64);
                        }
                        if rx.received_rtp.load(Relaxed) >= 2 {
                            f.jitter.observe(rx.jitter_nanos.load(Relaxed) as f64 / 1e9);
                        }
                    }
                }
            }
        }
        let steering = self.kernel.as_deref().filter(|k| k.steering());
        for st in s.streams.iter().flatten() {
            for (side, l) in st.legs.iter().enumerate() {
                // Never reached by a datagram: nothing late can follow.
                let unused = l.shared.rx_packets.load(Relaxed) == 0;
                release_leg(
                    &mut ctl.pool,
                    steering,
                    s.sides[side].bind,
                    l.port,
                    now,
                    unused,
                );
            }
        }
        if let Some(w) = self.workers.get(s.thread) {
            let _ = w.tx.send(Cmd::Delete { call });
            w.wake.notify();
        }
        Some(summary)
    }

    /// The call failed over to another trunk before the answer: its media (counters, MOS,
    /// one-way flags, dead-call timeouts) is charged to `trunk` from now on. Unknown id: no-op.
    pub fn moved(&self, call: u64, trunk: Option<u16>) {
        let mut ctl = lock(&self.control);
        let slot = trunk
            .map(|t| usize::from(t) + 1)
            .filter(|&s| s < ctl.folded.len())
            .unwrap_or(0);
        let Some(s) = ctl.sessions.get_mut(&call) else {
            return;
        };
        s.slot = slot;
        if let Some(w) = self.workers.get(s.thread) {
            let _ = w.tx.send(Cmd::Trunk { call, trunk: slot });
            w.wake.notify();
        }
    }

    /// The call was answered (its 2xx relayed): the one-way audio check starts now. Unknown
    /// id (a call without anchored media): no-op.
    pub fn answered(&self, call: u64) {
        let at = self.nanos(Instant::now());
        let ctl = lock(&self.control);
        let Some(s) = ctl.sessions.get(&call) else {
            return;
        };
        if let Some(q) = self.metrics.quality.get(s.slot) {
            q.answered.fetch_add(1, Relaxed);
        }
        let Some(w) = self.workers.get(s.thread) else {
            return;
        };
        let _ = w.tx.send(Cmd::Answered { call, at });
        w.wake.notify();
    }

    /// How long call `call` has been without media: since the newest packet on any leg, or
    /// its newest `update()` if later. `None`: no such session. The SIP side checks this
    /// before acting on a (possibly stale) [`Event::Timeout`] and before forgetting a call.
    pub fn idle(&self, call: u64) -> Option<Duration> {
        let now = Instant::now();
        let ctl = lock(&self.control);
        let s = ctl.sessions.get(&call)?;
        Some(snapshot::idle(s, now, self.nanos(now)))
    }

    /// Snapshot of every live call for the admin API (`GET /calls`), ordered by id.
    ///
    /// The sessions are copied [`WALK_CHUNK`] at a time under the control lock (values and
    /// `Arc`s to the legs' counters) and the snapshots built after letting go of it, so the
    /// SIP thread never waits for more than one chunk's copy. A call created or deleted
    /// during the walk may be missing from the result or be in it.
    pub fn calls(&self) -> Vec<CallSnapshot> {
        if self.kernel.is_some() {
            // What the kernel forwarded since the relay threads' last tick, folded in.
            for w in &self.workers {
                fold_on(w, None);
            }
        }
        let names = read_names(&self.trunk_names).clone();
        let mut calls = Vec::new();
        let mut views = Vec::with_capacity(WALK_CHUNK);
        let mut next = Some(0);
        while let Some(from) = next {
            views.clear();
            next =
                snapshot::copy_views(&lock(&self.control).sessions, from, WALK_CHUNK, &mut views);
            // As in the metrics walk: a waiting SIP thread gets the lock before the next chunk.
            std::thread::yield_now();
            let now = Instant::now();
            let now_n = self.nanos(now);
            calls.extend(
                views
                    .drain(..)
                    .map(|v| snapshot::call(&v, &names, now, now_n)),
            );
        }
        calls
    }

    /// Shared metrics, read by the Prometheus collector at scrape time.
    /// Sockets held by live streams (2 per bound port pair), as counted against
    /// `MediaConfig::max_sockets`.
    pub fn sockets_in_use(&self) -> usize {
        if self.steered() {
            // sk_lookup mode: legs hold no sockets (the threads' few are fixed).
            return 0;
        }
        lock(&self.control).pool.in_use().saturating_mul(2)
    }

    /// sk_lookup mode: anchored legs hold no socket of their own, so the descriptor count
    /// does not depend on the number of calls.
    pub fn steered(&self) -> bool {
        self.kernel.as_ref().is_some_and(|k| k.steering())
    }

    pub fn metrics(&self) -> Arc<MediaMetrics> {
        self.metrics.clone()
    }

    /// Stop the relay threads and close every socket (also done on drop). Later `update`s
    /// still bind ports but nothing is relayed.
    pub fn shutdown(&self) {
        self.stop.store(true, Relaxed);
        for w in &self.workers {
            w.wake.force();
        }
        let joins = match self.joins.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(_) => Vec::new(),
        };
        for j in joins {
            let _ = j.join();
        }
        let ids: Vec<u64> = lock(&self.control).sessions.keys().copied().collect();
        for id in ids {
            self.delete(id);
        }
    }

    /// New labels for the trunk slots (a policy reload added or removed trunks): `names[i]`
    /// for slot `i + 1`, `""` for a slot no trunk has. Slots beyond those given at start stay
    /// unnamed.
    pub fn set_trunk_names(&self, names: Vec<String>) {
        let mut current = self.trunk_names.write().unwrap_or_else(|e| e.into_inner());
        let slots = current.len();
        *current = names;
        current.resize(slots, String::new());
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}
