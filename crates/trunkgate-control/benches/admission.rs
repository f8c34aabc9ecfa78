//! The admission decision for one datagram: `RoutingTable::classify` (which peer is the
//! source) plus `AdmissionControl::datagram` (exemption, bans, the per-source flood
//! limiter, the allow-list policy), and one call-rate token. Issue 3 budget: < 300 ns.
//!
//! `cargo bench -p trunkgate-control --bench admission`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use trunkgate_config::{HostPort, Policy};
use trunkgate_control::RoutingTable;
use trunkgate_control::admission::{AdmissionControl, DatagramVerdict};

const POLICY: &str = r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "10.0.0.5:5060"
allow = ["10.0.0.0/24"]
[[trunk]]
name = "carrier-a"
address = "198.51.100.7:5060"
allow = ["198.51.100.0/24"]
max_sessions = 300
max_cps = 1000000
[[trunk]]
name = "carrier-b"
address = "203.0.113.9:5060"
[security]
unknown_source = "drop"
[flood]
# A hot source must stay within its limit for the whole run: measure the limiter, not bans.
rate = 1000000000
burst = 1000000000
max_sources = 100000
"#;

fn no_dns(hp: &HostPort, _: trunkgate_config::PeerTransport) -> std::io::Result<Vec<SocketAddr>> {
    Err(std::io::Error::other(format!("no DNS: {hp}")))
}

fn admission(c: &mut Criterion) {
    let policy = Policy::from_toml(POLICY, "bench.toml").unwrap();
    let table =
        RoutingTable::new(&policy, &mut trunkgate_control::TrunkIds::default(), no_dns).unwrap();
    let admission = AdmissionControl::new(&policy, &table);
    let decide = |ip: IpAddr| admission.datagram(ip, table.classify(ip));

    let pbx: IpAddr = "10.0.0.5".parse().unwrap();
    assert_eq!(decide(pbx), DatagramVerdict::Pass);
    c.bench_function("datagram/pbx_exempt", |b| b.iter(|| decide(black_box(pbx))));

    let hot: IpAddr = "192.0.2.77".parse().unwrap();
    assert_eq!(decide(hot), DatagramVerdict::DropUnknown);
    c.bench_function("datagram/unknown_hot_source", |b| {
        b.iter(|| decide(black_box(hot)))
    });

    // A new source each iteration: a key insert while below max_sources. The limiter is
    // swept (as `maintain` does every second) whenever it fills, so every iteration pays
    // the insert, never the overflow shortcut.
    let mut n: u32 = 0;
    c.bench_function("datagram/new_source_each_time", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            if n % 90_000 == 0 {
                admission.maintain();
            }
            decide(black_box(IpAddr::V4(Ipv4Addr::from_bits(0x0b00_0000 + n))))
        })
    });

    // A banned flooder: the ban map's lookup (under its mutex) before any limiter.
    let strict = Policy::from_toml(
        &POLICY.replace(
            "rate = 1000000000\nburst = 1000000000",
            "rate = 1\nburst = 1",
        ),
        "bench.toml",
    )
    .unwrap();
    let strict = AdmissionControl::new(&strict, &table);
    let flooder: IpAddr = "192.0.2.66".parse().unwrap();
    strict.datagram(flooder, table.classify(flooder));
    assert_eq!(
        strict.datagram(flooder, table.classify(flooder)),
        DatagramVerdict::DropBanned
    );
    c.bench_function("datagram/banned_source", |b| {
        b.iter(|| strict.datagram(black_box(flooder), table.classify(black_box(flooder))))
    });

    c.bench_function("try_call_rate", |b| {
        b.iter(|| admission.try_call_rate(black_box(trunkgate_control::TrunkId(0))))
    });
}

criterion_group!(benches, admission);
criterion_main!(benches);
