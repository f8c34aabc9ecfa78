//! Strategies through the whole decision path, without sockets or a clock: the real policy
//! (parsed TOML), the real routing adapter and health, the real proxy core with its exact
//! session counts, driven with INVITEs on a fake clock. Where a call lands is read from
//! what the core sends. Deterministic: the same input gives the same split every run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::routing_adapter::PolicyRouting;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use trunkgate_config::Policy;
use trunkgate_control::{RoutingTable, TrunkIds};
use trunkgate_sip::{Flow, Proxy, ProxyMetrics, Transport};

const PROXY: &str = "127.0.0.1:5060";
const PBX: &str = "127.0.0.2:5060";
const A: &str = "127.0.0.3:5060";
const B: &str = "127.0.0.4:5060";

/// A policy with trunks a and b (`a` and `b`: extra keys of each) on one route.
fn policy(strategy: &str, a: &str, b: &str) -> Policy {
    let src = format!(
        r#"
[listen]
sip = ["udp:{PROXY}"]
[pbx]
address = "{PBX}"
[[trunk]]
name = "a"
address = "{A}"
{a}
[[trunk]]
name = "b"
address = "{B}"
{b}
[[route]]
name = "r"
trunks = ["a", "b"]
strategy = "{strategy}"
"#
    );
    Policy::from_toml(&src, "sim.toml").unwrap_or_else(|e| panic!("{e}"))
}

struct Sim {
    proxy: Proxy,
    flow: Flow,
    now: Instant,
    calls: u32,
}

impl Sim {
    fn new(policy: &Policy) -> Sim {
        let table = RoutingTable::new(policy, &mut TrunkIds::default(), crate::startup::resolve)
            .expect("routing table");
        let now = Instant::now();
        let routing = Arc::new(PolicyRouting::new(table, policy));
        let flow = Flow {
            transport: Transport::Udp,
            local: PROXY.parse().unwrap(),
            conn: None,
        };
        let config = crate::startup::proxy_config_for_tests(policy, vec![flow]);
        let metrics = Arc::new(ProxyMetrics::new(policy.trunks.len()));
        Sim {
            proxy: Proxy::new(config, routing, metrics),
            flow,
            now,
            calls: 0,
        }
    }

    /// One new INVITE from the PBX; returns where the core sent it.
    fn call(&mut self) -> SocketAddr {
        self.calls += 1;
        let n = self.calls;
        let invite = format!(
            "INVITE sip:+15550{n:05}@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {PBX};branch=z9hG4bK-sim-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:pbx@127.0.0.2>;tag=f{n}\r\n\
             To: <sip:+15550{n:05}@127.0.0.1>\r\n\
             Call-ID: sim-{n}@pbx\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:pbx@{PBX}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.proxy.handle_input(
            self.now,
            self.flow,
            PBX.parse().unwrap(),
            Bytes::from(invite),
        );
        let mut to = None;
        while let Some(t) = self.proxy.poll_transmit() {
            if t.data.starts_with(b"INVITE ") {
                to = Some(t.destination);
            }
        }
        while self.proxy.poll_event().is_some() {}
        to.expect("the INVITE went to a trunk")
    }

    /// `calls` new calls (none ends: long calls); how many went to a and to b.
    fn split(&mut self, calls: u32) -> (u32, u32) {
        let (mut a, mut b) = (0, 0);
        for _ in 0..calls {
            match self.call().to_string().as_str() {
                A => a += 1,
                B => b += 1,
                other => panic!("call sent to {other}"),
            }
        }
        (a, b)
    }
}

#[test]
fn weighted_three_to_one_over_4000_calls() {
    let mut sim = Sim::new(&policy("weighted", "weight = 3", "weight = 1"));
    let (a, b) = sim.split(4000);
    let share = f64::from(a) / 4000.0;
    assert!(
        (0.72..=0.78).contains(&share),
        "a took {a}, b {b}: {share:.3} of first picks, want 0.75 ± 0.03"
    );
    // Smooth weighted round-robin interleaves (a a b a ...): never a long run of b.
    let mut sim = Sim::new(&policy("weighted", "weight = 3", "weight = 1"));
    let firsts: Vec<SocketAddr> = (0..8).map(|_| sim.call()).collect();
    let bs = firsts.iter().filter(|d| d.to_string() == B).count();
    assert_eq!(bs, 2, "two of every eight first picks go to b: {firsts:?}");
}

#[test]
fn least_utilized_keeps_100_and_300_near_one_to_three_under_long_calls() {
    let mut sim = Sim::new(&policy(
        "least-utilized",
        "max_sessions = 100",
        "max_sessions = 300",
    ));
    let (a, b) = sim.split(300);
    assert_eq!(a + b, 300);
    let ratio = f64::from(a) / f64::from(b);
    assert!(
        (ratio - 1.0 / 3.0).abs() <= 0.1 / 3.0,
        "a {a} / b {b} = {ratio:.3}, want 1:3 within 10 %"
    );
    assert_eq!(sim.proxy.trunk_sessions(0), a);
    assert_eq!(sim.proxy.trunk_sessions(1), b);
}

#[test]
fn round_robin_alternates() {
    let mut sim = Sim::new(&policy("round-robin", "", ""));
    let order: Vec<String> = (0..6).map(|_| sim.call().to_string()).collect();
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "round-robin must alternate: {order:?}");
    }
    let mut sim = Sim::new(&policy("priority", "", ""));
    let (a, b) = sim.split(20);
    assert_eq!(
        (a, b),
        (20, 0),
        "priority always starts with the first trunk"
    );
}
