//! `GET /calls`: the JSON shape of a live call, and the copy of a session a reader takes
//! under the control lock to build it from afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::quality::Missing;
use super::shared::{LegShared, RTCP_VALID};
use super::{CtlLeg, CtlSession, CtlStream, media_name};

/// What `/calls` needs of one session, copied under the control lock (plain values and
/// `Arc` handles to the legs' counters: no string copied, nothing formatted) so that the
/// snapshot is built after the lock is released.
pub(crate) struct SessionView {
    id: u64,
    call_id: Arc<str>,
    slot: usize,
    inbound: bool,
    created: Instant,
    last_update: Instant,
    /// (m= index, stream)
    streams: SmallVec<[(usize, CtlStream); 1]>,
}

/// Copy at most `max` sessions with ids from `from` on into `out` (ascending). Returns the
/// id to continue from, `None` when the walk has reached the end.
pub(crate) fn copy_views(
    sessions: &BTreeMap<u64, CtlSession>,
    from: u64,
    max: usize,
    out: &mut Vec<SessionView>,
) -> Option<u64> {
    let mut last = None;
    for (&id, s) in sessions.range(from..).take(max) {
        out.push(SessionView {
            id,
            call_id: s.call_id.clone(),
            slot: s.slot,
            inbound: s.inbound,
            created: s.created,
            last_update: s.last_update,
            streams: s
                .streams
                .iter()
                .enumerate()
                .filter_map(|(i, st)| st.as_ref().map(|st| (i, st.clone())))
                .collect(),
        });
        last = Some(id);
    }
    match last {
        Some(id) if out.len() >= max => id.checked_add(1),
        _ => None,
    }
}

/// One anchored call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallSnapshot {
    /// The proxy's dialog id ([`crate::CallInfo::id`]).
    pub id: u64,
    pub call_id: String,
    /// Trunk name, `null` when the call touches no trunk.
    pub trunk: Option<String>,
    /// `"inbound"` (from a trunk) or `"outbound"` (from the PBX).
    pub direction: &'static str,
    pub age_secs: f64,
    /// Since the newest packet on any leg, or the newest `update()` if later.
    pub idle_secs: f64,
    /// Every active stream is on hold from either side's SDP.
    pub on_hold: bool,
    /// One-way flag and the lowest live MOS of the call's legs.
    pub quality: CallQuality,
    pub streams: Vec<StreamSnapshot>,
}

/// The call's quality at a glance (details per leg in the streams).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallQuality {
    /// Lowest estimated MOS of the newest finished interval over every leg (`null`: no
    /// interval finished yet).
    pub mos: Option<f64>,
    /// Set while media flows in one direction only, or in none (`null`: both ways, or not
    /// yet answered, or on hold).
    pub one_way: Option<OneWaySnapshot>,
}

/// A one-way flag.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OneWaySnapshot {
    /// `"one_way"` or `"no_media"`.
    pub reason: &'static str,
    /// The missing direction: `"pbx_to_trunk"`, `"trunk_to_pbx"` or `"both"`.
    pub missing: &'static str,
    /// How long that direction has been silent (since answer, hold end or newest SDP if
    /// later than its newest packet).
    pub silent_secs: f64,
}

/// One m= line with sockets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamSnapshot {
    /// m= line index in the SDP.
    pub index: usize,
    /// `"audio"`, `"video"`, `"image"`, `"application"`, `"text"`, `"message"`, `"other"`.
    pub media: &'static str,
    /// Side A (PBX).
    pub a: LegSnapshot,
    /// Side B (trunk).
    pub b: LegSnapshot,
}

