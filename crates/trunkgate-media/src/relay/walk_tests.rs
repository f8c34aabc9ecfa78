//! Readers walk the sessions a chunk per hold of the control lock: `/calls` still lists every
//! call in id order, and a scrape counts a call deleted during its walk exactly once.

#![allow(clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Relay, WALK_CHUNK};
use crate::{CallInfo, Latch, MediaConfig, SdpKind, Side};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn relay(first: u16, last: u16) -> Relay {
    let cfg = MediaConfig {
        bind: LO,
        advertised: LO,
        alternate: None,
        port_min: first,
        port_max: last,
        dscp: 0,
        latch: Latch::Any,
        timeout: Duration::from_secs(600),
        hold_timeout: Duration::from_secs(3600),
        threads: 1,
        quarantine: Duration::from_secs(30),
        nice: 0,
        max_sockets: usize::MAX,
        quality: crate::QualityConfig::default(),
        fastpath: crate::fastpath::FastPath::Userspace,
    };
    Relay::start(cfg, vec!["carrier-a".into()], Box::new(|_| {})).expect("relay starts")
}

fn sdp(port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
        .into_bytes()
}

/// `n` calls with ids 1..=n (offer from A, answer from B), trunk carrier-a.
fn anchor(relay: &Relay, n: u64) {
    let mut out = Vec::new();
    for id in 1..=n {
        let call = CallInfo {
            id,
            call_id: b"walk@test",
            trunk: Some(0),
            inbound: false,
            peers: [None, None],
        };
        for (side, kind) in [(Side::A, SdpKind::Offer), (Side::B, SdpKind::Answer)] {
            out.clear();
            relay
                .update(&call, side, kind, &sdp(9000), &mut out)
                .expect("update");
        }
    }
}

#[test]
fn calls_walk_lists_every_call_in_id_order() {
    let relay = relay(46000, 47499);
    let n = (WALK_CHUNK * 2 + 3) as u64;
    anchor(&relay, n);
    let ids: Vec<u64> = relay.calls().iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>());
    relay.delete(n);
    relay.delete(WALK_CHUNK as u64);
    assert_eq!(relay.calls().len() as u64, n - 2);
}

#[test]
fn a_call_deleted_during_the_scrape_walk_counts_once() {
    let relay = relay(47500, 48999);
    let n = (WALK_CHUNK * 2 + 10) as u64;
    anchor(&relay, n);
    // One datagram relayed from A (sent to B's peer) per call. No traffic runs in this
    // test, so writing the relay thread's counters from here races with nothing.
    for s in super::lock(&relay.control).sessions.values() {
        for st in s.streams.iter().flatten() {
            st.legs[1].shared.tx_packets.store(1, Relaxed);
        }
    }
    let m = relay.metrics();
    let from_pbx = |snap: &super::MediaMetricsSnapshot| {
        snap.trunks
            .iter()
            .find(|t| t.trunk.as_deref() == Some("carrier-a"))
            .map(|t| t.packets[0])
    };
    let mut scrape = m.begin();
    assert!(!m.step(&mut scrape), "the first chunk is not the end");
    relay.delete(5); // visited: counted by the visit
    relay.delete(n); // not reached yet: counted at its final figures
    while !m.step(&mut scrape) {}
    let snap = m.finish(scrape);
    assert_eq!(from_pbx(&snap), Some(n));
    assert_eq!(snap.sessions, n - 2);
    assert_eq!(snap.streams, n - 2);
    // The next scrape has both in the folded totals.
    let snap = m.snapshot();
    assert_eq!(from_pbx(&snap), Some(n));
    for id in 1..=n {
        relay.delete(id);
    }
    let snap = m.snapshot();
    assert_eq!((from_pbx(&snap), snap.sessions), (Some(n), 0));
}
