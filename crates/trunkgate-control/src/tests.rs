#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::io;
use trunkgate_config::Host;

fn no_dns(hp: &HostPort) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no DNS in tests: {hp}"),
    ))
}

fn fake_dns(hp: &HostPort) -> io::Result<SocketAddr> {
    match &hp.host {
        Host::Name(n) if n == "sip.carrier.example" => {
            Ok(SocketAddr::new("10.1.2.3".parse().unwrap(), hp.port))
        }
        _ => no_dns(hp),
    }
}

fn table(src: &str) -> RoutingTable {
    let policy = Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    RoutingTable::new(&policy, fake_dns).unwrap()
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
    let b = t.trunk(1);
    assert_eq!(
        (b.name.as_str(), b.transport),
        ("carrier-b", PeerTransport::Tcp)
    );
    assert_eq!(b.address, "10.1.2.3:5060".parse().unwrap());
    assert_eq!(b.uri_host, "sip.carrier.example:5060");
    assert_eq!(t.trunk(2).uri_host, "[2001:db8:300::1]:5080");
    assert_eq!(t.trunk_index("carrier-c"), Some(2));
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
    assert_eq!(t.classify(ip("127.0.0.3")), Source::Trunk(0));
    assert_eq!(t.classify(ip("198.51.100.77")), Source::Trunk(0));
    assert_eq!(t.classify(ip("127.0.0.9")), Source::Unknown);
    assert_eq!(t.classify(ip("203.0.113.1")), Source::Unknown);
    // IPv6, and IPv4-mapped IPv6 from a dual-stack socket.
    assert_eq!(t.classify(ip("2001:db8:100::5")), Source::Pbx);
    assert_eq!(t.classify(ip("2001:db8:200::5")), Source::Trunk(1));
    assert_eq!(t.classify(ip("2001:db8:300::1")), Source::Trunk(2));
    assert_eq!(t.classify(ip("2001:db8:300::2")), Source::Unknown);
    assert_eq!(t.classify(ip("::ffff:198.51.100.1")), Source::Trunk(0));
}

#[test]
fn classify_longest_prefix() {
    // carrier-b's name resolves to 10.1.2.3, inside the PBX's 10.0.0.0/8: the /32 wins.
    let t = table(POLICY);
    assert_eq!(t.classify(ip("10.1.2.3")), Source::Trunk(1));
    assert_eq!(t.classify(ip("10.1.2.4")), Source::Pbx);
}

#[test]
fn two_peers_resolving_to_one_address_are_refused() {
    let src = POLICY.replace("\"127.0.0.3:5060\"", "\"sip.carrier.example:5070\"");
    let policy = Policy::from_toml(&src, "t.toml").unwrap();
    let e = RoutingTable::new(&policy, fake_dns).unwrap_err();
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
    let e = RoutingTable::new(&policy, no_dns).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "cannot resolve the address sip.carrier.example:5060 of trunk \"carrier-b\""
        ),
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
    let default = t.outbound(Some(b"2001")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            t.candidates(default).collect::<Vec<_>>(),
            [0, 1],
            "priority: configured order"
        );
    }
    let intl = t.outbound(Some(b"+1")).unwrap();
    let orders: Vec<Vec<usize>> = (0..4).map(|_| t.candidates(intl).collect()).collect();
    assert_eq!(
        orders,
        [vec![1, 0, 2], vec![0, 2, 1], vec![2, 1, 0], vec![1, 0, 2]]
    );
}

#[test]
fn weighted_and_least_utilized_fall_back_to_priority() {
    for s in ["weighted", "least-utilized"] {
        let src = POLICY.replace("strategy = \"round-robin\"", &format!("strategy = \"{s}\""));
        let t = table(&src);
        let intl = t.outbound(Some(b"+1")).unwrap();
        for _ in 0..3 {
            assert_eq!(t.candidates(intl).collect::<Vec<_>>(), [1, 0, 2], "{s}");
        }
    }
}

#[test]
fn embedded_default_routes() {
    let policy = Policy::from_toml(trunkgate_config::EMBEDDED_DEFAULT, "<embedded>").unwrap();
    let t = RoutingTable::new(&policy, no_dns).unwrap();
    assert_eq!(t.classify(ip("127.0.0.2")), Source::Pbx);
    assert_eq!(t.classify(ip("127.0.0.4")), Source::Trunk(1));
    let r = t.outbound(Some(b"+15551234")).unwrap();
    assert_eq!(
        t.candidates(r)
            .map(|i| t.trunk(i).name.as_str())
            .collect::<Vec<_>>(),
        ["carrier-a", "carrier-b"]
    );
}
