//! carrier-a as a DNS name (issue 19, RFC 3263), end to end on loopback: the real
//! `trunkgate` binary, dnsmasq as the provider's DNS (`tests/common/dnsmasq.rs`) on
//! `127.0.N.8:5353`, SIPp UAS nodes behind the name, the PBX's SIPp placing calls.
//!
//! `carrier-a.test` (no port in the policy, so SRV first): `_sip._udp` → `node1` priority
//! 10 (A `127.0.N.5`) and `node2` priority 20 (A `127.0.N.6`), TTL 2 s.
//! 1. Calls go to node1 only.
//! 2. node1 stopped: every call still completes at the PBX (0 failed) — the first one fails
//!    over to node2 after the route's `try_timeout`, the next ones go to node2 directly
//!    (node1's address is out for the breaker cooldown); carrier-a stays up.
//! 3. The record changes (dnsmasq restarted with node1 at `127.0.N.7`, a fresh UAS there):
//!    within the TTL plus the refresh, `/trunks` shows the new address and calls go there.
//!
//! No password or token in the log (a trunk with digest auth elsewhere; here the admin
//! token is checked not to leak). Net 84.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::dnsmasq::{Dnsmasq, Srv};
use common::load::uas_calls;
use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, http_get, poll, scratch_dir, test_policy};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

const NET: Net = Net::new(84);
const DOMAIN: &str = "carrier-a.test";
const TTL: u32 = 2;

fn ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, NET.n, host))
}

fn dns_addr() -> SocketAddr {
    SocketAddr::new(ip(8), 5353)
}

fn dns(dir: &Path, name: &str, node1: IpAddr) -> Dnsmasq {
    Dnsmasq::start(
        dir,
        name,
        dns_addr(),
        DOMAIN,
        &[
            Srv {
                priority: 10,
                weight: 0,
                target: "node1.carrier-a.test",
                port: 5060,
            },
            Srv {
                priority: 20,
                weight: 0,
                target: "node2.carrier-a.test",
                port: 5060,
            },
        ],
        &[
            ("node1.carrier-a.test", node1),
            ("node2.carrier-a.test", ip(6)),
        ],
        TTL,
    )
}

/// The test policy with carrier-a at `carrier-a.test` (no port: SRV), `[dns]` on dnsmasq,
/// and a 1 s `try_timeout` on the default route.
fn policy(dir: &Path) -> std::path::PathBuf {
    let text = test_policy(NET);
    let anchor = format!("address = \"{}:5060\"", NET.carrier_a_ip());
    assert!(text.contains(&anchor));
    let text = text.replacen(&anchor, &format!("address = \"{DOMAIN}\""), 1);
    let route = "strategy = \"priority\"\n";
    assert!(text.contains(route));
    let text = text.replacen(route, "strategy = \"priority\"\ntry_timeout = \"1s\"\n", 1);
    let text = format!(
        "{text}\n[dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n",
        dns_addr()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn carrier_a(tg: &Trunkgate) -> serde_json::Value {
    let _ = tg;
    let (status, body) = http_get(NET.admin(), "/trunks").expect("GET /trunks");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["trunks"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "carrier-a").cloned())
        .unwrap_or_else(|| panic!("no carrier-a in /trunks: {body}"))
}

fn addresses(t: &serde_json::Value) -> Vec<String> {
    t["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn calls(dir: &Path, name: &str, n: u32) {
    let spec = UacSpec::new(NET.pbx_ip(), NET.sip(), Transport::Udp, 10, n);
    let result = Uac::spawn(dir, name, spec).wait();
    result.assert_all_succeeded(n);
}

#[test]
fn srv_nodes_in_priority_order_failover_to_the_second_and_ttl_changes_followed() {
    let dir = scratch_dir("dns_srv");
    let mut dnsmasq = dns(&dir, "dnsmasq", ip(5));
    let uas_for = Duration::from_secs(120);
    let mut node1 = Some(Uas::start(&dir, "node1", ip(5), Transport::Udp, uas_for));
    let _node2 = Uas::start(&dir, "node2", ip(6), Transport::Udp, uas_for);
    let policy = policy(&dir);
    let tg = Trunkgate::start(&dir, Some(&policy), NET.admin());

    let t = carrier_a(&tg);
    assert_eq!(
        addresses(&t),
        ["127.0.84.5:5060", "127.0.84.6:5060"],
        "SRV order (priority 10, then 20): {t}"
    );
    assert_eq!(t["host"], DOMAIN, "{t}");

    // 1. Every call to the first node.
    calls(&dir, "uac1", 20);
    assert_eq!(uas_calls(&dir, ["node1", "node2"]), [20, 0]);

    // 2. node1 gone: calls fail over to node2, none fails at the PBX.
    drop(node1.take());
    calls(&dir, "uac2", 20);
    assert_eq!(uas_calls(&dir, ["node2"]), [20]);
    let t = carrier_a(&tg);
    assert_eq!(
        t["state"], "up",
        "one address down is not the trunk down: {t}"
    );
    let usable: Vec<bool> = t["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["usable"].as_bool().unwrap())
        .collect();
    assert_eq!(usable, [false, true], "node1's address is out: {t}");
    let failovers = common::value(
        &tg.metrics(),
        "trunkgate_failovers_total",
        &[("trunk", "carrier-a")],
    );
    // Only the calls placed before the first try_timeout ran out (10 calls/s × 1 s, plus
    // one in flight) went to node1 first; after that node1's address is skipped.
    assert!(
        (1.0..=12.0).contains(&failovers),
        "only the calls of the first try_timeout after the stop fail over: {failovers}"
    );

    // 3. The record changes: node1 moves to .7; picked up after the TTL.
    let _node1b = Uas::start(&dir, "node1b", ip(7), Transport::Udp, uas_for);
    dnsmasq.stop();
    let _dnsmasq2 = dns(&dir, "dnsmasq2", ip(7));
    let moved = poll(Duration::from_secs(u64::from(TTL) + 10), || {
        let a = addresses(&carrier_a(&tg));
        (a.first().map(String::as_str) == Some("127.0.84.7:5060")).then_some(a)
    });
    assert!(
        moved.is_some(),
        "the changed A record was not followed: {:?}\n{}",
        addresses(&carrier_a(&tg)),
        tg.log_tail()
    );
    calls(&dir, "uac3", 10);
    assert_eq!(uas_calls(&dir, ["node1b", "node2"]), [10, 20]);
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap_or_default();
    assert!(log.contains("DNS answer changed"), "{}", tg.log_tail());
    tg.stop(Duration::from_secs(10));
}
