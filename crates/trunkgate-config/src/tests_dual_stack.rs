//! Dual-stack keys: `listen.advertised` and `media.address`/`media.advertised` as lists of
//! one IPv4 and one IPv6 address, their defaults, and peers told apart by port on one IP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tests::{BASE, assert_refused};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn single_string_forms_keep_working() {
    let src = format!("{BASE}\n[media]\naddress = \"0.0.0.0\"\nadvertised = \"192.0.2.7\"\n");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(
        (p.media.address, p.media.advertised),
        (ip("0.0.0.0"), ip("192.0.2.7"))
    );
    assert_eq!(p.media.alternate, None);
    assert_eq!(p.listen.advertised, "127.0.0.1");
    assert_eq!(p.listen.advertised_alternate, None);
}

#[test]
fn media_address_lists_one_address_per_family() {
    let src = format!(
        "{BASE}\n[media]\naddress = [\"0.0.0.0\", \"::\"]\nadvertised = [\"192.0.2.7\", \"2001:db8::7\"]\n"
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(
        (p.media.address, p.media.advertised),
        (ip("0.0.0.0"), ip("192.0.2.7"))
    );
    assert_eq!(
        p.media.alternate,
        Some(MediaAddress {
            address: ip("::"),
            advertised: ip("2001:db8::7")
        })
    );
    // Specific bind addresses advertise themselves; the order of the lists is free.
    let src = format!("{BASE}\n[media]\naddress = [\"::1\", \"127.0.0.1\"]\n");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(
        (p.media.address, p.media.advertised),
        (ip("::1"), ip("::1"))
    );
    assert_eq!(
        p.media.alternate,
        Some(MediaAddress {
            address: ip("127.0.0.1"),
            advertised: ip("127.0.0.1")
        })
    );
    let src = format!(
        "{BASE}\n[media]\naddress = [\"0.0.0.0\", \"2001:db8::9\"]\nadvertised = \"203.0.113.1\"\n"
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.media.advertised, ip("203.0.113.1"));
    assert_eq!(p.media.alternate.unwrap().advertised, ip("2001:db8::9"));
}

#[test]
fn media_address_defaults_to_a_listener_of_each_family() {
    let src = BASE.replace(
        "sip = [\"udp:127.0.0.1:5060\"]",
        "sip = [\"udp:127.0.0.1:5060\", \"udp:[::1]:5060\", \"tcp:[::]:5060\"]",
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.media.address, ip("127.0.0.1"));
    assert_eq!(
        p.media.alternate,
        Some(MediaAddress {
            address: ip("::1"),
            advertised: ip("::1")
        })
    );
}

#[test]
fn bad_dual_stack_media_addresses_are_refused_where_written() {
    let at = |extra: &str| format!("{BASE}\n[media]\n{extra}\n");
    // The key is on line 13, a second one on line 14.
    assert_refused(
        &at("address = [\"10.0.0.1\", \"10.0.0.2\"]"),
        13,
        11,
        "both are of the same address family",
    );
    assert_refused(&at("address = []"), 13, 11, "media.address is empty");
    assert_refused(
        &at("address = [\"10.0.0.1\", \"::1\", \"::2\"]"),
        13,
        11,
        "lists 3 addresses",
    );
    assert_refused(
        &at("address = [\"10.0.0.1\", \"x\"]"),
        13,
        24,
        "is not an IP address",
    );
    assert_refused(
        &at("address = [\"0.0.0.0\", \"::\"]\nadvertised = \"192.0.2.1\""),
        13,
        11,
        "names an IPv6 address",
    );
    assert_refused(
        &at("address = \"10.0.0.1\"\nadvertised = [\"192.0.2.1\", \"2001:db8::1\"]"),
        14,
        14,
        "media.advertised 2001:db8::1 is IPv6 but media.address has no IPv6 address",
    );
    assert_refused(
        &at("address = [\"0.0.0.0\", \"::\"]\nadvertised = [\"192.0.2.1\", \"::\"]"),
        14,
        14,
        "media.advertised :: is unspecified",
    );
}

#[test]
fn listen_advertised_lists_one_host_per_family() {
    let src = BASE.replace(
        "[listen]\n",
        "[listen]\nadvertised = [\"sbc.example.net\", \"[2001:db8::10]\"]\n",
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.listen.advertised, "sbc.example.net");
    assert_eq!(
        p.listen.advertised_alternate.as_deref(),
        Some("2001:db8::10")
    );
    let twice = BASE.replace(
        "[listen]\n",
        "[listen]\nadvertised = [\"192.0.2.1\", \"192.0.2.2\"]\n",
    );
    assert_refused(&twice, 2, 28, "both are for the same address family");
    let three = BASE.replace(
        "[listen]\n",
        "[listen]\nadvertised = [\"192.0.2.1\", \"::1\", \"::2\"]\n",
    );
    assert_refused(&three, 2, 35, "more than two hosts");
    let empty = BASE.replace("[listen]\n", "[listen]\nadvertised = []\n");
    assert_refused(&empty, 2, 14, "listen.advertised is empty");
}

#[test]
fn peers_at_one_ip_may_differ_by_port_only() {
    let src = r#"[listen]
sip = ["udp:[::1]:15060"]

[pbx]
address = "[::1]:15061"
allow = []

[[trunk]]
name = "carrier-a"
address = "[::1]:15062"
allow = []
"#;
    Policy::from_toml(src, "t.toml").unwrap();
    // The same address and port twice, or an allow list over the shared IP: refused.
    let same = src.replace("[::1]:15062", "[::1]:15061");
    assert_refused(&same, 10, 11, "overlaps pbx address ::1");
    let allow = src.replacen("allow = []", "allow = [\"::1/128\"]", 1);
    assert_refused(&allow, 10, 11, "overlaps pbx allow ::1/128");
}
