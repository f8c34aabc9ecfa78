//! Stream connections, TCP and TLS: listeners, per-connection reader and writer tasks, and
//! outgoing connects. TLS is TCP plus a handshake ([`super::tls`]) between connect/accept
//! and the first byte; from there both run the same [`run_connection`], generic over the
//! stream's read and write halves (a TCP stream split without a lock, a TLS stream with
//! `tokio::io::split`).
//!
//! A connection is judged at accept before a byte is read ([`super::admit`]): strangers,
//! banned sources and connections over a cap are reset at once. An admitted one has a
//! reader task (frames the byte stream with [`super::framing`] in a buffer never
//! larger than `max_message_size + 1`, answers RFC 5626 keepalive pings, enforces the idle
//! timeout and the header timeout: a message must be whole within `tcp_header_timeout` of
//! its first byte) and a writer task draining a bounded FIFO queue, so writes on one
//! connection keep the order the core produced them in. Every close is counted by
//! [`CloseReason`]. Frames and open/close events reach the core task over one bounded
//! channel ([`TcpEvent`]); the core owns the connection table (see [`super::connections`]).

use super::admit::{Admit, Slot};
use super::framing::{FrameStep, next_frame};
use super::tls::{self, TlsShared};
use crate::metrics::{CloseReason, ShellMetrics};
use bytes::{BufMut, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use trunkgate_sip::message::{Limits, ParseError};
use trunkgate_sip::{ConnId, Flow, Transport};

/// Messages queued per connection before the core gives up on it.
pub const WRITE_QUEUE: usize = 1024;
/// Outgoing connection attempts give up after this long (the core then hears
/// [`TcpEvent::ConnectFailed`] instead of waiting for Timer B).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A single write that makes no progress for this long closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
const PONG: Bytes = Bytes::from_static(b"\r\n");

/// What connection tasks tell the core task.
#[derive(Debug)]
pub enum TcpEvent {
    /// An accepted connection: register its writer queue. Sent before any of its frames.
    Opened {
        flow: Flow,
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    /// One whole SIP message from `peer` on `flow` (`flow.conn` is set).
    Frame {
        flow: Flow,
        peer: SocketAddr,
        data: Bytes,
    },
    /// The connection is gone (closed by either side, idle, framing error).
    Closed { id: ConnId },
    /// An outgoing connection to `destination` could not be opened (refused, unreachable,
    /// timed out, TLS handshake failed): what was queued on it is lost.
    ConnectFailed {
        id: ConnId,
        transport: Transport,
        destination: SocketAddr,
    },
}

/// What every TCP task needs to know, from the policy.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    pub limits: Limits,
    /// No bytes either way for this long closes a connection (zero: never).
    pub idle_timeout: Duration,
    /// A message still incomplete this long after its first byte closes the connection.
    pub header_timeout: Duration,
    pub tos: u8,
}

/// Settings and handles every TCP task shares.
#[derive(Debug)]
pub struct TcpShared {
    pub events: mpsc::Sender<TcpEvent>,
    pub metrics: Arc<ShellMetrics>,
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    /// Accept-time admission and the connection caps.
    pub admit: Arc<Admit>,
    pub tos: u8,
    /// Certificates and peer profiles for TLS connections (swapped by reloads).
    pub tls: Arc<TlsShared>,
    next_conn: AtomicU64,
}

/// A timeout of zero means "never".
fn or_never(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::from_secs(86_400 * 365)
    } else {
        d
    }
}

