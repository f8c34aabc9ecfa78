//! The SIP shell: sockets around the sans-IO [`Proxy`].
//!
//! One task (the core task, [`SipShell::run`]) owns the `Proxy` and every UDP socket. It waits
//! on: any UDP socket readable (drained in place, up to [`UDP_BATCH`] datagrams per wakeup,
//! into one reused buffer), TCP events from connection tasks (a bounded channel), the core's
//! next timer deadline, and the shutdown signal. After every input or timeout it drains
//! `poll_transmit()`: UDP goes out with `try_send_to` on the matching socket (a full socket
//! buffer drops and counts, it never blocks the loop); TCP goes to the connection's FIFO
//! writer queue, opening a connection when none exists. Since one task feeds the core
//! sequentially, messages of one dialog leave in the order they arrived. TLS connections
//! take the same path as TCP ones (`send_stream`); only their tasks differ, by a handshake.

pub mod admit;
pub mod close;
pub mod connections;
pub mod framing;
pub mod tcp;
pub mod tls;
pub mod udp;

use crate::metrics::{CoreStatus, ShellMetrics};
use crate::trunk_health::TrunkHealthFeed;
use connections::{Connections, SendError};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tcp::{TcpEvent, TcpShared};
use tokio::sync::{mpsc, oneshot};
use trunkgate_sip::{Flow, Proxy, Transmit, Transport};
use udp::UdpListener;

/// Most datagrams read from one socket per wakeup before the loop looks at its other inputs.
pub const UDP_BATCH: usize = 64;
/// Most TCP events handled per wakeup.
const EVENT_BATCH: usize = 64;
/// Capacity of the channel from TCP connection tasks to the core task.
pub const EVENT_QUEUE: usize = 4096;

pub struct SipShell {
    proxy: Proxy,
    udp: Vec<UdpListener>,
    /// Round-robin start for UDP readiness polling.
    udp_next: usize,
    receiver: udp::Receiver,
    conns: Connections,
    events: mpsc::Receiver<TcpEvent>,
    tcp: Arc<TcpShared>,
    metrics: Arc<ShellMetrics>,
    status: Arc<CoreStatus>,
    shutdown_grace: Duration,
    /// The multi-thread runtime that runs TCP connection tasks.
    spawner: tokio::runtime::Handle,
    /// UDP transmits collected during one wakeup, sent together (`sendmmsg`).
    udp_batch: Vec<Transmit>,
    /// Datagrams of one `recvmmsg` (reused).
    received: Vec<(bytes::Bytes, std::net::SocketAddr)>,
    /// Dialogs whose media the relay found dead (`media.timeout`).
    media_timeouts: Option<mpsc::UnboundedReceiver<(u64, Duration)>>,
    /// Trunk health: fed with the core's events, sends probes through the core.
    health: Option<TrunkHealthFeed>,
    registrations: Option<crate::registration::Registrations>,
    /// Told the dialog id of every answered call (the relay's one-way audio check starts).
    on_answered: Option<Box<dyn Fn(u64) + Send>>,
    /// New policy snapshots (reloads) and drill changes, applied between two inputs.
    control: Option<mpsc::UnboundedReceiver<CoreMessage>>,
    /// Call records: built from the events, handed to the writer thread without waiting.
    records: Option<crate::records_feed::RecordsFeed>,
    /// Trunkgate's own test calls: their agent, fed over the internal flow.
    testcalls: Option<crate::testcall::TestCalls>,
    /// Transmits to the test-call agent collected during one flush.
    internal: Vec<Transmit>,
}

/// A reloaded policy for the core: routing and admission, swapped between two inputs.
pub struct PolicySwap {
    pub routing: Arc<crate::routing_adapter::PolicyRouting>,
    pub admission: Arc<crate::admission_adapter::PolicyAdmission>,
}

/// What the control plane tells the core loop.
pub enum CoreMessage {
    Policy(PolicySwap),
    /// A run of test calls to place.
    TestRun(crate::testcall::RunRequest),
    /// A drill started: its expiry is a new deadline for the loop's timer.
    Wake,
}

