//! The kernel fast path: the BPF program of `bpf/fastpath.bpf.c` (built by `build.rs`,
//! embedded here), attached at tc ingress of the media interfaces, and the hash map through
//! which the relay threads install, read back and remove forwarding entries of latched
//! streams. The relay keeps the judgement (`relay/worker/kernel.rs`); this module only
//! loads, attaches and talks to the maps.
//!
//! Loader: `aya` (pure Rust), not `libbpf-rs`. aya loads the clang-built ELF object, creates
//! its BTF-described maps and attaches through TCX links with no C library linked into the
//! binary (libbpf-rs builds and links C libbpf, libelf and zlib through `libbpf-sys`); its
//! licence is MIT/Apache-2.0 like ours (libbpf is LGPL-2.1/BSD-2). aya 0.14 is the newest
//! release that builds with our toolchain (0.16 needs rustc 1.98).
//!
//! No stale forwarding after the process dies: the program is attached only through TCX
//! links (kernel ≥ 6.6), never as a netlink `cls_bpf` filter (which outlives its creator).
//! Nothing is pinned. The links, the program and the maps are held only by this process's
//! descriptors, so when the process exits — cleanly or killed — the kernel closes them,
//! detaches the program and frees the map with every entry in it. On kernels without TCX the
//! kernel path does not load (`auto` runs the userspace relay).

mod entry;

pub(crate) use entry::{Counters, Forward, is_v4, key};

use std::net::IpAddr;
use std::sync::Mutex;

use aya::maps::{HashMap, MapData, PerCpuArray, SockMap};
use aya::programs::SkLookup;
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use entry::{EntryBytes, KeyBytes};

/// The BPF object built from `bpf/fastpath.bpf.c` (empty when clang was missing at build).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));

const PROGRAM: &str = "tg_media_ingress";
const FWD_MAP: &str = "tg_fwd";
const OUTCOMES_MAP: &str = "tg_outcomes";
const LOOKUP_PROGRAM: &str = "tg_media_lookup";
const PORTS_MAP: &str = "tg_ports";
const SOCKS_MAP: &str = "tg_socks";
/// `tg_socks` entries (`bpf/fastpath.bpf.c`): 2 media addresses per relay thread.
pub(crate) const SOCKET_SLOTS: u32 = 256;

/// `media.fastpath`: where the RTP of latched streams is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastPath {
    /// The kernel path when it loads here, else the userspace relay (said once at start).
    #[default]
    Auto,
    /// The kernel path, or the relay does not start.
    Kernel,
    /// Every datagram through the relay threads' sockets.
    Userspace,
}

impl FastPath {
    /// `"auto"`, `"kernel"`, `"userspace"`.
    pub fn parse(s: &str) -> Option<FastPath> {
        match s {
            "auto" => Some(FastPath::Auto),
            "kernel" => Some(FastPath::Kernel),
            "userspace" => Some(FastPath::Userspace),
            _ => None,
        }
    }

    /// For tests: `TRUNKGATE_MEDIA_FASTPATH` (`auto`/`kernel`/`userspace`), else userspace,
    /// so the same test runs in either mode.
    pub fn from_test_env() -> FastPath {
        std::env::var("TRUNKGATE_MEDIA_FASTPATH")
            .ok()
            .and_then(|s| FastPath::parse(&s))
            .unwrap_or(FastPath::Userspace)
    }
}

/// The path in use (the `mode` label of `trunkgate_media_fastpath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPathMode {
    Kernel,
    Userspace,
}

impl FastPathMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FastPathMode::Kernel => "kernel",
            FastPathMode::Userspace => "userspace",
        }
    }
}

/// Why the kernel path is not available.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error(
        "the BPF program was not built (clang was missing or failed when trunkgate was compiled: see the build warning; install Debian's clang and libbpf-dev and rebuild)"
    )]
    NotBuilt,
    #[error(
        "media.address {0} is unspecified: the kernel fast path needs the specific address media is bound to"
    )]
    Unspecified(IpAddr),
    #[error("no network interface has media address {0}")]
    NoInterface(IpAddr),
    #[error("loading the BPF program: {0} (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Load(String),
    #[error(
        "attaching the BPF program at tc ingress of {interface}: {error} (TCX links need Linux 6.6 or later)"
    )]
    Attach { interface: String, error: String },
    #[error("interfaces: {0}")]
    Interfaces(String),
}