/// One leg: what that side's peer sends to us (`rx_*`, `lost`, `jitter_ms`, `rtcp`) and what
/// we send to it (`tx_*`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegSnapshot {
    /// Advertised address + the leg's RTP port: where this side's peer sends.
    pub local: SocketAddr,
    pub local_rtcp: SocketAddr,
    /// RTP address from this side's newest SDP (`null`: none, port 0 or hold 0.0.0.0).
    pub sdp_peer: Option<SocketAddr>,
    /// Source address learned from this side's RTP (`null`: not latched).
    pub latched_peer: Option<SocketAddr>,
    /// Datagrams (RTP + RTCP) accepted from the peer.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// RTP packets lost on the way from the peer (sequence gaps).
    pub lost: u64,
    /// RFC 3550 interarrival jitter of the peer's RTP, in ms.
    pub jitter_ms: f64,
    /// The RTCP subset of `rx_packets`.
    pub rtcp_rx_packets: u64,
    /// Datagrams sent to the peer.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Datagrams from this side not relayed (wrong source, no destination, send error).
    pub dropped: u64,
    /// The subset of `rx_packets` the kernel fast path forwarded (the rest went through the
    /// relay thread's socket).
    pub kernel_packets: u64,
    /// This side's RTP is forwarded in the kernel now.
    pub in_kernel: bool,
    /// The peer's newest RTCP report block (about what it receives), `null` when none.
    pub rtcp: Option<RtcpSnapshot>,
    /// Estimated MOS of this side's audio (what the other side hears, as far as the relay
    /// sees it) over the newest finished interval, and over the call so far (`null`: none).
    pub mos: Option<f64>,
    pub mos_call: Option<f64>,
    /// Round trip relay → this side's peer → relay from its RTCP reports, ms (`null`: no
    /// RTCP round trip known; the MOS then uses `media.assumed_delay`).
    pub rtt_ms: Option<f64>,
}

/// Figures of an RTCP report block.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RtcpSnapshot {
    /// Fraction lost since the previous report, 0.0–1.0.
    pub fraction_lost: f64,
    pub cumulative_lost: i64,
    /// Jitter converted with the stream's clock rate, in ms.
    pub jitter_ms: f64,
}

fn leg(l: &CtlLeg, clock_rate: u32) -> LegSnapshot {
    let s: &LegShared = &l.shared;
    let get = |v: &std::sync::atomic::AtomicU64| v.load(Relaxed);
    let loss = get(&s.rtcp_loss);
    let rtcp = (loss & RTCP_VALID != 0).then(|| RtcpSnapshot {
        fraction_lost: ((loss >> 32) & 0xff) as f64 / 256.0,
        cumulative_lost: i64::from(loss as u32 as i32),
        jitter_ms: get(&s.rtcp_jitter) as f64 * 1000.0 / f64::from(clock_rate.max(1)),
    });
    LegSnapshot {
        local: SocketAddr::new(l.ip, l.port),
        local_rtcp: SocketAddr::new(l.ip, l.port.wrapping_add(1)),
        sdp_peer: l.peer.and_then(|p| if p.enabled { p.rtp } else { None }),
        latched_peer: s.latched(),
        rx_packets: get(&s.rx_packets),
        rx_bytes: get(&s.rx_bytes),
        lost: get(&s.lost),
        jitter_ms: get(&s.jitter_nanos) as f64 / 1e6,
        rtcp_rx_packets: get(&s.rtcp_rx_packets),
        tx_packets: get(&s.tx_packets),
        tx_bytes: get(&s.tx_bytes),
        dropped: get(&s.dropped),
        kernel_packets: get(&s.kernel_packets),
        in_kernel: s.in_kernel(),
        rtcp,
        mos: milli(get(&s.mos_milli)),
        mos_call: milli(get(&s.mos_call_milli)),
        rtt_ms: get(&s.rtt_micros)
            .checked_sub(1)
            .map(|us| us as f64 / 1000.0),
    }
}

fn milli(v: u64) -> Option<f64> {
    (v > 0).then(|| v as f64 / 1000.0)
}

/// The session's one-way flag (written to the legs of its first active RTP stream).
fn one_way<'a>(streams: impl Iterator<Item = &'a CtlStream>, now_n: u64) -> Option<OneWaySnapshot> {
    let flag = streams
        .flat_map(|st| st.legs.iter())
        .find_map(|l| Missing::unpack(l.shared.missing.load(Relaxed)))?;
    let (missing, since) = flag;
    Some(OneWaySnapshot {
        reason: missing.reason(),
        missing: missing.label(),
        silent_secs: Duration::from_nanos(now_n.saturating_sub(since)).as_secs_f64(),
    })
}

/// How long session `s` has been without media: since the newest datagram on any leg
/// (`last_rx`, relay-epoch nanoseconds; 0 = none yet), or its newest `update()` if later.
pub(crate) fn idle(s: &CtlSession, now: Instant, now_n: u64) -> Duration {
    idle_of(s.last_update, s.streams.iter().flatten(), now, now_n)
}