impl TcpShared {
    pub fn new(
        events: mpsc::Sender<TcpEvent>,
        metrics: Arc<ShellMetrics>,
        settings: TcpSettings,
        admit: Arc<Admit>,
    ) -> TcpShared {
        TcpShared {
            events,
            metrics,
            limits: settings.limits,
            idle_timeout: or_never(settings.idle_timeout),
            header_timeout: or_never(settings.header_timeout),
            admit,
            tos: settings.tos,
            tls: Arc::new(TlsShared::new(tls::TlsProfiles::none())),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Use `tls` for TLS connections (the one the policy reloads swap).
    pub fn with_tls(mut self, tls: Arc<TlsShared>) -> TcpShared {
        self.tls = tls;
        self
    }

    /// A process-unique connection id (never reused).
    pub fn next_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Count and (rate-limited) log a connection refused for `reason`.
    pub fn refused(&self, peer: SocketAddr, reason: CloseReason) {
        self.metrics.closed(reason);
        if reason == CloseReason::GlobalCap {
            ShellMetrics::inc(&self.metrics.tcp_connections_rejected);
        }
        self.admit
            .log_refusal(peer.ip(), reason, std::time::Instant::now());
    }
}

/// Bind a stream listener for `transport` (TCP or TLS: SO_REUSEADDR, TOS byte,
/// non-blocking). Must run inside the runtime.
pub fn bind(address: SocketAddr, tos: u8, transport: Transport) -> io::Result<(Flow, TcpListener)> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    super::udp::set_tos(&socket, address, tos);
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    let local = listener.local_addr()?;
    Ok((
        Flow {
            transport,
            local,
            conn: None,
        },
        listener,
    ))
}

/// Accept connections on `listener` until the process ends. Each one is judged before a
/// byte is read ([`Admit::accept`]); a refused one is reset at once (no read, no task, no
/// allocation beyond the accept itself).
pub async fn accept_loop(listener: TcpListener, flow: Flow, shared: Arc<TcpShared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(local = %flow.local, %error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match shared.admit.accept(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                // RST rather than FIN: no TIME_WAIT left behind, nothing told.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                shared.refused(peer, reason);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_flow = Flow {
            conn: Some(shared.next_id()),
            ..flow
        };
        if flow.transport == Transport::Tls {
            // The handshake runs in the connection's own task: a slow or silent client
            // holds its slot, never the accept loop.
            tokio::spawn(accept_tls(stream, conn_flow, peer, shared.clone(), slot));
            continue;
        }
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let weak = tx.downgrade();
        let opened = TcpEvent::Opened {
            flow: conn_flow,
            peer,
            writer: tx,
        };
        if shared.events.send(opened).await.is_err() {
            return; // the core is gone: shutting down
        }
        tracing::debug!(%peer, conn = ?conn_flow.conn, "TCP connection accepted");
        let (reader, writer) = stream.into_split();
        tokio::spawn(run_connection(
            reader,
            writer,
            conn_flow,
            peer,
            rx,
            weak,
            shared.clone(),
            slot,
        ));
    }
}

/// An accepted connection on a `tls:` listener: the handshake with the certificate in
/// force now, then served like TCP. A failed handshake (no TLS, a client certificate
/// refused, too slow) closes it, counted and logged with the reason.
async fn accept_tls(
    stream: TcpStream,
    flow: Flow,
    peer: SocketAddr,
    shared: Arc<TcpShared>,
    slot: Slot,
) {
    let profiles = shared.tls.current();
    let tls = match tls::accept(stream, &profiles).await {
        Ok(tls) => tls,
        Err(error) => {
            drop(slot);
            ShellMetrics::inc(&shared.metrics.tls_handshake_failures_accept);
            shared.metrics.closed(CloseReason::TlsHandshake);
            tracing::warn!(%peer, local = %flow.local, %error, "TLS handshake with a client failed: connection closed");
            return;
        }
    };
    tls_established(&shared, tls.get_ref().1.peer_certificates().is_some());
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let weak = tx.downgrade();
    let opened = TcpEvent::Opened {
        flow,
        peer,
        writer: tx,
    };
    if shared.events.send(opened).await.is_err() {
        // The core is gone: shutting down.
        shared
            .metrics
            .tls_connections_active
            .fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tracing::debug!(%peer, conn = ?flow.conn, "TLS connection accepted");
    let (reader, writer) = tokio::io::split(tls);
    run_connection(reader, writer, flow, peer, rx, weak, shared.clone(), slot).await;
    shared
        .metrics
        .tls_connections_active
        .fetch_sub(1, Ordering::Relaxed);
}

/// A TLS session is up (either direction).
fn tls_established(shared: &TcpShared, client_certificate: bool) {
    ShellMetrics::inc(&shared.metrics.tls_connections_total);
    shared
        .metrics
        .tls_connections_active
        .fetch_add(1, Ordering::Relaxed);
    if client_certificate {
        ShellMetrics::inc(&shared.metrics.tls_client_certificates);
    }
}

/// Open an outgoing connection for `flow` (its `conn` already assigned by the core, its
/// queue already holding the first message, its `slot` under the global cap taken), then
/// serve it like an accepted one.
pub async fn connect(
    flow: Flow,
    peer: SocketAddr,
    rx: mpsc::Receiver<Bytes>,
    weak: mpsc::WeakSender<Bytes>,
    shared: Arc<TcpShared>,
    slot: Slot,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, open(flow.local, peer, shared.tos))
        .await
    {
        Ok(Ok(stream)) => stream,
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".to_owned(),
            };
            tracing::warn!(%peer, %reason, transport = flow.transport.name(), "TCP connect failed");
            return connect_failed(flow, peer, &rx, &shared, slot).await;
        }
    };
    if flow.transport != Transport::Tls {
        tracing::debug!(%peer, conn = ?flow.conn, "TCP connection established");
        let (reader, writer) = stream.into_split();
        return run_connection(reader, writer, flow, peer, rx, weak, shared, slot).await;
    }
    let profiles = shared.tls.current();
    let Some(client) = profiles.client_for(peer) else {
        tracing::warn!(%peer, "TLS to a destination with no TLS configuration: set [tls] ca_file or the peer's tls table");
        ShellMetrics::inc(&shared.metrics.tls_handshake_failures_connect);
        return connect_failed(flow, peer, &rx, &shared, slot).await;
    };
    match tls::connect(stream, &client, profiles.handshake_timeout).await {
        Ok(tls) => {
            if client.insecure {
                tracing::warn!(%peer, peer_name = %client.who, "TLS connection established WITHOUT certificate verification (insecure_skip_verify)");
            } else {
                tracing::debug!(%peer, conn = ?flow.conn, peer_name = %tls::name_text(&client.name), "TLS connection established");
            }
            tls_established(&shared, false);
            let (reader, writer) = tokio::io::split(tls);
            run_connection(reader, writer, flow, peer, rx, weak, shared.clone(), slot).await;
            shared
                .metrics
                .tls_connections_active
                .fetch_sub(1, Ordering::Relaxed);
        }
        Err(error) => {
            // The call behind it fails over at once (`transport_failed` in the core).
            tracing::warn!(
                %peer,
                peer_name = %client.who,
                expected = %tls::name_text(&client.name),
                %error,
                "TLS handshake failed: refusing the connection"
            );
            ShellMetrics::inc(&shared.metrics.tls_handshake_failures_connect);
            connect_failed(flow, peer, &rx, &shared, slot).await;
        }
    }
}

