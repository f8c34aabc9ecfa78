//! The sans-IO proxy core: transactions (RFC 3261 §17), the stateful proxy (§16) and the
//! dialog table. Input: `(now, flow, source, bytes)` and timer expiries. Output: transmits
//! and the next deadline. Messages of one dialog leave in the order they arrived because one
//! `Proxy` value handles them sequentially.

use crate::message::Limits;
use crate::metrics::ProxyMetrics;
use crate::routing::Routing;
use crate::transport::{Flow, Transmit};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RFC 3261 timer bases.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Proxy INVITE transaction timeout (Timer C, > 3 min).
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
        }
    }
}

/// Static configuration of the core (changes need a restart).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host written in Via sent-by and Record-Route (an IP or a name).
    pub advertised: String,
    /// Listeners: each transport's local address (its port is advertised for that
    /// transport). At most one per transport is used for sending.
    pub listeners: Vec<Flow>,
    pub timers: Timers,
    pub limits: Limits,
    /// `User-Agent`/`Server` value on messages Trunkgate writes.
    pub server_name: String,
}

pub struct Proxy {
    config: ProxyConfig,
    routing: Arc<dyn Routing>,
    metrics: Arc<ProxyMetrics>,
    out: std::collections::VecDeque<Transmit>,
}

impl Proxy {
    pub fn new(config: ProxyConfig, routing: Arc<dyn Routing>, metrics: Arc<ProxyMetrics>) -> Proxy {
        Proxy { config, routing, metrics, out: Default::default() }
    }

    /// Feed one received datagram or stream frame.
    pub fn handle_input(&mut self, now: Instant, flow: Flow, source: SocketAddr, data: Bytes) {
        let _ = (now, flow, source, data, &self.config, &self.routing, &self.metrics);
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The earliest deadline at which [`Proxy::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Next message to send, if any. Drain after every input or timeout.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// A stream connection closed: forget it (dialogs fall back to connecting anew).
    pub fn connection_closed(&mut self, flow: Flow) {
        let _ = flow;
    }

    /// Swap the routing policy (calls in progress keep their dialogs' targets).
    pub fn set_routing(&mut self, routing: Arc<dyn Routing>) {
        self.routing = routing;
    }

    /// Stop accepting new INVITEs (answered 503); everything in progress continues.
    pub fn begin_shutdown(&mut self) {}

    /// Dialogs in progress (early or confirmed).
    pub fn active_dialogs(&self) -> usize {
        0
    }

    /// Transactions in flight.
    pub fn active_transactions(&self) -> usize {
        0
    }
}