/// How the core loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every dialog finished during the drain.
    Drained,
    /// The grace period ran out with this many dialogs still up.
    GraceExpired { dialogs: usize },
}

impl SipShell {
    pub fn new(
        proxy: Proxy,
        udp: Vec<UdpListener>,
        events: mpsc::Receiver<TcpEvent>,
        tcp: Arc<TcpShared>,
        status: Arc<CoreStatus>,
        shutdown_grace: Duration,
        spawner: tokio::runtime::Handle,
    ) -> SipShell {
        let metrics = tcp.metrics.clone();
        SipShell {
            proxy,
            udp,
            udp_next: 0,
            receiver: udp::Receiver::default(),
            conns: Connections::default(),
            events,
            tcp,
            metrics,
            status,
            shutdown_grace,
            spawner,
            udp_batch: Vec::with_capacity(UDP_BATCH * 2),
            received: Vec::with_capacity(udp::RECV_BATCH),
            media_timeouts: None,
            health: None,
            registrations: None,
            on_answered: None,
            control: None,
            records: None,
            testcalls: None,
            internal: Vec::new(),
        }
    }

    /// Place test calls (`ctl testcall`, `ctl validate`) with `agent`.
    pub fn with_testcalls(mut self, agent: crate::testcall::TestCalls) -> SipShell {
        self.testcalls = Some(agent);
        self
    }

    /// Build call records from the core's events.
    pub fn with_records(mut self, records: Option<crate::records_feed::RecordsFeed>) -> SipShell {
        self.records = records;
        self
    }

    /// Receive reloaded policies (`Proxy::set_routing`/`set_admission` between two inputs)
    /// and drill wake-ups.
    pub fn with_control(mut self, control: mpsc::UnboundedReceiver<CoreMessage>) -> SipShell {
        self.control = Some(control);
        self
    }

    /// Take a reloaded policy: calls in progress keep their dialogs; the next new request
    /// is routed and admitted by the new one.
    fn apply_policy(&mut self, swap: PolicySwap) {
        let routing: Arc<dyn trunkgate_sip::Routing> = swap.routing.clone();
        self.proxy.set_routing(routing);
        self.proxy.set_admission(swap.admission);
        if let Some(records) = self.records.as_mut() {
            records.set_names(crate::records_feed::Names::of(&swap.routing));
        }
        if let Some(health) = self.health.as_mut() {
            health.set_routing(swap.routing);
        }
    }

    /// Register with the trunks' registrars (started when the loop starts, deregistered
    /// at shutdown) and feed their results to metrics, logs and routing.
    pub fn with_registrations(
        mut self,
        registrations: crate::registration::Registrations,
    ) -> SipShell {
        self.registrations = Some(registrations);
        self
    }

    /// Feed the core's events to trunk health, and let it probe trunks.
    pub fn with_health(mut self, health: TrunkHealthFeed) -> SipShell {
        self.health = Some(health);
        self
    }