/// An outgoing connection that never carried a byte: count what was queued on it as lost
/// and tell the core, whose transactions on it end at once.
async fn connect_failed(
    flow: Flow,
    peer: SocketAddr,
    rx: &mpsc::Receiver<Bytes>,
    shared: &TcpShared,
    slot: Slot,
) {
    drop(slot);
    ShellMetrics::inc(&shared.metrics.tcp_connect_failures);
    let lost = u64::try_from(rx.len()).unwrap_or(0);
    shared
        .metrics
        .tcp_send_drops
        .fetch_add(lost, Ordering::Relaxed);
    if let Some(id) = flow.conn {
        let failed = TcpEvent::ConnectFailed {
            id,
            transport: flow.transport,
            destination: peer,
        };
        let _ = shared.events.send(failed).await;
    }
}

/// Connect from the listener's IP (when it is a specific one) to `peer`.
async fn open(local: SocketAddr, peer: SocketAddr, tos: u8) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    super::udp::set_tos(&socket, peer, tos);
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let socket = TcpSocket::from_std_stream(socket.into());
    if !local.ip().is_unspecified() && local.is_ipv4() == peer.is_ipv4() {
        socket.bind(SocketAddr::new(local.ip(), 0))?;
    }
    socket.connect(peer).await
}

/// Last time bytes moved either way, for the idle timeout.
#[derive(Debug)]
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Serve one established connection (its read and write halves) until it closes, then tell
/// the core. `slot` (its place under the caps) is given back when the socket is closed.
#[allow(clippy::too_many_arguments)]
async fn run_connection<R, W>(
    reader: R,
    writer: W,
    flow: Flow,
    peer: SocketAddr,
    rx: mpsc::Receiver<Bytes>,
    weak: mpsc::WeakSender<Bytes>,
    shared: Arc<TcpShared>,
    slot: Slot,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    activity.touch();
    let mut writer = tokio::spawn(write_loop(writer, rx, activity.clone()));
    let reason = read_loop(reader, flow, peer, &weak, &shared, &activity, &mut writer).await;
    writer.abort();
    drop(slot);
    shared.metrics.closed(reason);
    match reason {
        CloseReason::HeaderTimeout | CloseReason::Idle | CloseReason::Oversized => {
            tracing::info!(%peer, conn = ?flow.conn, reason = reason.as_str(), "TCP connection closed");
        }
        _ => {
            tracing::debug!(%peer, conn = ?flow.conn, reason = reason.as_str(), "TCP connection closed");
        }
    }
    if let Some(id) = flow.conn {
        let _ = shared.events.send(TcpEvent::Closed { id }).await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Bytes>,
    activity: Arc<Activity>,
) -> CloseReason {
    while let Some(data) = rx.recv().await {
        // `flush`: a TLS stream holds records until flushed (a no-op for TCP).
        let write = async {
            writer.write_all(&data).await?;
            writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TCP write failed");
                return CloseReason::Peer;
            }
            Err(_) => {
                tracing::warn!("TCP write stalled: closing the connection");
                return CloseReason::WriteStalled;
            }
        }
    }
    // The core dropped the queue (the peer stopped reading, or shutdown): close our side.
    let _ = writer.shutdown().await;
    CloseReason::NotReading
}

