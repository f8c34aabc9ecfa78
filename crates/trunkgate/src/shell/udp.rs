//! UDP listeners: binding with the socket options an SBC wants, receiving into one reused
//! buffer without a per-datagram allocation, and choosing the socket a transmit leaves on.
//! The core task reads these sockets itself (no channel hop between socket and core).

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use tokio::net::UdpSocket;
use trunkgate_sip::{Flow, Transmit, Transport};

/// Socket buffer size asked of the kernel (best effort: capped by `net.core.[rw]mem_max`).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// Largest UDP payload (IPv4: 65,507; leave room for IPv6) — the receive buffer always has at
/// least this much spare room, so no datagram is ever truncated.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams share one allocation of this size until it is used up (`split().freeze()`
/// hands each datagram out as a zero-copy `Bytes`).
const RECV_CHUNK: usize = 256 * 1024;

#[derive(Debug)]
pub struct UdpListener {
    /// `Flow { transport: Udp, local: bound address, conn: None }`.
    pub flow: Flow,
    pub socket: UdpSocket,
}

/// A bound, non-blocking UDP socket not yet registered with a runtime: the core thread
/// registers it with its own reactor ([`BoundUdp::register`]).
#[derive(Debug)]
pub struct BoundUdp {
    pub flow: Flow,
    socket: std::net::UdpSocket,
}

impl BoundUdp {
    /// Register with the current tokio runtime. Must run inside it.
    pub fn register(self) -> io::Result<UdpListener> {
        Ok(UdpListener {
            flow: self.flow,
            socket: UdpSocket::from_std(self.socket)?,
        })
    }
}

/// Bind and register a UDP listener. Must run inside the tokio runtime.
#[cfg(test)]
pub fn bind(address: SocketAddr, tos: u8) -> io::Result<UdpListener> {
    bind_std(address, tos)?.register()
}

/// Bind a UDP socket: SO_REUSEADDR, large buffers, IP TOS / IPv6 traffic class `tos`,
/// non-blocking.
pub fn bind_std(address: SocketAddr, tos: u8) -> io::Result<BoundUdp> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    set_tos(&socket, address, tos);
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%address, %error, "could not raise SO_RCVBUF");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%address, %error, "could not raise SO_SNDBUF");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    let socket: std::net::UdpSocket = socket.into();
    let local = socket.local_addr()?;
    Ok(BoundUdp {
        flow: Flow {
            transport: Transport::Udp,
            local,
            conn: None,
        },
        socket,
    })
}

/// Set the DSCP/TOS byte (best effort: logged, not fatal).
pub fn set_tos(socket: &Socket, address: SocketAddr, tos: u8) {
    let result = if address.is_ipv6() {
        socket.set_tclass_v6(u32::from(tos))
    } else {
        socket.set_tos_v4(u32::from(tos))
    };
    if let Err(error) = result {
        tracing::warn!(%address, %error, tos, "could not set the IP TOS byte");
    }
}

/// Resolves when any of `sockets` is readable, with its index; polls starting at `start` so
/// one busy socket cannot starve the others. Never resolves for an empty list.
pub fn readable(
    sockets: &[UdpListener],
    start: usize,
) -> impl Future<Output = (usize, io::Result<()>)> + '_ {
    std::future::poll_fn(move |cx| {
        let n = sockets.len();
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(listener) = sockets.get(i) {
                if let Poll::Ready(result) = listener.socket.poll_recv_ready(cx) {
                    return Poll::Ready((i, result));
                }
            }
        }
        Poll::Pending
    })
}

/// Datagrams taken per `recvmmsg` call.
pub const RECV_BATCH: usize = 32;

/// The reused receive buffers: `recvmmsg` fills fixed 64 KiB slots (so no datagram is ever
/// truncated), then each datagram is copied into the shared chunk and handed out as its own
/// `Bytes` (the slots are reused at once; a kept datagram pins only its chunk).
pub struct Receiver {
    buf: BytesMut,
    slots: Vec<u8>,
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            buf: BytesMut::with_capacity(RECV_CHUNK),
            slots: vec![0; RECV_BATCH * MAX_DATAGRAM],
            headers: nix::sys::socket::MultiHeaders::preallocate(RECV_BATCH, None),
        }
    }
}

