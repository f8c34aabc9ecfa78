//! State shared between the control side (`update`/`delete`/`calls`/scrape) and the relay
//! threads, plus the commands the control side sends to a relay thread.
//!
//! Every atomic here has exactly one writer — the relay thread that owns the stream — and
//! is written with `Relaxed` stores (no read-modify-write, no contention): the control side
//! only reads them, at `calls()`/scrape/delete time.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::Latch;

/// Counters and figures of one leg (one side of one stream), written by its relay thread.
#[derive(Debug, Default)]
pub(crate) struct LegShared {
    /// Datagrams (RTP + RTCP) accepted from this side's peer.
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// The RTCP subset of `rx_packets`.
    pub rtcp_rx_packets: AtomicU64,
    /// Datagrams sent to this side's peer (relayed from the other side).
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Datagrams that arrived on this leg and were not relayed: wrong source (spoofed,
    /// late, not the SDP IP), no destination known on the other side, or a failed send.
    pub dropped: AtomicU64,
    /// RTP receive statistics of the packets from this side's peer (RFC 3550 A.3/A.8).
    pub lost: AtomicU64,
    pub expected: AtomicU64,
    pub received_rtp: AtomicU64,
    /// Interarrival jitter, in nanoseconds.
    pub jitter_nanos: AtomicU64,
    /// Newest accepted packet, nanoseconds since the relay's epoch + 1 (0 = never).
    pub last_rx: AtomicU64,
    /// The first accepted packet, the same clock (0 = never): with `last_rx`, how long media
    /// flowed (call records' bandwidth).
    pub first_rx: AtomicU64,
    /// Newest RTCP report block from this side's peer: bit 63 = valid, bits 32..40 fraction
    /// lost (0–255), bits 0..32 cumulative lost (i32 bits).
    pub rtcp_loss: AtomicU64,
    /// Its jitter field, in RTP timestamp units.
    pub rtcp_jitter: AtomicU64,
    /// Estimated MOS × 1000 of the newest finished interval of this side's audio (0: none),
    /// and of the call so far; written at the relay thread's quality ticks.
    pub mos_milli: AtomicU64,
    pub mos_call_milli: AtomicU64,
    /// Round trip relay → this side's peer → relay from RTCP, µs + 1 (0: unknown).
    pub rtt_micros: AtomicU64,
    /// The call's one-way flag (`quality::Missing::pack`), 0 = none.
    pub missing: AtomicU64,
    /// Where this side's peer was latched (written once per latch, never per packet).
    pub latched: Mutex<Option<SocketAddr>>,
    /// The subset of `rx_packets` the kernel fast path forwarded (folded in by the relay
    /// thread at its ticks and before a delete).
    pub kernel_packets: AtomicU64,
    /// This leg has a kernel fast path entry now.
    pub in_kernel: AtomicBool,
}

pub(crate) const RTCP_VALID: u64 = 1 << 63;

impl LegShared {
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched.lock().map(|g| *g).unwrap_or(None)
    }
    pub fn set_in_kernel(&self, on: bool) {
        self.in_kernel.store(on, Relaxed);
    }
    pub fn in_kernel(&self) -> bool {
        self.in_kernel.load(Relaxed)
    }
    /// Publish a leg's RTP receive statistics.
    pub fn store_rtp_stats(&self, s: &crate::stats::ReceiveStats) {
        self.lost.store(s.lost(), Relaxed);
        self.expected.store(s.expected(), Relaxed);
        self.received_rtp.store(s.received(), Relaxed);
        self.jitter_nanos
            .store((s.jitter_seconds() * 1e9) as u64, Relaxed);
    }
    pub fn set_latched(&self, addr: Option<SocketAddr>) {
        if let Ok(mut g) = self.latched.lock() {
            *g = addr;
        }
    }
}

/// Single-writer increment: a load and a store, no locked instruction.
#[inline]
pub(crate) fn bump(v: &AtomicU64, by: u64) {
    v.store(v.load(Relaxed).wrapping_add(by), Relaxed);
}

/// A leg's resolved peer, as learned from its side's SDP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSpec {
    /// RTP destination (None: unknown, port 0 or hold address 0.0.0.0).
    pub rtp: Option<SocketAddr>,
    /// RTCP destination (a=rtcp or port + 1; equal to `rtp` with rtcp-mux).
    pub rtcp: Option<SocketAddr>,
    pub mux: bool,
    /// The IP of the SDP's c= (also for hold 0.0.0.0 it is None).
    pub latch: Latch,
    /// The side's SDP put the stream on hold (sendonly/recvonly/inactive/0.0.0.0).
    pub hold: bool,
    /// m= port != 0.
    pub enabled: bool,
    /// The address or port changed: forget the latched source.
    pub reset_latch: bool,
}

/// A leg's sockets, bound by `update()` on the caller's thread (`None` in the `sk_lookup`
/// mode: its datagrams reach the thread's shared socket), and its local RTP address.
#[derive(Debug)]
pub(crate) struct LegInit {
    pub socks: Option<(UdpSocket, UdpSocket)>,
    pub local: SocketAddr,
    pub shared: Arc<LegShared>,
}

/// Commands from the control side to one relay thread (std mpsc + eventfd wake-up).
#[derive(Debug)]
pub(crate) enum Cmd {
    AddStream {
        call: u64,
        index: usize,
        rtp: bool,
        legs: Box<[LegInit; 2]>,
    },
    SetPeer {
        call: u64,
        index: usize,
        side: usize,
        peer: PeerSpec,
        clock_rate: u32,
    },
    /// An `update()` happened at this time (creates the thread's session on first use and
    /// restarts its idle clock). `trunk` = metrics slot.
    Touch {
        call: u64,
        trunk: usize,
        at: u64,
        /// The SIP Call-ID, with the session's first update (for log lines).
        call_id: Option<Arc<str>>,
    },
    /// The call moved to another trunk's metrics slot (failover before the answer).
    Trunk {
        call: u64,
        trunk: usize,
    },
    /// The call was answered at `at`: the one-way check starts.
    Answered {
        call: u64,
        at: u64,
    },
    Delete {
        call: u64,
    },
    /// Fold the kernel fast path's counters of the call's legs into their figures now, then
    /// answer (before a delete reads them for the call record).
    Fold {
        /// `None`: every call of the thread.
        call: Option<u64>,
        done: std::sync::mpsc::SyncSender<()>,
    },
}