/// Only line ends: a keepalive (or half of one), not the start of a message.
fn only_line_ends(buf: &[u8]) -> bool {
    buf.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    flow: Flow,
    peer: SocketAddr,
    weak: &mpsc::WeakSender<Bytes>,
    shared: &TcpShared,
    activity: &Activity,
    writer: &mut JoinHandle<CloseReason>,
) -> CloseReason {
    // One byte over the limit is enough to know a message is too large: the buffer never
    // holds more than `max_message_size + 1` bytes.
    let most = shared.limits.max_message_size.saturating_add(1);
    let mut buf = BytesMut::with_capacity(READ_CHUNK.min(most));
    let idle = tokio::time::sleep_until(activity.last() + shared.idle_timeout);
    tokio::pin!(idle);
    // When the message now in the buffer began (None: nothing pending).
    let mut started: Option<Instant> = None;
    let header = tokio::time::sleep_until(Instant::now() + shared.header_timeout);
    tokio::pin!(header);
    loop {
        let room = most.saturating_sub(buf.len()).clamp(1, READ_CHUNK);
        buf.reserve(room);
        let mut window = (&mut buf).limit(room);
        tokio::select! {
            read = reader.read_buf(&mut window) => match read {
                Ok(0) => return CloseReason::Peer,
                // What a TLS stream reports for an alert or a protocol error (a peer that
                // refused our client certificate after the handshake, say): worth a line.
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    tracing::info!(%peer, transport = flow.transport.name(), %error, "connection ended by a TLS error");
                    return CloseReason::Peer;
                }
                Err(_) => return CloseReason::Peer,
                Ok(_) => activity.touch(),
            },
            reason = &mut *writer => return reason.unwrap_or(CloseReason::Peer),
            () = &mut idle => {
                let deadline = activity.last() + shared.idle_timeout;
                if deadline <= Instant::now() {
                    return CloseReason::Idle;
                }
                idle.as_mut().reset(deadline);
                continue;
            }
            () = &mut header, if started.is_some() => return CloseReason::HeaderTimeout,
        }
        let mut cut = false;
        loop {
            match next_frame(&mut buf, &shared.limits) {
                Ok(FrameStep::Frame(data)) => {
                    cut = true;
                    let event = TcpEvent::Frame { flow, peer, data };
                    if shared.events.send(event).await.is_err() {
                        return CloseReason::Shutdown;
                    }
                }
                Ok(FrameStep::Ping) => {
                    if let Some(tx) = weak.upgrade() {
                        let _ = tx.try_send(PONG);
                    }
                }
                Ok(FrameStep::NeedMore) => break,
                Err(error) => {
                    ShellMetrics::inc(&shared.metrics.tcp_framing_errors);
                    tracing::info!(%peer, %error, "TCP framing error: closing the connection");
                    return match error {
                        ParseError::TooLarge(_) => CloseReason::Oversized,
                        _ => CloseReason::Malformed,
                    };
                }
            }
        }
        if only_line_ends(&buf) {
            started = None;
        } else if started.is_none() || cut {
            let now = Instant::now();
            started = Some(now);
            header.as_mut().reset(now + shared.header_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK1\r\n\
From: <sip:b@127.0.0.2>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody";

    struct NoRoutes;
    impl trunkgate_sip::Routing for NoRoutes {
        fn classify(&self, _: std::net::IpAddr) -> trunkgate_sip::Party {
            trunkgate_sip::Party::Unknown
        }
        fn candidates(
            &self,
            _: std::time::Instant,
            _: trunkgate_sip::Party,
            _: Option<&[u8]>,
            _: &dyn trunkgate_sip::TrunkLoad,
            _: &mut Vec<trunkgate_sip::Target>,
        ) -> trunkgate_sip::RouteChoice {
            trunkgate_sip::RouteChoice::default()
        }
    }

    #[tokio::test]
    async fn a_refused_connect_reaches_the_core_at_once_and_gives_its_slot_back() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = closed.local_addr().unwrap();
        drop(closed); // nothing listens there now: the connect is refused
        let (events, mut core) = mpsc::channel(4);
        let admit = Arc::new(Admit::new(
            Arc::new(NoRoutes),
            Arc::new(trunkgate_sip::NoAdmission),
            4,
            4,
        ));
        let settings = TcpSettings {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            tos: 0,
        };
        let shared = Arc::new(TcpShared::new(
            events,
            Arc::new(ShellMetrics::default()),
            settings,
            admit.clone(),
        ));
        let flow = Flow {
            transport: Transport::Tcp,
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: Some(ConnId(7)),
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tx.try_send(Bytes::from_static(OPTIONS)).unwrap();
        let slot = admit.outgoing().unwrap();
        assert_eq!(admit.open(), 1);
        let started = std::time::Instant::now();
        connect(flow, peer, rx, tx.downgrade(), shared.clone(), slot).await;
        match core.recv().await {
            Some(TcpEvent::ConnectFailed {
                id,
                transport,
                destination,
            }) => {
                assert_eq!(
                    (id, transport, destination),
                    (ConnId(7), Transport::Tcp, peer)
                );
            }
            other => panic!("expected ConnectFailed, got {other:?}"),
        }
        assert!(started.elapsed() <= CONNECT_TIMEOUT);
        assert_eq!(admit.open(), 0, "the slot is given back");
        assert_eq!(
            shared.metrics.tcp_connect_failures.load(Ordering::Relaxed),
            1
        );
        assert_eq!(shared.metrics.tcp_send_drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn only_line_ends_do_not_start_the_header_clock() {
        assert!(only_line_ends(b""));
        assert!(only_line_ends(b"\r\n"));
        assert!(!only_line_ends(b"\r\nO"));
    }
}
