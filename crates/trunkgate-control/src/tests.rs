#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::io;
use std::time::{Duration, Instant};
use trunkgate_config::Host;

pub(crate) fn no_dns(hp: &HostPort, _: PeerTransport) -> io::Result<Vec<SocketAddr>> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no DNS in tests: {hp}"),
    ))
}

fn fake_dns(hp: &HostPort, t: PeerTransport) -> io::Result<Vec<SocketAddr>> {
    match &hp.host {
        Host::Name(n) if n == "sip.carrier.example" => {
            Ok(vec![SocketAddr::new("10.1.2.3".parse().unwrap(), hp.port)])
        }
        _ => no_dns(hp, t),
    }
}

fn table(src: &str) -> RoutingTable {
    let policy = Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    RoutingTable::new(&policy, &mut TrunkIds::default(), fake_dns).unwrap()
}

fn up(t: &RoutingTable) -> Health {
    let policy = Policy::from_toml(trunkgate_config::EMBEDDED_DEFAULT, "<embedded>").unwrap();
    Health::new(t, &policy.health, Instant::now())
}

/// `route`'s candidates with every trunk up and idle, as ids.
fn order(t: &RoutingTable, health: &Health, route: &RouteEntry) -> Vec<u16> {
    let mut out = Vec::new();
    t.candidates(route, Instant::now(), health, &|_| 0, &mut out);
    out.into_iter().map(|id| id.0).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const POLICY: &str = r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "127.0.0.2:5060"
allow = ["10.0.0.0/8", "2001:db8:100::/48"]
[[trunk]]
name = "carrier-a"
address = "127.0.0.3:5060"
allow = ["198.51.100.0/24"]
[[trunk]]
name = "carrier-b"
address = "sip.carrier.example"
transport = "tcp"
allow = ["2001:db8:200::/48"]
[[trunk]]
name = "carrier-c"
address = "[2001:db8:300::1]:5080"
[[route]]
name = "default"
trunks = ["carrier-a", "carrier-b"]
[[route]]
name = "intl"
match = { to_prefix = ["+", "00"] }
trunks = ["carrier-b", "carrier-a", "carrier-c"]
strategy = "round-robin"
[[route]]
name = "uk"
match = { to_prefix = ["+44", "0044"] }
trunks = ["carrier-c"]
[[route]]
name = "uk-too"
match = { to_prefix = ["+44"] }
trunks = ["carrier-a"]
"#;

#[test]
fn entries_carry_addresses_and_uri_hosts() {
    let t = table(POLICY);
    assert_eq!(t.pbx().address, "127.0.0.2:5060".parse().unwrap());
    assert_eq!(t.pbx().uri_host, "127.0.0.2:5060");
    assert_eq!(t.trunk_count(), 3);
    let b = t.trunk(TrunkId(1)).unwrap();
    assert_eq!(b.id, TrunkId(1));
    assert_eq!(
        (b.name.as_str(), b.transport),
        ("carrier-b", PeerTransport::Tcp)
    );
    assert_eq!(b.address, "10.1.2.3:5060".parse().unwrap());
    assert_eq!(b.uri_host, "sip.carrier.example");
    assert_eq!(
        t.trunk(TrunkId(2)).unwrap().uri_host,
        "[2001:db8:300::1]:5080"
    );
    assert_eq!(t.trunk_id("carrier-c"), Some(TrunkId(2)));
    assert!(t.trunk(TrunkId(3)).is_none(), "no panic for an unknown id");
}

#[test]
fn classify_peers() {
    let t = table(POLICY);
    assert_eq!(
        t.classify(ip("127.0.0.2")),
        Source::Pbx,
        "the PBX's own address"
    );
    assert_eq!(t.classify(ip("10.20.30.40")), Source::Pbx);
    assert_eq!(t.classify(ip("127.0.0.3")), Source::Trunk(TrunkId(0)));
    assert_eq!(t.classify(ip("198.51.100.77")), Source::Trunk(TrunkId(0)));
    assert_eq!(t.classify(ip("127.0.0.9")), Source::Unknown);
    assert_eq!(t.classify(ip("203.0.113.1")), Source::Unknown);
    // IPv6, and IPv4-mapped IPv6 from a dual-stack socket.
    assert_eq!(t.classify(ip("2001:db8:100::5")), Source::Pbx);
    assert_eq!(t.classify(ip("2001:db8:200::5")), Source::Trunk(TrunkId(1)));
    assert_eq!(t.classify(ip("2001:db8:300::1")), Source::Trunk(TrunkId(2)));
    assert_eq!(t.classify(ip("2001:db8:300::2")), Source::Unknown);
    assert_eq!(
        t.classify(ip("::ffff:198.51.100.1")),
        Source::Trunk(TrunkId(0))
    );
}

#[test]
fn classify_longest_prefix() {
    // carrier-b's name resolves to 10.1.2.3, inside the PBX's 10.0.0.0/8: the /32 wins.
    let t = table(POLICY);
    assert_eq!(t.classify(ip("10.1.2.3")), Source::Trunk(TrunkId(1)));
    assert_eq!(t.classify(ip("10.1.2.4")), Source::Pbx);
}

#[test]
fn two_peers_resolving_to_one_address_are_refused() {
    let src = POLICY.replace("\"127.0.0.3:5060\"", "\"sip.carrier.example:5070\"");
    let policy = Policy::from_toml(&src, "t.toml").unwrap();
    let e = RoutingTable::new(&policy, &mut TrunkIds::default(), fake_dns).unwrap_err();
    assert!(matches!(e, ResolveError::Ambiguous { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("trunk \"carrier-a\" and trunk \"carrier-b\" both claim source 10.1.2.3/32"),
        "{e}"
    );
}

#[test]
fn resolve_errors_name_the_peer() {
    let policy = Policy::from_toml(POLICY, "t.toml").unwrap();
    let e = RoutingTable::new(&policy, &mut TrunkIds::default(), no_dns).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot resolve the address sip.carrier.example of trunk \"carrier-b\""),
        "{e}"
    );
}

#[test]
fn outbound_longest_prefix() {
    let t = table(POLICY);
    let route = |user: &str| t.outbound(Some(user.as_bytes())).map(|r| r.name.as_str());
    assert_eq!(
        route("+4420712345"),
        Some("uk"),
        "+44 beats +; uk is before uk-too"
    );
    assert_eq!(route("004420712345"), Some("uk"));
    assert_eq!(route("+3312345"), Some("intl"));
    assert_eq!(route("0033123"), Some("intl"));
    assert_eq!(route("2001"), Some("default"), "catch-all");
    assert_eq!(route(""), Some("default"));
    assert_eq!(t.outbound(None).map(|r| r.name.as_str()), Some("default"));
}

#[test]
fn outbound_without_catch_all_has_no_route() {
    let src = POLICY.replace(
        "name = \"default\"\n",
        "name = \"default\"\nmatch = { to_prefix = [\"1\"] }\n",
    );
    let t = table(&src);
    assert!(t.outbound(Some(b"2001")).is_none());
    assert_eq!(t.outbound(None).map(|r| r.name.as_str()), None);
    assert_eq!(
        t.outbound(Some(b"1800")).map(|r| r.name.as_str()),
        Some("default")
    );
    let no_routes = table(&POLICY[..POLICY.find("[[route]]").unwrap()]);
    assert!(no_routes.outbound(Some(b"1")).is_none());
}

#[test]
fn candidates_follow_the_strategy() {
    let t = table(POLICY);
    let health = up(&t);
    let default = t.outbound(Some(b"2001")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            order(&t, &health, default),
            [0, 1],
            "priority: configured order"
        );
    }
    let intl = t.outbound(Some(b"+1")).unwrap();
    let orders: Vec<Vec<u16>> = (0..4).map(|_| order(&t, &health, intl)).collect();
    assert_eq!(orders, [[1, 0, 2], [0, 2, 1], [2, 1, 0], [1, 0, 2]]);
    let empty = RouteEntry {
        name: "empty".into(),
        index: 9,
        trunks: Vec::new(),
        strategy: Strategy::Priority,
        failover_on: Vec::new(),
        try_timeout: None,
        max_attempts: 1,
        setup_timeout: Duration::from_secs(30),
        selector: Selector::new(Strategy::RoundRobin, 0),
    };
    assert!(order(&t, &health, &empty).is_empty());
}