fn socket_addr(address: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

impl Receiver {
    /// Receive up to [`RECV_BATCH`] datagrams in one system call, without blocking
    /// (`WouldBlock` when none is queued). Appends to `out`.
    pub fn try_recv_batch(
        &mut self,
        socket: &UdpSocket,
        out: &mut Vec<(Bytes, SocketAddr)>,
    ) -> io::Result<()> {
        use nix::sys::socket::{MsgFlags, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let mut meta: smallvec::SmallVec<[(usize, Option<SocketAddr>); RECV_BATCH]> =
            smallvec::SmallVec::new();
        {
            let headers = &mut self.headers;
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                .slots
                .chunks_mut(MAX_DATAGRAM)
                .map(|slot| [IoSliceMut::new(slot)])
                .collect();
            socket.try_io(tokio::io::Interest::READABLE, || {
                let received = recvmmsg(
                    socket.as_raw_fd(),
                    headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map_err(io::Error::from)?;
                for message in received {
                    meta.push((
                        message.bytes,
                        message.address.as_ref().and_then(socket_addr),
                    ));
                }
                Ok(())
            })?;
        }
        for (i, (len, source)) in meta.into_iter().enumerate() {
            let (Some(source), Some(data)) = (
                source,
                self.slots.get(i * MAX_DATAGRAM..i * MAX_DATAGRAM + len),
            ) else {
                continue;
            };
            if self.buf.capacity() - self.buf.len() < len {
                self.buf.reserve(RECV_CHUNK.max(len));
            }
            self.buf.extend_from_slice(data);
            out.push((self.buf.split().freeze(), source));
        }
        Ok(())
    }

    /// Receive one datagram without blocking (`WouldBlock` when none is queued).
    #[cfg(test)]
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<(Bytes, SocketAddr)> {
        if self.buf.capacity() - self.buf.len() < MAX_DATAGRAM {
            // Reclaims the old chunk in place when every datagram cut from it is gone.
            self.buf.reserve(RECV_CHUNK);
        }
        let (_, source) = socket.try_recv_buf_from(&mut self.buf)?;
        Ok((self.buf.split().freeze(), source))
    }
}

/// Index of the socket a UDP transmit leaves on: the one bound to `flow.local`, else the
/// first one of the destination's address family.
pub fn pick_index(
    sockets: &[UdpListener],
    local: SocketAddr,
    destination: SocketAddr,
) -> Option<usize> {
    sockets
        .iter()
        .position(|l| l.flow.local == local)
        .or_else(|| {
            sockets
                .iter()
                .position(|l| l.flow.local.is_ipv4() == destination.is_ipv4())
        })
}

/// Send `batch` on `socket` in as few system calls as the kernel allows: one `sendmmsg`
/// for the lot (what the core produced from one wakeup), falling back to `send_to` for a
/// single datagram. Never blocks: returns how many were sent; the rest (socket buffer full)
/// are for the caller to count as dropped. Order is kept.
pub fn send_batch(socket: &UdpSocket, batch: &[Transmit]) -> usize {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    // The system calls go straight to the socket, not through tokio's readiness (`try_io`):
    // the core never waits for writability (a full buffer drops and counts), and tokio
    // reports WouldBlock until its reactor has seen the socket writable once — which dropped
    // the very first datagram after start (an OPTIONS probe sent before anything arrived).
    if let [one] = batch {
        let to = SockaddrStorage::from(one.destination);
        return usize::from(
            nix::sys::socket::sendto(socket.as_raw_fd(), &one.data, &to, MsgFlags::empty()).is_ok(),
        );
    }
    // `sent` counts datagrams dealt with (delivered or skipped on their own error).
    let mut sent = 0;
    let mut skipped = 0;
    while sent < batch.len() {
        let rest = &batch[sent..];
        let slices: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|t| [IoSlice::new(&t.data)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = rest
            .iter()
            .map(|t| Some(SockaddrStorage::from(t.destination)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(rest.len(), None);
        let result = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map(|results| results.count())
        .map_err(io::Error::from);
        match result {
            Ok(n) if n > 0 => sent += n,
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => {
                // The first datagram of `rest` was refused on its own (EMSGSIZE, no route
                // to one peer, a firewall rule): drop that one, keep sending the others.
                tracing::debug!(destination = %rest[0].destination, %error, "UDP send failed");
                skipped += 1;
                sent += 1;
            }
            // Socket buffer full (or nothing sent): the rest is dropped, never waited for.
            _ => break,
        }
    }
    sent - skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_back_to_back_datagrams_as_separate_buffers() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 0x60).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 60_000];
        peer.send_to(b"first", listener.flow.local).unwrap();
        peer.send_to(&big, listener.flow.local).unwrap();
        peer.send_to(b"third", listener.flow.local).unwrap();
        let mut rx = Receiver::default();
        let mut got = Vec::new();
        while got.len() < 3 {
            listener.socket.readable().await.unwrap();
            match rx.try_recv(&listener.socket) {
                Ok((data, from)) => {
                    assert_eq!(from, peer.local_addr().unwrap());
                    got.push(data);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got[0][..], b"first");
        assert_eq!(got[1].len(), 60_000);
        assert_eq!(&got[2][..], b"third");
    }

    #[tokio::test]
    async fn sets_cs3_on_sip_sockets() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 0x60).unwrap();
        let sock = socket2::SockRef::from(&listener.socket);
        assert_eq!(sock.tos_v4().unwrap(), 0x60);
    }

    #[tokio::test]
    async fn picks_the_socket_by_local_address_then_family() {
        let a = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let (a_local, b_local) = (a.flow.local, b.flow.local);
        let sockets = vec![a, b];
        let dest: SocketAddr = "127.0.0.9:5060".parse().unwrap();
        let chosen = pick_index(&sockets, b_local, dest).unwrap();
        assert_eq!(sockets[chosen].socket.local_addr().unwrap(), b_local);
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let chosen = pick_index(&sockets, other, dest).unwrap();
        assert_eq!(sockets[chosen].socket.local_addr().unwrap(), a_local);
        assert!(pick_index(&sockets, other, "[::1]:5060".parse().unwrap()).is_none());
    }

    #[tokio::test]
    async fn sends_a_batch_in_order_with_one_call() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 0x60).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = peer.local_addr().unwrap();
        let batch: Vec<Transmit> = (0..5u8)
            .map(|i| Transmit {
                flow: listener.flow,
                destination: to,
                data: Bytes::from(vec![b'a' + i; 100 + usize::from(i)]),
            })
            .collect();
        // As in the core loop: the reactor has seen the socket writable once.
        listener.socket.writable().await.unwrap();
        assert_eq!(send_batch(&listener.socket, &batch), 5);
        let mut buf = [0u8; 512];
        for i in 0..5u8 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(from, listener.flow.local);
            assert_eq!(n, 100 + usize::from(i));
            assert_eq!(buf[0], b'a' + i);
        }
    }

    #[tokio::test]
    async fn one_refused_datagram_does_not_drop_the_rest_of_the_batch() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = peer.local_addr().unwrap();
        // Broadcast without SO_BROADCAST is refused by the kernel (EACCES).
        let refused: SocketAddr = "255.255.255.255:5060".parse().unwrap();
        let batch: Vec<Transmit> = [to, refused, to, to]
            .iter()
            .zip(b"abcd")
            .map(|(&destination, &b)| Transmit {
                flow: listener.flow,
                destination,
                data: Bytes::from(vec![b; 10]),
            })
            .collect();
        listener.socket.writable().await.unwrap();
        assert_eq!(send_batch(&listener.socket, &batch), 3);
        let mut buf = [0u8; 64];
        for expected in [b'a', b'c', b'd'] {
            let (_, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(buf[0], expected);
        }
    }

    #[tokio::test]
    async fn receives_a_batch_in_one_call_without_truncation() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 65_000];
        peer.send_to(b"first", listener.flow.local).unwrap();
        peer.send_to(&big, listener.flow.local).unwrap();
        peer.send_to(b"third", listener.flow.local).unwrap();
        listener.socket.readable().await.unwrap();
        let mut rx = Receiver::default();
        let mut got = Vec::new();
        while got.len() < 3 {
            match rx.try_recv_batch(&listener.socket, &mut got) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    listener.socket.readable().await.unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got[0].0[..], b"first");
        assert_eq!(got[1].0.len(), 65_000);
        assert_eq!(&got[2].0[..], b"third");
        assert_eq!(got[0].1, peer.local_addr().unwrap());
    }
}
