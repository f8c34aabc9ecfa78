//! Binding a leg's sockets on the caller's thread: a port pair from the pool, DSCP set
//! before bind; and the open-files limit those sockets count against.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

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

/// A freshly bound leg: RTP port, RTP socket, RTCP socket.
pub(crate) type BoundLeg = (u16, UdpSocket, UdpSocket);

/// Take a port pair from the pool and bind its RTP and RTCP sockets.
pub(crate) fn take_leg(
    pool: &mut PortPool,
    now: Instant,
    cfg: &MediaConfig,
    bind: IpAddr,
) -> Result<BoundLeg, MediaError> {
    let mut got = None;
    let mut err = None;
    let port = pool.take(now, |p| {
        let pair = bind_one(SocketAddr::new(bind, p), cfg.dscp).and_then(|rtp| {
            Ok((
                rtp,
                bind_one(SocketAddr::new(bind, p.wrapping_add(1)), cfg.dscp)?,
            ))
        });
        match pair {
            Ok(pair) => {
                got = Some(pair);
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
        (Some(p), Some((rtp, rtcp))) => Ok((p, rtp, rtcp)),
        (Some(p), None) => {
            pool.release(p, now);
            Err(MediaError::Io(
                err.unwrap_or_else(|| io::Error::other("bind failed")),
            ))
        }
        (None, _) => Err(MediaError::PortsExhausted),
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