#[test]
fn candidates_skip_unusable_trunks() {
    let t = table(POLICY);
    let mut health = up(&t);
    let now = Instant::now();
    let intl = t.outbound(Some(b"+1")).unwrap();
    // carrier-a (id 0) cooling after a 503 Retry-After; carrier-c (id 2) down by the breaker.
    health.retry_after(now, TrunkId(0), 60);
    for _ in 0..5 {
        health.on_branch(now, TrunkId(2), BranchOutcome::Timeout);
    }
    for _ in 0..3 {
        let mut out = vec![TrunkId(7)];
        t.candidates(intl, now, &health, &|_| 0, &mut out);
        assert_eq!(out, [TrunkId(1)], "cleared first, then only carrier-b");
    }
}

#[test]
fn weighted_and_least_utilized_use_weights_and_sessions() {
    let src = POLICY
        .replace("strategy = \"round-robin\"", "strategy = \"weighted\"")
        .replace(
            "name = \"carrier-c\"\n",
            "name = \"carrier-c\"\nweight = 2\nmax_sessions = 10\n",
        );
    let t = table(&src);
    let health = up(&t);
    let intl = t.outbound(Some(b"+1")).unwrap();
    // Weights b 1, a 1, c 2 over 4 calls: c, b, a, c (smooth WRR).
    let firsts: Vec<u16> = (0..4).map(|_| order(&t, &health, intl)[0]).collect();
    assert_eq!(firsts, [2, 1, 0, 2]);
    let t = table(&src.replace("strategy = \"weighted\"", "strategy = \"least-utilized\""));
    let intl = t.outbound(Some(b"+1")).unwrap();
    let mut out = Vec::new();
    // b and a have no max_sessions (share ~0); c has 5 of 10.
    let sessions = |id: TrunkId| if id.0 == 2 { 5 } else { 40 };
    t.candidates(intl, Instant::now(), &health, &sessions, &mut out);
    assert_eq!(out, [TrunkId(1), TrunkId(0), TrunkId(2)]);
}