/// The loaded program, its TCX links and maps. Dropping it detaches the program and frees
/// the maps (with every entry).
pub(crate) struct KernelPath {
    /// Owns the program and its links.
    _ebpf: Ebpf,
    fwd: Mutex<HashMap<MapData, KeyBytes, EntryBytes>>,
    outcomes: PerCpuArray<MapData, u64>,
    interfaces: Vec<String>,
    /// The `sk_lookup` steering of anchored ports to the relay threads' sockets, when it
    /// loaded (`None`: every leg binds its own sockets).
    steering: Option<Steering>,
    /// CLOCK_MONOTONIC (the program's `bpf_ktime_get_ns`) minus the relay's own nanosecond
    /// clock, both at load.
    clock_offset: u64,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("interfaces", &self.interfaces)
            .finish()
    }
}

/// The `sk_lookup` program's maps: anchored (family, address, port) → socket slot, and the
/// slots' sockets.
struct Steering {
    ports: Mutex<HashMap<MapData, KeyBytes, u32>>,
    socks: Mutex<SockMap<MapData>>,
}

/// Kernel outcome counters, by the program's `enum tg_outcome`.
pub const OUTCOMES: [&str; 9] = [
    "forwarded",
    "source",
    "rtcp",
    "ssrc",
    "sequence",
    "route",
    "other",
    "steered",
    "steer_conflict",
];

fn monotonic_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The interfaces owning the media addresses: the loopback interface for loopback
/// addresses, else the one carrying the address.
fn interfaces_for(addrs: &[IpAddr]) -> Result<Vec<String>, FastPathError> {
    use nix::net::if_::InterfaceFlags;
    let ifs: Vec<_> = nix::ifaddrs::getifaddrs()
        .map_err(|e| FastPathError::Interfaces(e.to_string()))?
        .collect();
    let mut out: Vec<String> = Vec::new();
    for &ip in addrs {
        let ip = ip.to_canonical();
        if ip.is_unspecified() {
            return Err(FastPathError::Unspecified(ip));
        }
        let found = ifs.iter().find(|i| {
            if ip.is_loopback() {
                return i.flags.contains(InterfaceFlags::IFF_LOOPBACK);
            }
            let have = i.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            });
            have == Some(ip)
        });
        let Some(found) = found else {
            return Err(FastPathError::NoInterface(ip));
        };
        if !out.contains(&found.interface_name) {
            out.push(found.interface_name.clone());
        }
    }
    Ok(out)
}