    /// The earliest of the core's and trunk health's deadlines.
    fn next_deadline(&self) -> Option<Instant> {
        let health = self
            .health
            .as_ref()
            .and_then(TrunkHealthFeed::next_deadline);
        let tests = self
            .testcalls
            .as_ref()
            .and_then(crate::testcall::TestCalls::next_deadline);
        [self.proxy.poll_timeout(), health, tests]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timers are due: the core's, then trunk health's (cooldowns, probes).
    fn on_timeout(&mut self) {
        let now = Instant::now();
        self.proxy.handle_timeout(now);
        self.drain_events();
        if let Some(health) = self.health.as_mut() {
            health.poll(now, &mut self.proxy);
        }
        if let Some(agent) = self.testcalls.as_mut() {
            agent.poll(now, &mut self.proxy);
        }
        self.flush();
    }

    /// Tell `hook` the dialog id of every answered call.
    pub fn with_answered(mut self, hook: impl Fn(u64) + Send + 'static) -> SipShell {
        self.on_answered = Some(Box::new(hook));
        self
    }

    /// Hand every event the core produced to trunk health (dropped without it), answers to
    /// the answer hook.
    fn drain_events(&mut self) {
        let now = Instant::now();
        while let Some(event) = self.proxy.poll_event() {
            let event = match &self.registrations {
                Some(r) => r.on_event(event),
                None => Some(event),
            };
            let Some(event) = event else { continue };
            if let Some(agent) = self.testcalls.as_mut() {
                agent.on_event(&event);
            }
            if let Some(records) = self.records.as_mut() {
                records.on_event(&event);
            }
            if let (trunkgate_sip::Event::CallAnswered { dialog, .. }, Some(hook)) =
                (&event, &self.on_answered)
            {
                hook(*dialog);
            }
            if let Some(health) = self.health.as_mut() {
                health.on_event(now, event);
            }
        }
    }

    /// Receive the relay's dead-media reports (dialog id, idle time): each ends its call with BYE.
    pub fn with_media_timeouts(
        mut self,
        timeouts: mpsc::UnboundedReceiver<(u64, Duration)>,
    ) -> SipShell {
        self.media_timeouts = Some(timeouts);
        self
    }

    /// Run until a shutdown request has been drained (or its grace period is over).
    pub async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Ended {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let grace = tokio::time::sleep_until(far);
        tokio::pin!(grace);
        let mut armed: Option<Instant> = None;
        let mut listening_for_signal = true;
        let mut draining = false;
        if let Some(r) = &self.registrations {
            r.start(Instant::now(), &mut self.proxy);
            self.flush();
        }
        loop {
            let deadline = self.next_deadline();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            tokio::select! {
                signal = &mut shutdown, if listening_for_signal => {
                    listening_for_signal = false;
                    if signal.is_ok() {
                        draining = true;
                        if let Some(health) = self.health.as_ref() {
                            health.end_drills(Instant::now());
                        }
                        self.proxy.begin_shutdown();
                        // Take our Contacts back from the registrars (Expires: 0).
                        self.proxy.deregister_all(Instant::now());
                        self.status.shutting_down.store(true, Ordering::Relaxed);
                        self.flush();
                        grace.as_mut().reset((Instant::now() + self.shutdown_grace).into());
                        tracing::info!(
                            dialogs = self.proxy.active_dialogs(),
                            grace = ?self.shutdown_grace,
                            "draining: new INVITEs are refused"
                        );
                    }
                }
                (index, ready) = udp::readable(&self.udp, self.udp_next) => {
                    self.udp_next = index + 1;
                    match ready {
                        Ok(()) => self.drain_udp(index),
                        Err(error) => tracing::warn!(%error, "UDP socket error"),
                    }
                }
                event = self.events.recv() => {
                    if let Some(event) = event {
                        self.on_tcp_event(event);
                        for _ in 1..EVENT_BATCH {
                            match self.events.try_recv() {
                                Ok(event) => self.on_tcp_event(event),
                                Err(_) => break,
                            }
                        }
                        self.flush();
                    }
                }
                dialog = next_media_timeout(&mut self.media_timeouts) => {
                    match dialog {
                        Some((dialog, idle)) => {
                            self.proxy.media_timeout(Instant::now(), dialog, idle);
                            self.flush();
                        }
                        None => self.media_timeouts = None,
                    }
                }
                message = next_control(&mut self.control) => {
                    match message {
                        Some(CoreMessage::Policy(swap)) => self.apply_policy(swap),
                        Some(CoreMessage::TestRun(run)) => {
                            if let Some(agent) = self.testcalls.as_mut() {
                                agent.enqueue(run);
                                agent.poll(Instant::now(), &mut self.proxy);
                                self.flush();
                            }
                        }
                        // The next turn of the loop re-arms the timer.
                        Some(CoreMessage::Wake) => {}
                        None => self.control = None,
                    }
                }
                () = &mut timer, if armed.is_some() => {
                    // Re-arm on the next pass even if the core reports the same deadline.
                    armed = None;
                    self.on_timeout();
                }
                () = &mut grace, if draining => {
                    let dialogs = self.proxy.active_dialogs();
                    self.publish();
                    return Ended::GraceExpired { dialogs };
                }
            }
            self.publish();
            if draining && self.proxy.active_dialogs() == 0 && self.proxy.deregistering() == 0 {
                return Ended::Drained;
            }
        }
    }

    fn publish(&self) {
        self.status.publish(
            self.proxy.active_dialogs(),
            self.proxy.active_transactions(),
        );
    }

    /// Read up to [`UDP_BATCH`] datagrams from socket `index`, feeding each to the core.
    fn drain_udp(&mut self, index: usize) {
        let Some(listener) = self.udp.get(index) else {
            return;
        };
        let flow = listener.flow;
        let mut datagrams = std::mem::take(&mut self.received);
        for _ in 0..UDP_BATCH / udp::RECV_BATCH {
            let Some(listener) = self.udp.get(index) else {
                break;
            };
            datagrams.clear();
            match self
                .receiver
                .try_recv_batch(&listener.socket, &mut datagrams)
            {
                Ok(()) => {
                    let now = Instant::now();
                    let full = datagrams.len() == udp::RECV_BATCH;
                    for (data, source) in datagrams.drain(..) {
                        self.proxy.handle_input(now, flow, source, data);
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    // ICMP errors surfacing on the socket, and the like: not fatal.
                    tracing::debug!(local = %flow.local, %error, "UDP receive error");
                }
            }
        }
        self.received = datagrams;
        // Everything this wakeup produced leaves together (one sendmmsg per socket). Order
        // is kept: the core queued it in the order the inputs arrived.
        self.flush();
    }

    fn on_tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened { flow, peer, writer } => {
                self.conns.insert(flow, peer, writer);
                self.metrics
                    .tcp_connections_active
                    .fetch_add(1, Ordering::Relaxed);
                ShellMetrics::inc(&self.metrics.tcp_connections_total);
            }
            TcpEvent::Frame { flow, peer, data } => {
                self.proxy.handle_input(Instant::now(), flow, peer, data);
            }
            TcpEvent::ConnectFailed {
                id,
                transport,
                destination,
            } => {
                if let Some(flow) = self.conns.remove(id) {
                    self.metrics
                        .tcp_connections_active
                        .fetch_sub(1, Ordering::Relaxed);
                    self.proxy.connection_closed(flow);
                }
                self.proxy
                    .transport_failed(Instant::now(), transport, destination);
                self.flush();
            }
            TcpEvent::Closed { id } => {
                let outgoing = self.conns.outgoing_peer(id);
                if let Some(flow) = self.conns.remove(id) {
                    self.metrics
                        .tcp_connections_active
                        .fetch_sub(1, Ordering::Relaxed);
                    self.proxy.connection_closed(flow);
                    // A connection we opened is gone (closed by the peer, or a TLS peer
                    // that refused us after the handshake, e.g. for a missing client
                    // certificate): requests still waiting on it for a first answer end at
                    // once (RFC 3261 §17.1.4, a transport error) instead of at Timer B.
                    if let Some(peer) = outgoing {
                        self.proxy
                            .transport_failed(Instant::now(), flow.transport, peer);
                    }
                    self.flush();
                }
            }
        }
    }

