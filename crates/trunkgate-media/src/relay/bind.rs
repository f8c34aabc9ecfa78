//! Binding a leg's sockets on the caller's thread: a port pair from the pool, DSCP set
//! before bind; and the open-files limit those sockets count against.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use crate::fastpath::KernelPath;
use crate::ports::PortPool;
use crate::{MediaConfig, MediaError};

/// Bind one media socket with the DSCP mark, non-blocking.
pub(crate) fn bind_one(addr: SocketAddr, dscp: u8) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let tos = u32::from(dscp & 0x3f) << 2;
    if addr.is_ipv4() {
        s.set_tos_v4(tos)?;
    } else {
        s.set_tclass_v6(tos)?;
        // A dual-stack socket also sends IPv4: mark that too (fails harmlessly on v6-only).
        let _ = s.set_tos_v4(tos);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A relay thread's socket for every steered leg on media address `addr` (sk_lookup mode):
/// bound to an ephemeral port there, reporting each datagram's original destination (the
/// anchored port) with IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR, with a large receive
/// buffer (every stream's first datagrams and all RTCP of the thread's calls arrive here).
pub(crate) fn steered_socket(addr: IpAddr, dscp: u8) -> io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let s = bind_one(SocketAddr::new(addr, 0), dscp)?;
    if addr.is_ipv4() {
        setsockopt(&s, sockopt::Ipv4OrigDstAddr, &true)?;
    } else {
        setsockopt(&s, sockopt::Ipv6OrigDstAddr, &true)?;
    }
    // Root may exceed net.core.rmem_max; otherwise take what the limit allows.
    if setsockopt(&s, sockopt::RcvBufForce, &(8 << 20)).is_err() {
        let _ = setsockopt(&s, sockopt::RcvBuf, &(8 << 20));
    }
    Ok(s)
}

/// A freshly taken leg: RTP port, and its RTP and RTCP sockets (`None` when steered).
pub(crate) type BoundLeg = (u16, Option<(UdpSocket, UdpSocket)>);

/// Where a steered leg's datagrams go: the kernel path and the socket slot of the relay
/// thread that owns the call.
pub(crate) type Steer<'a> = Option<(&'a KernelPath, u32)>;

/// Take a port pair from the pool and bind its RTP and RTCP sockets; or, steered, check that
/// no other socket holds the pair (a bind that is closed at once) and steer both ports to
/// the owning thread's socket.
pub(crate) fn take_leg(
    pool: &mut PortPool,
    now: Instant,
    cfg: &MediaConfig,
    bind: IpAddr,
    steer: Steer<'_>,
) -> Result<BoundLeg, MediaError> {
    let mut got = None;
    let mut err = None;
    let port = pool.take(now, |p| {
        if steer.is_some() {
            // Only a check that no other socket holds the pair: a plain bind, closed at
            // once (3 system calls per port; the pair is then steered below).
            let probe = |port: u16| UdpSocket::bind(SocketAddr::new(bind, port)).map(drop);
            return match probe(p).and_then(|()| probe(p.wrapping_add(1))) {
                Ok(()) => {
                    got = Some(None);
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => false,
                Err(e) => {
                    err = Some(e);
                    true
                }
            };
        }
        let pair = bind_one(SocketAddr::new(bind, p), cfg.dscp).and_then(|rtp| {
            Ok((
                rtp,
                bind_one(SocketAddr::new(bind, p.wrapping_add(1)), cfg.dscp)?,
            ))
        });
        match pair {
            Ok(pair) => {
                got = Some(Some(pair));
                true
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => false,
            Err(e) => {
                // Not a busy port (e.g. out of descriptors): stop scanning the range.
                err = Some(e);
                true
            }
        }
    });
    match (port, got) {
        (Some(p), Some(None)) => {
            let Some((kp, slot)) = steer else {
                return Ok((p, None));
            };
            let rtp = SocketAddr::new(bind, p);
            let rtcp = SocketAddr::new(bind, p.wrapping_add(1));
            match kp.steer(rtp, slot).and_then(|()| kp.steer(rtcp, slot)) {
                Ok(()) => Ok((p, None)),
                Err(e) => {
                    kp.unsteer(rtp);
                    kp.unsteer(rtcp);
                    pool.release_now(p);
                    Err(MediaError::Io(io::Error::other(format!(
                        "steering port {p} (sk_lookup map): {e}"
                    ))))
                }
            }
        }
        (Some(p), Some(pair)) => Ok((p, pair)),
        (Some(p), None) => {
            pool.release(p, now);
            Err(MediaError::Io(
                err.unwrap_or_else(|| io::Error::other("bind failed")),
            ))
        }
        (None, _) => Err(MediaError::PortsExhausted),
    }
}

/// Give a leg's port pair back (quarantined unless `now_free`), and stop steering it.
pub(crate) fn release_leg(
    pool: &mut PortPool,
    kernel: Option<&KernelPath>,
    bind: IpAddr,
    port: u16,
    now: Instant,
    now_free: bool,
) {
    if let Some(kp) = kernel.filter(|k| k.steering()) {
        kp.unsteer(SocketAddr::new(bind, port));
        kp.unsteer(SocketAddr::new(bind, port.wrapping_add(1)));
    }
    if now_free {
        pool.release_now(port);
    } else {
        pool.release(port, now);
    }
}

/// Raise `RLIMIT_NOFILE`'s soft limit to the hard limit; returns `(soft, hard)` after.
/// Each anchored call holds 4 sockets per stream.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft, hard))
}
