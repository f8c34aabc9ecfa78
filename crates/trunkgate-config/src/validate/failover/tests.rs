//! Trunk `weight` and `probe`, route failover keys and `[health]`: defaults, a valid value
//! and a refused one (position and hint) for each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::tests::{BASE, assert_refused, env};
use crate::{HealthSettings, Policy, Probe};
use std::time::Duration;

/// `BASE` with `lines` added to its only trunk (they start at line 11).
fn trunk(lines: &str) -> String {
    format!("{BASE}{lines}\n")
}

/// `BASE` with a route over carrier-a; `lines` start at line 15.
fn route(lines: &str) -> String {
    format!("{BASE}\n[[route]]\nname = \"r\"\ntrunks = [\"carrier-a\"]\n{lines}\n")
}

/// `BASE` with a `[health]` table; `lines` start at line 13.
fn health(lines: &str) -> String {
    format!("{BASE}\n[health]\n{lines}\n")
}

fn ok(src: &str) -> Policy {
    Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Refused at `line:col` with `needle` in the message and `hint` in the hint.
#[track_caller]
fn refused(src: &str, line: usize, col: usize, needle: &str, hint: &str) {
    let errors = assert_refused(src, line, col, needle);
    let e = errors
        .iter()
        .find(|e| e.line == line && e.col == col && e.message.contains(needle))
        .unwrap();
    assert!(
        hint.is_empty() || e.hint.as_deref().is_some_and(|h| h.contains(hint)),
        "hint of {e} should contain `{hint}`"
    );
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn defaults() {
    let p = ok(&route(""));
    let t = &p.trunks[0];
    assert_eq!((t.weight, &t.probe), (1, &None));
    let r = &p.routes[0];
    assert_eq!(r.failover_on, [408, 480, 500, 502, 503, 504]);
    assert_eq!(r.try_timeout, Some(S(3)));
    assert_eq!(r.max_attempts, 3);
    assert_eq!(r.setup_timeout, S(30));
    assert!(r.fails_over_on(503) && !r.fails_over_on(486));
    assert_eq!(
        p.health,
        HealthSettings {
            breaker_failures: 5,
            breaker_window: S(60),
            breaker_cooldown: S(30),
            retry_after_max: S(300),
        }
    );
}

#[test]
fn weight() {
    assert_eq!(ok(&trunk("weight = 3")).trunks[0].weight, 3);
    refused(
        &trunk("weight = 0"),
        11,
        10,
        "trunk \"carrier-a\" weight = 0 is out of range",
        "between 1 and 1000000",
    );
    refused(
        &trunk("weight = \"3\""),
        11,
        10,
        "weight must be an integer, found a string",
        "",
    );
}

#[test]
fn probe_defaults_inside_the_table() {
    let p = ok(&trunk("probe = {}"));
    assert_eq!(
        p.trunks[0].probe,
        Some(Probe {
            interval: S(10),
            timeout: S(2),
            down_after: 3,
            up_after: 2,
            ok_codes: None,
        })
    );
    // The default timeout never exceeds the interval.
    let p = ok(&trunk("probe = { interval = \"1s\" }"));
    assert_eq!(p.trunks[0].probe.as_ref().map(|p| p.timeout), Some(S(1)));
}

#[test]
fn probe_valid_values() {
    let p = ok(&trunk(
        "probe = { interval = \"5s\", timeout = \"500ms\", down_after = 1, up_after = 100, ok_codes = [200, 404] }",
    ));
    let probe = p.trunks[0].probe.clone().unwrap();
    assert_eq!((probe.interval, probe.timeout), (S(5), MS(500)));
    assert_eq!((probe.down_after, probe.up_after), (1, 100));
    assert_eq!(probe.ok_codes, Some(vec![200, 404]));
    assert!(probe.reachable(404) && !probe.reachable(405) && !probe.reachable(503));
}

#[test]
fn probe_default_reachability() {
    let probe = ok(&trunk("probe = {}")).trunks[0].probe.clone().unwrap();
    for code in [200, 404, 405, 403, 486] {
        assert!(probe.reachable(code), "{code}");
    }
    for code in [100, 180, 408, 500, 503, 600, 603] {
        assert!(!probe.reachable(code), "{code}");
    }
}

#[test]
fn probe_refused_values() {
    // `probe = { interval = ` is 21 characters: the value starts at column 22.
    refused(
        &trunk("probe = { interval = \"100ms\" }"),
        11,
        22,
        "trunk \"carrier-a\" probe.interval (100ms) is shorter than 200ms",
        "at least \"200ms\"",
    );
    refused(
        &trunk("probe = { interval = \"1s\", timeout = \"2s\" }"),
        11,
        38,
        "probe.timeout (2s) is longer than probe.interval (1s)",
        "make timeout at most 1s",
    );
    refused(
        &trunk("probe = { timeout = \"50ms\" }"),
        11,
        21,
        "probe.timeout (50ms) is shorter than 100ms",
        "at least \"100ms\"",
    );
    refused(
        &trunk("probe = { down_after = 0 }"),
        11,
        24,
        "probe.down_after = 0 is out of range",
        "between 1 and 100",
    );
    refused(
        &trunk("probe = { up_after = 101 }"),
        11,
        22,
        "probe.up_after = 101 is out of range",
        "between 1 and 100",
    );
    refused(
        &trunk("probe = { ok_codes = [200, 99] }"),
        11,
        28,
        "probe.ok_codes: 99 is not a code in 100–699",
        "e.g. [200, 404, 405]",
    );
    refused(
        &trunk("probe = { ok_codes = [] }"),
        11,
        22,
        "probe.ok_codes is empty",
        "leave ok_codes out",
    );
    refused(
        &trunk("probe = { ok_codes = \"200\" }"),
        11,
        22,
        "probe.ok_codes must be an array of integers, found a string",
        "e.g. [200, 404, 405]",
    );
    refused(
        &trunk("probe = { intervall = \"1s\" }"),
        11,
        11,
        "unknown key `intervall` in a trunk's probe",
        "did you mean `interval`?",
    );
}

#[test]
fn failover_on() {
    assert_eq!(
        ok(&route("failover_on = [503, 600]")).routes[0].failover_on,
        [503, 600]
    );
    assert!(
        ok(&route("failover_on = []")).routes[0]
            .failover_on
            .is_empty()
    );
    refused(
        &route("failover_on = [503, 200]"),
        15,
        21,
        "route \"r\" failover_on: 200 is not a code in 300–699",
        "timeouts and transport errors always fail over",
    );
    refused(
        &route("failover_on = 503"),
        15,
        15,
        "failover_on must be an array of integers, found an integer",
        "e.g. [408, 480, 500, 502, 503, 504]",
    );
}

#[test]
fn try_timeout() {
    assert_eq!(
        ok(&route("try_timeout = \"5s\"")).routes[0].try_timeout,
        Some(S(5))
    );
    assert_eq!(
        ok(&route("try_timeout = \"0s\"")).routes[0].try_timeout,
        None
    );
    refused(
        &route("try_timeout = \"100ms\""),
        15,
        15,
        "route \"r\" try_timeout (100ms) is shorter than 500ms",
        "or \"0s\" to turn it off",
    );
    refused(
        &route("setup_timeout = \"10s\"\ntry_timeout = \"10s\""),
        16,
        15,
        "try_timeout (10s) is not shorter than setup_timeout (10s)",
        "make try_timeout shorter than 10s",
    );
    refused(
        &route("setup_timeout = \"2s\""),
        15,
        17,
        "setup_timeout (2s) is not longer than try_timeout (3s, the default)",
        "raise setup_timeout",
    );
    refused(
        &route("try_timeout = 3"),
        15,
        15,
        "try_timeout must be a duration string, found the bare number 3",
        "write a unit",
    );
}

#[test]
fn max_attempts() {
    assert_eq!(ok(&route("max_attempts = 16")).routes[0].max_attempts, 16);
    refused(
        &route("max_attempts = 17"),
        15,
        16,
        "route \"r\" max_attempts = 17 is out of range",
        "between 1 and 16",
    );
}

#[test]
fn setup_timeout() {
    let p = ok(&route("setup_timeout = \"1m\"\ntry_timeout = \"0s\""));
    assert_eq!(p.routes[0].setup_timeout, S(60));
    refused(
        &route("setup_timeout = \"500ms\"\ntry_timeout = \"0s\""),
        15,
        17,
        "route \"r\" setup_timeout (500ms) is shorter than a second",
        "at least \"1s\"",
    );
}

#[test]
fn health_valid_values_and_env() {
    let p = ok(&health(
        "breaker_failures = 2\nbreaker_window = \"10s\"\nbreaker_cooldown = \"1m\"\nretry_after_max = \"0s\"",
    ));
    assert_eq!(
        p.health,
        HealthSettings {
            breaker_failures: 2,
            breaker_window: S(10),
            breaker_cooldown: S(60),
            retry_after_max: S(0),
        }
    );
    let vars = env(&[
        ("TRUNKGATE_HEALTH__BREAKER_FAILURES", "7"),
        ("TRUNKGATE_HEALTH__RETRY_AFTER_MAX", "20s"),
    ]);
    let p = Policy::from_toml_with_env(BASE, "t.toml", &vars).unwrap();
    assert_eq!(
        (p.health.breaker_failures, p.health.retry_after_max),
        (7, S(20))
    );
}

#[test]
fn health_refused_values() {
    refused(
        &health("breaker_failures = 0"),
        13,
        20,
        "health.breaker_failures = 0 is out of range",
        "between 1 and 100",
    );
    refused(
        &health("breaker_window = \"0s\""),
        13,
        18,
        "health.breaker_window (0ns) is shorter than a second",
        "write e.g. \"60s\"",
    );
    refused(
        &health("breaker_cooldown = \"500ms\""),
        13,
        20,
        "health.breaker_cooldown (500ms) is shorter than a second",
        "write e.g. \"30s\"",
    );
    refused(
        &health("retry_after_max = \"5 minutes\""),
        13,
        19,
        "health.retry_after_max: `5 minutes` has an unknown unit",
        "ms, s, m, h or d",
    );
    refused(
        &health("breaker = 3"),
        13,
        1,
        "unknown key `breaker` in [health]",
        "valid keys in [health]: breaker_failures",
    );
}

#[test]
fn commented_failover_keys_of_the_embedded_default_are_valid_uncommented() {
    let keys = [
        "[health]",
        "breaker_",
        "retry_after_max = \"300s\"",
        "weight",
        "probe",
        "failover_on",
        "try_timeout",
        "max_attempts",
        "setup_timeout",
    ];
    let src: String = crate::EMBEDDED_DEFAULT
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => format!("{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let p = ok(&src);
    let probe = p.trunks[0].probe.clone().unwrap();
    assert_eq!((probe.interval, probe.down_after), (S(10), 3));
    assert_eq!(p.trunks[0].weight, 1);
    assert_eq!(p.routes[0].max_attempts, 3);
    assert_eq!(p.health.retry_after_max, S(300));
}

/// `BASE` with `lines` after it (they start at line 11).
fn with(lines: &str) -> String {
    format!("{BASE}{lines}\n")
}

#[test]
fn pbx_nodes_and_inbound_failover() {
    let p = ok(&with(
        "[[pbx.node]]\nname = \"site-b\"\naddress = \"127.0.0.5:5060\"\nallow = [\"127.0.0.5/32\"]\ndids = [\"+44207946\", \"0207946\"]\n",
    ));
    assert_eq!(p.pbx.nodes.len(), 1);
    let node = &p.pbx.nodes[0];
    assert_eq!(node.name, "site-b");
    assert_eq!(node.address.to_string(), "127.0.0.5:5060");
    assert_eq!(node.dids, ["+44207946", "0207946"]);
    // Inbound failover has the route defaults.
    assert_eq!(p.pbx.inbound.failover_on, [408, 480, 500, 502, 503, 504]);
    assert_eq!(p.pbx.inbound.max_attempts, 3);
    assert_eq!(p.pbx.inbound.try_timeout, Some(S(3)));
    // Written on [pbx] itself.
    let src = BASE.replace(
        "allow = [\"127.0.0.2/32\"]\n",
        "allow = [\"127.0.0.2/32\"]\nmax_attempts = 2\ntry_timeout = \"0s\"\n",
    );
    let p = ok(&src);
    assert_eq!(
        (p.pbx.inbound.max_attempts, p.pbx.inbound.try_timeout),
        (2, None)
    );
}

#[test]
fn pbx_nodes_are_refused_with_their_position() {
    refused(
        &with("[[pbx.node]]\naddress = \"127.0.0.5:5060\"\n"),
        11,
        1,
        "[[pbx.node]] has no name",
        "name =",
    );
    refused(
        &with("[[pbx.node]]\nname = \"pbx\"\naddress = \"127.0.0.5:5060\"\n"),
        12,
        8,
        "cannot name a PBX node",
        "first node",
    );
    refused(
        &with(
            "[[pbx.node]]\nname = \"b\"\naddress = \"127.0.0.5:5060\"\n[[pbx.node]]\nname = \"b\"\naddress = \"127.0.0.6:5060\"\n",
        ),
        15,
        8,
        "defined twice",
        "its own name",
    );
    refused(
        &with("[[pbx.node]]\nname = \"b\"\naddress = \"127.0.0.5:5060\"\ndids = [\"\"]\n"),
        14,
        9,
        "empty prefix",
        "DID prefixes",
    );
    // A node's source overlapping a trunk's.
    refused(
        &with("[[pbx.node]]\nname = \"b\"\naddress = \"127.0.0.3:5060\"\n"),
        10,
        11,
        "overlaps",
        "disjoint",
    );
    refused(
        &BASE.replace(
            "allow = [\"127.0.0.2/32\"]\n",
            "allow = [\"127.0.0.2/32\"]\nmax_attempts = 0\n",
        ),
        7,
        16,
        "pbx max_attempts",
        "",
    );
}

#[test]
fn pbx_nodes_take_probes() {
    let src = BASE.replace(
        "allow = [\"127.0.0.2/32\"]\n",
        "allow = [\"127.0.0.2/32\"]\nprobe = { interval = \"5s\" }\n",
    ) + "[[pbx.node]]\nname = \"b\"\naddress = \"127.0.0.5:5060\"\nprobe = { down_after = 2 }\n";
    let p = ok(&src);
    assert_eq!(p.pbx.probe.as_ref().map(|p| p.interval), Some(S(5)));
    assert_eq!(p.pbx.nodes[0].probe.as_ref().map(|p| p.down_after), Some(2));
    refused(
        &BASE.replace(
            "allow = [\"127.0.0.2/32\"]\n",
            "allow = [\"127.0.0.2/32\"]\nprobe = { interval = \"10ms\" }\n",
        ),
        7,
        22,
        "pbx probe.interval",
        "",
    );
}