    /// Send everything the core has queued: TCP in order per connection, UDP collected and
    /// sent in batches.
    fn flush(&mut self) {
        // What goes to the test-call agent may make it answer (an ACK, a 200 to a BYE),
        // which makes more output: a few rounds at most (bounded all the same).
        for _ in 0..8 {
            self.drain_events();
            while let Some(transmit) = self.proxy.poll_transmit() {
                match transmit.flow.transport {
                    Transport::Udp => self.udp_batch.push(transmit),
                    Transport::Tcp | Transport::Tls => self.send_stream(transmit),
                    Transport::Internal => self.internal.push(transmit),
                }
            }
            if self.internal.is_empty() {
                break;
            }
            let now = Instant::now();
            let internal = std::mem::take(&mut self.internal);
            for t in internal {
                match self.testcalls.as_mut() {
                    Some(agent) => agent.on_message(now, &mut self.proxy, t.data),
                    None => tracing::debug!("internal transmit without a test-call agent"),
                }
            }
        }
        self.internal.clear();
        if !self.udp_batch.is_empty() {
            self.send_udp_batch();
        }
        // The relay threads act on this batch's SDPs and deletes now (one wake-up each).
        self.proxy.flush_media();
    }

    /// Send the collected UDP transmits: consecutive runs for the same socket go out in one
    /// `sendmmsg`. What the kernel refuses (buffer full) is dropped and counted, never waited
    /// for.
    fn send_udp_batch(&mut self) {
        let batch = std::mem::take(&mut self.udp_batch);
        let socket_of = |t: &Transmit| udp::pick_index(&self.udp, t.flow.local, t.destination);
        let mut start = 0;
        while start < batch.len() {
            let index = socket_of(&batch[start]);
            let mut end = start + 1;
            while end < batch.len() && socket_of(&batch[end]) == index {
                end += 1;
            }
            let run = &batch[start..end];
            let sent = match index.and_then(|i| self.udp.get(i)) {
                Some(listener) => udp::send_batch(&listener.socket, run),
                None => {
                    tracing::debug!("no UDP socket for a destination");
                    0
                }
            };
            let dropped = (run.len() - sent) as u64;
            if dropped > 0 {
                self.metrics
                    .udp_send_drops
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            start = end;
        }
        self.udp_batch = batch;
        self.udp_batch.clear();
    }

    /// Queue `t` on its connection (TCP or TLS): the one it names, else the open one to its
    /// destination over its transport, else a new one.
    fn send_stream(&mut self, t: Transmit) {
        let transport = t.flow.transport;
        let id = match t
            .flow
            .conn
            .or_else(|| self.conns.to_peer(transport, t.destination))
        {
            Some(id) => id,
            None => return self.open_stream(t),
        };
        match self.conns.send(id, t.data) {
            Ok(()) => return,
            Err(SendError::Gone) => ShellMetrics::inc(&self.metrics.tcp_send_drops),
            Err(SendError::Full) => {
                ShellMetrics::inc(&self.metrics.tcp_send_drops);
                tracing::warn!(peer = %t.destination, conn = id.0, "TCP peer not reading: closing");
                self.conns.close(id);
            }
        }
        // The message could not be written: whatever waits on it must not wait for Timer B.
        self.proxy
            .transport_failed(Instant::now(), transport, t.destination);
    }

    /// Open a connection (TCP, or TLS: the handshake runs in the connection's task) to
    /// `t.destination` with `t.data` as its first message.
    fn open_stream(&mut self, t: Transmit) {
        let slot = match self.tcp.admit.outgoing() {
            Ok(slot) => slot,
            Err(reason) => {
                // The SIP descriptor share is used up: refuse here, never in media's share.
                self.tcp.refused(t.destination, reason);
                ShellMetrics::inc(&self.metrics.tcp_send_drops);
                self.proxy
                    .transport_failed(Instant::now(), t.flow.transport, t.destination);
                return;
            }
        };
        let flow = Flow {
            transport: t.flow.transport,
            local: t.flow.local,
            conn: Some(self.tcp.next_id()),
        };
        let (tx, rx) = mpsc::channel(tcp::WRITE_QUEUE);
        let weak = tx.downgrade();
        // A fresh queue always has room.
        let _ = tx.try_send(t.data);
        self.conns.insert_outgoing(flow, t.destination, tx);
        self.metrics
            .tcp_connections_active
            .fetch_add(1, Ordering::Relaxed);
        ShellMetrics::inc(&self.metrics.tcp_connections_total);
        self.spawner.spawn(tcp::connect(
            flow,
            t.destination,
            rx,
            weak,
            self.tcp.clone(),
            slot,
        ));
    }
}

/// The next control message; pending forever without a sender.
async fn next_control(
    rx: &mut Option<mpsc::UnboundedReceiver<CoreMessage>>,
) -> Option<CoreMessage> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next dead-media report; pending forever without a relay.
async fn next_media_timeout(
    rx: &mut Option<mpsc::UnboundedReceiver<(u64, Duration)>>,
) -> Option<(u64, Duration)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