fn idle_of<'a>(
    last_update: Instant,
    streams: impl Iterator<Item = &'a CtlStream>,
    now: Instant,
    now_n: u64,
) -> Duration {
    let since_update = now.saturating_duration_since(last_update);
    let last = streams
        .flat_map(|st| st.legs.iter())
        .map(|l| l.shared.last_rx.load(Relaxed))
        .max()
        .unwrap_or(0);
    if last == 0 {
        return since_update;
    }
    Duration::from_nanos(now_n.saturating_sub(last)).min(since_update)
}

/// Build one call's snapshot from its copy. `names`: trunk names by slot − 1.
pub(crate) fn call(s: &SessionView, names: &[String], now: Instant, now_n: u64) -> CallSnapshot {
    let (mut active, mut held) = (0, 0);
    let mut streams = Vec::with_capacity(s.streams.len());
    for (index, st) in &s.streams {
        let index = *index;
        if !st.legs.iter().any(|l| l.peer.is_some_and(|p| !p.enabled)) {
            active += 1;
            if st.legs.iter().any(|l| l.peer.is_some_and(|p| p.hold)) {
                held += 1;
            }
        }
        streams.push(StreamSnapshot {
            index,
            media: media_name(st.kind),
            a: leg(&st.legs[0], st.clock_rate),
            b: leg(&st.legs[1], st.clock_rate),
        });
    }
    let mos = streams
        .iter()
        .flat_map(|st| [st.a.mos, st.b.mos])
        .flatten()
        .reduce(f64::min);
    let legs = || s.streams.iter().map(|(_, st)| st);
    CallSnapshot {
        id: s.id,
        call_id: s.call_id.to_string(),
        trunk: s
            .slot
            .checked_sub(1)
            .and_then(|i| names.get(i))
            .filter(|n| !n.is_empty())
            .cloned(),
        direction: if s.inbound { "inbound" } else { "outbound" },
        age_secs: now.saturating_duration_since(s.created).as_secs_f64(),
        idle_secs: idle_of(s.last_update, legs(), now, now_n).as_secs_f64(),
        on_hold: active > 0 && held == active,
        quality: CallQuality {
            mos,
            one_way: one_way(legs(), now_n),
        },
        streams,
    }
}

/// What one stream of a finished call carried ([`crate::Relay::delete_with_summary`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamSummary {
    /// `"audio"`, `"video"`, …
    pub media: &'static str,
    pub rtp: bool,
    pub payload_type: Option<u8>,
    pub clock_rate: u32,
    /// From the stream's creation to the delete, s.
    pub seconds: f64,
    /// Side A (PBX) and side B (trunk): what that side's peer sent us.
    pub legs: [LegSummary; 2],
}

/// One leg's totals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegSummary {
    pub rx_packets: u64,
    /// UDP payload bytes.
    pub rx_bytes: u64,
    pub lost: u64,
    pub expected: u64,
    /// RFC 3550 interarrival jitter at the end, ms.
    pub jitter_ms: f64,
    /// How long this side's packets flowed: first to last, plus one packet interval, s
    /// (0 with fewer than two packets).
    pub active_seconds: f64,
}

pub(super) fn summary(s: &super::CtlSession, now: std::time::Instant) -> Vec<StreamSummary> {
    let seconds = now.duration_since(s.created).as_secs_f64();
    s.streams
        .iter()
        .flatten()
        .map(|st| {
            let leg = |l: &CtlLeg| {
                let sh: &LegShared = &l.shared;
                LegSummary {
                    rx_packets: sh.rx_packets.load(Relaxed),
                    rx_bytes: sh.rx_bytes.load(Relaxed),
                    lost: sh.lost.load(Relaxed),
                    expected: sh.expected.load(Relaxed),
                    jitter_ms: sh.jitter_nanos.load(Relaxed) as f64 / 1e6,
                    active_seconds: active(
                        sh.first_rx.load(Relaxed),
                        sh.last_rx.load(Relaxed),
                        sh.rx_packets.load(Relaxed),
                    ),
                }
            };
            StreamSummary {
                media: media_name(st.kind),
                rtp: st.rtp,
                payload_type: st.payload_type,
                clock_rate: st.clock_rate,
                seconds,
                legs: [leg(&st.legs[0]), leg(&st.legs[1])],
            }
        })
        .collect()
}

/// First-to-last nanoseconds of `packets` packets, plus one mean interval, in seconds.
fn active(first: u64, last: u64, packets: u64) -> f64 {
    if first == 0 || last <= first || packets < 2 {
        return 0.0;
    }
    let span = (last - first) as f64 / 1e9;
    span * packets as f64 / (packets - 1) as f64
}