impl KernelPath {
    /// Load the program for ports `port_min..=port_max` with room for `capacity` entries,
    /// and attach it at tc ingress of the interfaces owning `addrs`. `relay_now` is the
    /// relay's own clock (ns) now.
    pub(crate) fn load(
        addrs: &[IpAddr],
        port_min: u16,
        port_max: u16,
        capacity: u32,
        relay_now: u64,
        steer: bool,
    ) -> Result<KernelPath, FastPathError> {
        if OBJECT.is_empty() {
            return Err(FastPathError::NotBuilt);
        }
        let interfaces = interfaces_for(addrs)?;
        let mut ebpf = EbpfLoader::new()
            .override_global("tg_port_min", &port_min, true)
            .override_global("tg_port_max", &port_max, true)
            .map_max_entries(FWD_MAP, capacity.max(16))
            .map_max_entries(PORTS_MAP, (capacity.saturating_mul(2)).max(16))
            .load(OBJECT)
            .map_err(|e| FastPathError::Load(e.to_string()))?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| FastPathError::Load(format!("no program {PROGRAM} in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| FastPathError::Load(e.to_string()))?;
        program
            .load()
            .map_err(|e| FastPathError::Load(verifier_text(&e)))?;
        for interface in &interfaces {
            // TCX only (see the module doc): never a netlink filter that would outlive us.
            program
                .attach_with_options(
                    interface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|e| FastPathError::Attach {
                    interface: interface.clone(),
                    error: e.to_string(),
                })?;
        }
        let fwd = ebpf
            .take_map(FWD_MAP)
            .ok_or_else(|| FastPathError::Load(format!("no map {FWD_MAP}")))
            .and_then(|m| HashMap::try_from(m).map_err(|e| FastPathError::Load(e.to_string())))?;
        let outcomes = ebpf
            .take_map(OUTCOMES_MAP)
            .ok_or_else(|| FastPathError::Load(format!("no map {OUTCOMES_MAP}")))
            .and_then(|m| {
                PerCpuArray::try_from(m).map_err(|e| FastPathError::Load(e.to_string()))
            })?;
        let steering = if steer {
            match load_steering(&mut ebpf) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(
                        reason = %e,
                        "media fast path: sk_lookup did not load; each anchored leg binds its own sockets"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(KernelPath {
            _ebpf: ebpf,
            steering,
            fwd: Mutex::new(fwd),
            outcomes,
            interfaces,
            clock_offset: monotonic_ns().wrapping_sub(relay_now),
        })
    }

    pub(crate) fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<MapData, KeyBytes, EntryBytes>> {
        self.fwd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Install (or replace) the entry for datagrams to `key`.
    pub(crate) fn install(&self, key: &KeyBytes, f: &Forward) -> Result<(), String> {
        self.map()
            .insert(key, f.encode(), 0)
            .map_err(|e| e.to_string())
    }

    /// The entry's counters now (`None`: no such entry).
    pub(crate) fn read(&self, key: &KeyBytes) -> Option<Counters> {
        self.map().get(key, 0).ok().map(|e| Counters::decode(&e))
    }

    pub(crate) fn remove(&self, key: &KeyBytes) {
        let _ = self.map().remove(key);
    }

    /// Kernel clock (ns) → the relay's clock.
    pub(crate) fn relay_nanos(&self, kernel_ns: u64) -> u64 {
        kernel_ns.wrapping_sub(self.clock_offset)
    }

    /// Relay clock → kernel clock.
    pub(crate) fn kernel_nanos(&self, relay_ns: u64) -> u64 {
        relay_ns.wrapping_add(self.clock_offset)
    }

    /// Give the steering up (before any port is steered): the program stays attached but
    /// with nothing in its maps it selects no socket.
    pub(crate) fn drop_steering(&mut self) {
        self.steering = None;
    }

    /// Is the `sk_lookup` steering in use (no socket per leg)?
    pub(crate) fn steering(&self) -> bool {
        self.steering.is_some()
    }

    /// Put `socket` into steering slot `slot` (a relay thread's socket for one media address).
    pub(crate) fn set_socket(&self, slot: u32, socket: &std::net::UdpSocket) -> Result<(), String> {
        let Some(s) = &self.steering else {
            return Err("no sk_lookup steering".into());
        };
        s.socks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(slot, socket, 0)
            .map_err(|e| e.to_string())
    }

    /// Datagrams to `local` (an anchored address and port) go to the socket in `slot`.
    pub(crate) fn steer(&self, local: std::net::SocketAddr, slot: u32) -> Result<(), String> {
        let Some(s) = &self.steering else {
            return Err("no sk_lookup steering".into());
        };
        s.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(local), slot, 0)
            .map_err(|e| e.to_string())
    }

    /// Stop steering `local` (its port was released): datagrams to it find no socket.
    pub(crate) fn unsteer(&self, local: std::net::SocketAddr) {
        if let Some(s) = &self.steering {
            let _ = s
                .ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key(local));
        }
    }

    /// Datagrams that matched an entry, by outcome ([`OUTCOMES`]), summed over CPUs.
    pub(crate) fn outcomes(&self) -> [u64; OUTCOMES.len()] {
        let mut out = [0u64; OUTCOMES.len()];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.outcomes.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

/// Load the `sk_lookup` program, attach it to this process's network namespace (a BPF link:
/// gone with the process) and take its maps.
fn load_steering(ebpf: &mut Ebpf) -> Result<Steering, String> {
    let program: &mut SkLookup = ebpf
        .program_mut(LOOKUP_PROGRAM)
        .ok_or_else(|| format!("no program {LOOKUP_PROGRAM} in the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    program.load().map_err(|e| verifier_text(&e))?;
    let netns = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("opening /proc/self/ns/net: {e}"))?;
    program
        .attach(netns)
        .map_err(|e| format!("attaching sk_lookup: {e}"))?;
    let ports = ebpf
        .take_map(PORTS_MAP)
        .ok_or_else(|| format!("no map {PORTS_MAP}"))
        .and_then(|m| HashMap::try_from(m).map_err(|e| e.to_string()))?;
    let socks = ebpf
        .take_map(SOCKS_MAP)
        .ok_or_else(|| format!("no map {SOCKS_MAP}"))
        .and_then(|m| SockMap::try_from(m).map_err(|e| e.to_string()))?;
    Ok(Steering {
        ports: Mutex::new(ports),
        socks: Mutex::new(socks),
    })
}

/// The verifier's log is in the error's source chain; keep it for the operator.
fn verifier_text(e: &aya::programs::ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
