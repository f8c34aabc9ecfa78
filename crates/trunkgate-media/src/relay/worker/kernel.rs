//! The relay thread's side of the kernel fast path: when a stream's leg may move into the
//! kernel, installing its entry, folding the kernel's counters back into the leg's figures,
//! and taking it out again. The judgement stays here: an entry exists only for a latched RTP
//! leg whose other side has a destination, in one address family, on specific addresses;
//! any datagram of it that still reaches the socket after a short grace (a new SSRC, a
//! sequence jump, a moved source, no route) takes the leg back to userspace, which handles
//! it as before and re-installs the entry a little later.

use std::net::SocketAddr;

use super::super::shared::{LegShared, bump};
use super::WLeg;
use crate::Latch;
use crate::fastpath::{Counters, Forward, KernelPath, is_v4, key};
use crate::stats::{Continuation, ReceiveStats};

/// Datagrams still reaching the socket this long after an install were queued before the
/// entry existed: they do not take the leg back.
pub(super) const GRACE_NS: u64 = 200_000_000;
/// After the kernel left a datagram to userspace, the leg stays there this long.
const BACKOFF_NS: u64 = 1_000_000_000;
/// After a failed install (map full, no memory), the next try waits this long.
const RETRY_NS: u64 = 5_000_000_000;

/// A leg's installed entry.
pub(super) struct KernelLeg {
    key: [u8; 20],
    installed_at: u64,
    /// The entry's counters as last folded.
    folded: Counters,
    ssrc: u32,
}

/// Try to move leg `x` (receiving from its peer, forwarding to `y`'s peer) into the kernel.
pub(super) fn try_install(kp: &KernelPath, x: &mut WLeg, y: &WLeg, tos: u8, now: u64) {
    if x.kernel.is_some() || now < x.kernel_retry {
        return;
    }
    let Some(peer) = x.peer else { return };
    if peer.latch == Latch::Off || !peer.enabled {
        return;
    }
    let (Some(source), Some(dest), Some(local), Some(out_local)) =
        (x.latched_rtp, y.dest_rtp(), x.local, y.local)
    else {
        return;
    };
    let Some(c) = x.stats.continuation() else {
        return;
    };
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (source, dest, local, out_local) =
        (canon(source), canon(dest), canon(local), canon(out_local));
    // One family end to end, specific addresses (the program does no family translation
    // and needs the source address it writes).
    let v4 = is_v4(source.ip());
    if [dest, local, out_local].iter().any(|a| is_v4(a.ip()) != v4)
        || local.ip().is_unspecified()
        || out_local.ip().is_unspecified()
    {
        x.kernel_retry = u64::MAX;
        return;
    }
    let f = Forward {
        source,
        new_source: out_local,
        new_dest: dest,
        tos,
        ssrc: c.ssrc,
        clock_rate: x.clock_rate,
        ext_max: c.ext_max,
        jitter_ns: c.jitter_ns,
        transit: c.transit.map(|(a, ts)| (kp.kernel_nanos(a), ts)),
    };
    let k = key(local);
    match kp.install(&k, &f) {
        Ok(()) => {
            x.kernel = Some(KernelLeg {
                key: k,
                installed_at: now,
                folded: Counters {
                    ext_max: c.ext_max,
                    ..Counters::default()
                },
                ssrc: c.ssrc,
            });
            x.shared.set_in_kernel(true);
            tracing::debug!(%local, %source, %dest, "media: stream leg moved to the kernel fast path");
        }
        Err(e) => {
            x.kernel_retry = now.saturating_add(RETRY_NS);
            tracing::warn!(%local, error = %e, "media: kernel fast path entry not installed; this leg stays in userspace");
        }
    }
}

/// Add what the kernel counted since the last fold to the leg's figures (`xs`: the leg's
/// shared figures, `ys`: the other leg's, whose peer the packets went to).
pub(super) fn fold(
    kp: &KernelPath,
    kernel: &mut Option<KernelLeg>,
    stats: &mut ReceiveStats,
    xs: &LegShared,
    ys: &LegShared,
) {
    let Some(k) = kernel else { return };
    let Some(c) = kp.read(&k.key) else { return };
    let packets = c.packets.saturating_sub(k.folded.packets);
    if packets > 0 {
        let bytes = c.bytes.saturating_sub(k.folded.bytes);
        bump(&xs.rx_packets, packets);
        bump(&xs.rx_bytes, bytes);
        bump(&xs.kernel_packets, packets);
        bump(&ys.tx_packets, packets);
        bump(&ys.tx_bytes, bytes);
        let last = kp.relay_nanos(c.last_ns);
        if last > xs.last_rx.load(std::sync::atomic::Ordering::Relaxed) {
            xs.last_rx.store(last, std::sync::atomic::Ordering::Relaxed);
        }
        stats.resume(
            c.received.saturating_sub(k.folded.received),
            c.gaps.saturating_sub(k.folded.gaps),
            &Continuation {
                ssrc: k.ssrc,
                ext_max: c.ext_max,
                jitter_ns: c.jitter_ns,
                transit: c.transit.map(|(a, ts)| (kp.relay_nanos(a), ts)),
            },
        );
        xs.store_rtp_stats(stats);
    }
    k.folded = c;
}

/// Fold, then remove the entry: the leg is back in userspace. `backoff`: the kernel left a
/// datagram to userspace (do not re-install at once).
pub(super) fn uninstall(kp: &KernelPath, x: &mut WLeg, ys: &LegShared, now: u64, backoff: bool) {
    uninstall_parts(
        kp,
        &mut x.kernel,
        &mut x.stats,
        &x.shared,
        ys,
        &mut x.kernel_retry,
        now,
        backoff,
    );
}

/// [`uninstall`] on a leg borrowed field by field (the forwarding loop).
#[allow(clippy::too_many_arguments)]
pub(super) fn uninstall_parts(
    kp: &KernelPath,
    kernel: &mut Option<KernelLeg>,
    stats: &mut ReceiveStats,
    xs: &LegShared,
    ys: &LegShared,
    retry: &mut u64,
    now: u64,
    backoff: bool,
) {
    fold(kp, kernel, stats, xs, ys);
    if let Some(k) = kernel.take() {
        kp.remove(&k.key);
        xs.set_in_kernel(false);
    }
    if backoff {
        *retry = now.saturating_add(BACKOFF_NS);
    }
}

/// An RTP datagram (SSRC `ssrc`) from the latched source reached the socket of a leg in the
/// kernel: the kernel declined it — surely for another SSRC, else when it arrived past the
/// grace after install — and the leg goes back to userspace.
pub(super) fn declined(k: &Option<KernelLeg>, ssrc: Option<u32>, now: u64) -> bool {
    k.as_ref().is_some_and(|k| {
        ssrc.is_some_and(|s| s != k.ssrc) || now.saturating_sub(k.installed_at) >= GRACE_NS
    })
}

impl KernelLeg {
    pub(super) fn key(&self) -> &[u8; 20] {
        &self.key
    }
}