#[test]
fn route_entries_carry_failover_settings() {
    let t = table(POLICY);
    let r = t.outbound(Some(b"2001")).unwrap();
    assert_eq!((r.name.as_str(), r.index), ("default", 0));
    assert_eq!(r.failover_on, [408, 480, 500, 502, 503, 504]);
    assert_eq!(r.try_timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        (r.max_attempts, r.setup_timeout),
        (3, Duration::from_secs(30))
    );
}

#[test]
fn ids_stay_with_names_across_policies() {
    let mut ids = TrunkIds::default();
    let policy = Policy::from_toml(POLICY, "t.toml").unwrap();
    let first = RoutingTable::new(&policy, &mut ids, fake_dns).unwrap();
    let id_of = |t: &RoutingTable, name: &str| t.trunk_id(name);
    assert_eq!(id_of(&first, "carrier-a"), Some(TrunkId(0)));
    assert_eq!(id_of(&first, "carrier-c"), Some(TrunkId(2)));
    // carrier-c moves first, carrier-b is removed, carrier-d is new.
    let c = "[[trunk]]\nname = \"carrier-c\"\naddress = \"[2001:db8:300::1]:5080\"\n";
    let b_start = POLICY.find("[[trunk]]\nname = \"carrier-b\"").unwrap();
    let routes = POLICY.find("[[route]]").unwrap();
    let reordered = format!(
        "{}{c}{}[[trunk]]\nname = \"carrier-d\"\naddress = \"127.0.0.9:5060\"\n[[route]]\nname = \"r\"\ntrunks = [\"carrier-d\", \"carrier-c\", \"carrier-a\"]\n",
        &POLICY[..POLICY.find("[[trunk]]").unwrap()],
        &POLICY[POLICY.find("[[trunk]]").unwrap()..b_start],
    );
    let _ = routes;
    let policy = Policy::from_toml(&reordered, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let second = RoutingTable::new(&policy, &mut ids, fake_dns).unwrap();
    assert_eq!(second.trunks()[0].name, "carrier-c");
    assert_eq!(id_of(&second, "carrier-c"), Some(TrunkId(2)));
    assert_eq!(id_of(&second, "carrier-a"), Some(TrunkId(0)));
    assert_eq!(
        id_of(&second, "carrier-d"),
        Some(TrunkId(3)),
        "a new name, a new id"
    );
    assert!(
        second.trunk(TrunkId(1)).is_none(),
        "carrier-b's id is not reused"
    );
    assert_eq!(second.classify(ip("127.0.0.9")), Source::Trunk(TrunkId(3)));
    assert_eq!(
        second.routes()[0].trunks,
        [TrunkId(3), TrunkId(2), TrunkId(0)]
    );
    assert_eq!(ids.name(TrunkId(1)), Some("carrier-b"));
}

#[test]
fn embedded_default_routes() {
    let policy = Policy::from_toml(trunkgate_config::EMBEDDED_DEFAULT, "<embedded>").unwrap();
    let t = RoutingTable::new(&policy, &mut TrunkIds::default(), no_dns).unwrap();
    assert_eq!(t.classify(ip("127.0.0.2")), Source::Pbx);
    assert_eq!(t.classify(ip("127.0.0.4")), Source::Trunk(TrunkId(1)));
    let r = t.outbound(Some(b"+15551234")).unwrap();
    let health = up(&t);
    let names: Vec<String> = order(&t, &health, r)
        .into_iter()
        .map(|i| t.trunk(TrunkId(i)).unwrap().name.clone())
        .collect();
    assert_eq!(names, ["carrier-a", "carrier-b"]);
}

#[test]
fn pbx_nodes_classify_as_the_pbx_and_dids_pick_the_node() {
    let t = table(
        r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "127.0.0.2:5060"
[[pbx.node]]
name = "site-b"
address = "127.0.0.5:5060"
allow = ["10.9.0.0/24"]
dids = ["+44207946"]
[[pbx.node]]
name = "site-c"
address = "127.0.0.6:5060"
dids = ["+4420794612"]
[[trunk]]
name = "a"
address = "127.0.0.3:5060"
"#,
    );
    for ip in ["127.0.0.2", "127.0.0.5", "10.9.0.7", "127.0.0.6"] {
        assert_eq!(t.classify(ip.parse().unwrap()), Source::Pbx, "{ip}");
    }
    let names = |user: &str| {
        let mut out = Vec::new();
        t.inbound_candidates(Some(user.as_bytes()), &mut out);
        out.iter()
            .map(|&i| t.pbx_nodes()[i].name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("+15550001"), ["pbx", "site-b", "site-c"]);
    assert_eq!(names("+442079460000"), ["site-b", "pbx", "site-c"]);
    // The longest matching prefix goes first.
    assert_eq!(names("+442079461234"), ["site-c", "site-b", "pbx"]);
    assert_eq!(t.inbound_failover().max_attempts, 3);
}
