//! Tests of the whole pipeline: embedded default, broken policies with exact positions,
//! environment overrides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// A small valid policy; tests splice broken lines into it.
pub(crate) const BASE: &str = r#"[listen]
sip = ["udp:127.0.0.1:5060"]

[pbx]
address = "127.0.0.2:5060"
allow = ["127.0.0.2/32"]

[[trunk]]
name = "carrier-a"
address = "127.0.0.3:5060"
"#;

pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `src` is refused, and one error sits at `line:col` with `needle` in its message.
#[track_caller]
pub(crate) fn assert_refused(src: &str, line: usize, col: usize, needle: &str) -> PolicyErrors {
    let errors = Policy::from_toml(src, "t.toml").expect_err("policy should be refused");
    assert!(
        errors
            .iter()
            .any(|e| e.line == line && e.col == col && e.message.contains(needle)),
        "expected {line}:{col} `{needle}`, got:\n{errors}"
    );
    errors
}

#[test]
fn embedded_default_has_expected_values() {
    let p = Policy::from_toml(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).unwrap();
    assert_eq!(
        p.listen.sip,
        vec![
            Listener {
                transport: ListenTransport::Udp,
                address: "127.0.0.1:5060".parse().unwrap()
            },
            Listener {
                transport: ListenTransport::Tcp,
                address: "127.0.0.1:5060".parse().unwrap()
            },
        ]
    );
    assert_eq!(p.listen.advertised, "127.0.0.1");
    assert_eq!(p.sip.t1, Duration::from_millis(500));
    assert_eq!(p.sip.t2, Duration::from_secs(4));
    assert_eq!(p.sip.t4, Duration::from_secs(5));
    assert_eq!(p.sip.timer_c, Duration::from_secs(180));
    assert_eq!(p.sip.max_message_size, 65535);
    assert_eq!(p.sip.tcp_idle_timeout, Duration::from_secs(300));
    assert_eq!(p.sip.shutdown_grace, Duration::from_secs(30));
    assert_eq!(p.admin.listen, "127.0.0.1:9091".parse().unwrap());
    assert_eq!(p.pbx.address.to_string(), "127.0.0.2:5060");
    assert_eq!(p.pbx.transport, PeerTransport::Auto);
    assert_eq!(p.pbx.allow, vec!["127.0.0.2/32".parse::<IpNet>().unwrap()]);
    let names: Vec<&str> = p.trunks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["carrier-a", "carrier-b"]);
    assert_eq!(
        p.trunks[0].address.to_socket_addr(),
        Some("127.0.0.3:5060".parse().unwrap())
    );
    assert_eq!(
        p.trunks[1].allow,
        vec!["127.0.0.4/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        (p.trunks[0].max_sessions, p.trunks[0].max_cps),
        (Some(300), Some(150))
    );
    assert_eq!(
        p.routes,
        vec![Route {
            name: "default".into(),
            to_prefix: vec![String::new()],
            trunks: vec![0, 1],
            strategy: Strategy::Priority,
            failover_on: vec![408, 480, 500, 502, 503, 504],
            try_timeout: Some(Duration::from_secs(3)),
            max_attempts: 3,
            setup_timeout: Duration::from_secs(30),
        }]
    );
}

#[test]
fn defaults_fill_optional_keys() {
    let p = Policy::from_toml(BASE, "t.toml").unwrap();
    assert_eq!(p.sip.t1, Duration::from_millis(500));
    assert_eq!(p.admin.listen, "127.0.0.1:9091".parse().unwrap());
    assert!(p.routes.is_empty(), "no [[route]] is allowed");
    let t = &p.trunks[0];
    assert_eq!(
        (t.transport, t.max_sessions, t.max_cps),
        (PeerTransport::Auto, None, None)
    );
}

#[test]
fn full_schema_parses() {
    let src = r#"
[listen]
sip = ["udp:[::1]:5060", "tcp:0.0.0.0:5070"]
advertised = "sbc.example.net"
[sip]
t1 = "300ms"
timer_c = "3m"
max_message_size = 4096
[admin]
listen = "[::1]:9092"
[pbx]
address = "[2001:db8::5]"
transport = "tcp"
allow = ["2001:db8::/64", "10.0.0.7"]
[[trunk]]
name = "carrier_b-2"
address = "sip.carrier.example"
transport = "udp"
allow = ["198.51.100.0/24"]
max_cps = 5
[[route]]
name = "intl"
match = { to_prefix = ["+", "00", "*99#"] }
trunks = ["carrier_b-2"]
strategy = "round-robin"
"#;
    let p = Policy::from_toml(src, "t.toml").unwrap();
    assert_eq!(p.listen.sip[0].address, "[::1]:5060".parse().unwrap());
    assert_eq!(p.listen.advertised, "sbc.example.net");
    assert_eq!(p.sip.timer_c, Duration::from_secs(180));
    assert_eq!(p.sip.max_message_size, 4096);
    assert_eq!(p.pbx.address.to_string(), "[2001:db8::5]:5060");
    assert_eq!(p.pbx.allow[1], "10.0.0.7/32".parse::<IpNet>().unwrap());
    assert_eq!(p.trunks[0].address.to_string(), "sip.carrier.example");
    assert_eq!(p.trunks[0].address.to_socket_addr(), None);
    assert_eq!(p.routes[0].strategy, Strategy::RoundRobin);
    assert_eq!(p.routes[0].to_prefix, ["+", "00", "*99#"]);
}

#[test]
fn unknown_key_lists_valid_keys_and_suggests() {
    let src = BASE.replace(
        "name = \"carrier-a\"",
        "name = \"carrier-a\"\nmax_sesions = 10",
    );
    let e = assert_refused(&src, 10, 1, "unknown key `max_sesions` in [[trunk]]");
    let hint = e.0[0].hint.as_deref().unwrap();
    assert!(hint.starts_with("did you mean `max_sessions`?"), "{hint}");
    assert!(
        hint.contains("name, address, transport, allow, max_sessions, max_cps"),
        "{hint}"
    );
    assert_refused("[medai]\n", 1, 2, "unknown key `medai` at the top level");
}

#[test]
fn bad_listen_address() {
    let src = BASE.replace(
        "\"udp:127.0.0.1:5060\"",
        "\"udp:127.0.0.1:5060\", \"udp:127.0.0.1\"",
    );
    assert_refused(
        &src,
        2,
        30,
        "listen.sip: `127.0.0.1` in listener `udp:127.0.0.1` is not an IP:PORT",
    );
    let src = BASE.replace("\"udp:127.0.0.1:5060\"", "\"tls:127.0.0.1:5061\"");
    assert_refused(
        &src,
        2,
        8,
        "a tls: listener needs [tls] certificate and private_key",
    );
    let src = BASE.replace("\"udp:127.0.0.1:5060\"", "\"sctp:127.0.0.1:5061\"");
    assert_refused(&src, 2, 8, "unsupported listener transport `sctp`");
}

#[test]
fn duplicate_listener() {
    let src = BASE.replace(
        "\"udp:127.0.0.1:5060\"",
        "\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"",
    );
    let e = assert_refused(&src, 2, 30, "listener `udp:127.0.0.1:5060` is listed twice");
    assert!(e.0[0].hint.as_deref().unwrap().contains("line 2"));
}

#[test]
fn unspecified_listener_needs_advertised() {
    let src = BASE.replace("udp:127.0.0.1:5060", "udp:0.0.0.0:5060");
    let e = assert_refused(&src, 2, 7, "listen.advertised is not set");
    assert_eq!(
        e.0[0].hint.as_deref(),
        Some("set listen.advertised to the address peers reach")
    );
    let fixed = src.replace("[listen]", "[listen]\nadvertised = \"192.0.2.1\"");
    assert_eq!(
        Policy::from_toml(&fixed, "t.toml")
            .unwrap()
            .listen
            .advertised,
        "192.0.2.1"
    );
}

#[test]
fn bad_cidr() {
    let src = BASE.replace("[\"127.0.0.2/32\"]", "[\"127.0.0.2/32\", \"10.0.0.0/33\"]");
    assert_refused(&src, 6, 26, "pbx.allow: `10.0.0.0/33` is not a CIDR");
    let src = BASE.replace("\"127.0.0.2/32\"", "\"127.0.0.2/24\"");
    let e = assert_refused(&src, 6, 10, "has bits set past the /24 prefix");
    assert_eq!(
        e.0[0].hint.as_deref(),
        Some("did you mean \"127.0.0.0/24\"?")
    );
}

#[test]
fn duplicate_trunk_names() {
    let src = format!("{BASE}\n[[trunk]]\nname = \"carrier-a\"\naddress = \"127.0.0.4\"\n");
    let e = assert_refused(&src, 13, 8, "trunk \"carrier-a\" is defined twice");
    assert_eq!(
        e.to_string(),
        "t.toml:13:8: error: trunk \"carrier-a\" is defined twice\n  hint: trunk names must be unique; the first is at line 9"
    );
}

#[test]
fn route_naming_undefined_trunk() {
    let src =
        format!("{BASE}\n[[route]]\nname = \"default\"\ntrunks = [\"carrier-a\", \"carrier-x\"]\n");
    let e = assert_refused(
        &src,
        14,
        24,
        "route \"default\" names undefined trunk \"carrier-x\"",
    );
    assert!(
        e.0[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("did you mean \"carrier-a\"?")
    );
    let src =
        format!("{BASE}\n[[route]]\nname = \"default\"\ntrunks = [\"carrier-a\", \"carrier-a\"]\n");
    assert_refused(&src, 14, 24, "names trunk \"carrier-a\" twice");
    let src = format!("{BASE}\n[[route]]\nname = \"default\"\ntrunks = []\n");
    assert_refused(&src, 14, 10, "route \"default\" trunks is empty");
    let src = format!("{BASE}\n[[route]]\nname = \"default\"\n");
    assert_refused(&src, 12, 1, "route \"default\" has no trunks");
}

#[test]
fn bad_durations() {
    let src = format!("{BASE}\n[sip]\nt1 = \"500\"\nt2 = 4\ntimer_c = \"90s\"\n");
    assert_refused(&src, 13, 6, "sip.t1: `500` has no unit");
    let e = assert_refused(
        &src,
        14,
        6,
        "sip.t2 must be a duration string, found the bare number 4",
    );
    assert!(
        e.iter()
            .any(|e| e.hint.as_deref() == Some("write a unit, e.g. \"10s\""))
    );
    assert_refused(&src, 15, 11, "sip.timer_c (90s) is shorter than 3 minutes");
    assert_eq!(e.len(), 3, "all three reported:\n{e}");
}

#[test]
fn missing_pbx_address_and_table() {
    let src = BASE.replace("address = \"127.0.0.2:5060\"\n", "");
    assert_refused(&src, 4, 1, "[pbx] has no address");
    let src = BASE.replace(
        "[pbx]\naddress = \"127.0.0.2:5060\"\nallow = [\"127.0.0.2/32\"]\n",
        "",
    );
    assert_refused(&src, 1, 1, "the policy has no [pbx] table");
}

#[test]
fn overlapping_allow_lists() {
    let src = BASE.replace(
        "address = \"127.0.0.3:5060\"",
        "address = \"127.0.0.3:5060\"\nallow = [\"127.0.0.0/30\"]",
    );
    let e = assert_refused(
        &src,
        11,
        10,
        "trunk \"carrier-a\" allow 127.0.0.0/30 overlaps pbx allow 127.0.0.2/32",
    );
    assert!(
        e.0[0]
            .hint
            .as_deref()
            .unwrap()
            .starts_with("pbx allow 127.0.0.2/32 is at line 6"),
        "{e}"
    );
    // Two trunks, and a trunk's own address inside another's allow list.
    let src = format!(
        "{BASE}\n[[trunk]]\nname = \"carrier-b\"\naddress = \"10.1.1.1\"\nallow = [\"127.0.0.3\"]\n"
    );
    assert_refused(
        &src,
        15,
        10,
        "trunk \"carrier-b\" allow 127.0.0.3/32 overlaps trunk \"carrier-a\" address 127.0.0.3",
    );
}

#[test]
fn bad_strategy() {
    let src = format!(
        "{BASE}\n[[route]]\nname = \"default\"\ntrunks = [\"carrier-a\"]\nstrategy = \"fastest\"\n"
    );
    let e = assert_refused(&src, 15, 12, "unknown strategy `fastest`");
    assert!(e.0[0].hint.as_deref().unwrap().contains("round-robin"));
}

#[test]
fn max_sessions_zero() {
    let src = BASE.replace(
        "name = \"carrier-a\"",
        "name = \"carrier-a\"\nmax_sessions = 0",
    );
    let e = assert_refused(
        &src,
        10,
        16,
        "trunk \"carrier-a\" max_sessions = 0 is out of range",
    );
    assert_eq!(
        e.0[0].hint.as_deref(),
        Some("trunk \"carrier-a\" max_sessions must be between 1 and 4294967295")
    );
}

#[test]
fn more_refusals() {
    assert_refused("[pbx]\naddress = [", 2, 12, "");
    let src = BASE.replace("name = \"carrier-a\"", "name = \"Carrier A\"");
    assert_refused(&src, 9, 8, "trunk name: `Carrier A` is not a valid name");
    let src = BASE.replace("127.0.0.2:5060", "::1");
    assert_refused(&src, 5, 11, "pbx.address: `::1` is not HOST:PORT");
    let src = format!("{BASE}[sip]\nmax_message_size = 100\n");
    assert_refused(&src, 12, 20, "sip.max_message_size = 100 is out of range");
    let src = format!("{BASE}[admin]\nlisten = \"localhost:9091\"\n");
    assert_refused(
        &src,
        12,
        10,
        "admin.listen: `localhost:9091` is not an IP:PORT",
    );
    let src = format!(
        "{BASE}\n[[route]]\nname = \"r\"\nmatch = {{ to_prefix = [\"+1-\"] }}\ntrunks = [\"carrier-a\"]\n"
    );
    assert_refused(&src, 14, 24, "is not a dialled-number prefix");
    let src = BASE.replace(
        "[[trunk]]\nname = \"carrier-a\"\naddress = \"127.0.0.3:5060\"\n",
        "",
    );
    assert_refused(&src, 1, 1, "the policy has no [[trunk]]");
    assert_refused(
        "[trunk]\nname = \"a\"\n",
        1,
        1,
        "invalid type: map, expected a sequence",
    );
}

#[test]
fn display_one_error_per_line() {
    let src = BASE
        .replace("127.0.0.2:5060", "127.0.0.2:0")
        .replace("\"carrier-a\"", "\"\"");
    let e = Policy::from_toml(&src, "config/x.toml").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(
            "config/x.toml:5:11: error: pbx.address: `0` in `127.0.0.2:0` is not a port"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nconfig/x.toml:9:8: error: trunk name: `` is not a valid name\n  hint: "),
        "{text}"
    );
}

#[test]
fn env_overrides_apply() {
    let vars = env(&[
        ("TRUNKGATE_ADMIN__LISTEN", "127.0.0.1:9092"),
        ("TRUNKGATE_PBX__ADDRESS", "10.0.0.5:5060"),
        ("TRUNKGATE_LISTEN__ADVERTISED", "203.0.113.10"),
        ("TRUNKGATE_LISTEN__SIP", r#"["udp:127.0.0.1:5080"]"#),
        ("TRUNKGATE_SIP__T1", "300ms"),
        ("TRUNKGATE_SIP__MAX_MESSAGE_SIZE", "4096"),
        ("TRUNKGATE_PBX__ALLOW", r#"["10.0.0.0/24"]"#),
        ("TRUNKGATE_LOG", "debug"),
        ("PATH", "/usr/bin"),
    ]);
    let p = Policy::from_toml_with_env(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN, &vars).unwrap();
    assert_eq!(p.admin.listen, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(p.pbx.address.to_string(), "10.0.0.5:5060");
    assert_eq!(p.pbx.allow, vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]);
    assert_eq!(p.listen.advertised, "203.0.113.10");
    assert_eq!(p.listen.sip[0].address, "127.0.0.1:5080".parse().unwrap());
    assert_eq!(p.sip.t1, Duration::from_millis(300));
    assert_eq!(p.sip.max_message_size, 4096);
}

#[test]
fn env_override_creates_missing_table() {
    let src = BASE.replace(
        "[pbx]\naddress = \"127.0.0.2:5060\"\nallow = [\"127.0.0.2/32\"]\n",
        "",
    );
    let vars = env(&[("TRUNKGATE_PBX__ADDRESS", "127.0.0.2")]);
    let p = Policy::from_toml_with_env(&src, "t.toml", &vars).unwrap();
    assert_eq!(p.pbx.address.to_string(), "127.0.0.2:5060");
}

#[test]
fn env_errors_name_the_variable() {
    let vars = env(&[
        ("TRUNKGATE_SIP__T1", "300"),
        ("TRUNKGATE_SIP__T3", "1s"),
        ("TRUNKGATE_TRUNK__NAME", "x"),
        ("TRUNKGATE_ADMIN__LISTEN", "nowhere"),
    ]);
    let e = Policy::from_toml_with_env(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN, &vars).unwrap_err();
    let by = |var: &str| {
        e.iter()
            .find(|e| e.origin == var)
            .unwrap_or_else(|| panic!("no error for {var}:\n{e}"))
    };
    let t1 = by("TRUNKGATE_SIP__T1");
    assert_eq!((t1.line, t1.col), (0, 0));
    assert!(
        t1.message
            .contains("sip.t1 must be a duration string, found the bare number 300")
    );
    let t3 = by("TRUNKGATE_SIP__T3");
    assert!(t3.message.contains("names no key `t3` in [sip]"), "{t3}");
    assert!(t3.hint.as_deref().unwrap().contains("TRUNKGATE_SIP__T1"));
    assert!(
        by("TRUNKGATE_TRUNK__NAME")
            .message
            .contains("names no policy section `trunk`")
    );
    assert!(
        by("TRUNKGATE_ADMIN__LISTEN")
            .to_string()
            .starts_with("TRUNKGATE_ADMIN__LISTEN: error: admin.listen: `nowhere`")
    );
    assert_eq!(e.len(), 4);
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let missing = Path::new("/nonexistent/trunkgate.toml");
    let e = Policy::load(missing).unwrap_err();
    assert_eq!(e.0[0].origin, "/nonexistent/trunkgate.toml");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/trunkgate.toml: error: cannot read the policy file")
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/trunkgate.toml");
    // The process environment may carry overrides; only require that the file is read.
    if let Ok(p) = Policy::load(&path) {
        assert_eq!(p.trunks.len(), 2);
    }
}

#[test]
fn media_defaults_follow_the_listener() {
    let p = Policy::embedded_default().unwrap();
    assert_eq!(p.listen.dscp, 24, "CS3 on SIP");
    let m = &p.media;
    assert_eq!(m.address, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(m.advertised, m.address);
    assert_eq!((m.port_min, m.port_max), (20000, 39999));
    assert_eq!(m.dscp, 46, "EF on media");
    assert_eq!(m.latch, MediaLatch::Auto);
    assert_eq!(m.timeout, Duration::from_secs(60));
    assert_eq!(m.hold_timeout, Duration::from_secs(3600));
    assert_eq!(m.threads, 1);
    assert_eq!(m.nice, -10);
    assert!(p.trunks.iter().all(|t| t.anchor_media));
}

#[test]
fn media_block_of_the_embedded_default_is_valid_uncommented() {
    // The commented [media] block in config/trunkgate.toml, switched on.
    let mut src = String::new();
    let mut in_media = false;
    for line in crate::EMBEDDED_DEFAULT.lines() {
        if line.starts_with("# [media]") {
            in_media = true;
        }
        if in_media && line.starts_with("# ") {
            src.push_str(&line[2..]);
        } else {
            in_media = false;
            src.push_str(line);
        }
        src.push('\n');
    }
    let src = src.replace("# media = { anchor = false }", "media = { anchor = false }");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.media.advertised, IpAddr::from([203, 0, 113, 10]));
    assert!(!p.trunks[0].anchor_media);
    assert!(p.trunks[1].anchor_media);
}

#[test]
fn media_keys_take_names_numbers_and_env_overrides() {
    let src = format!(
        "{BASE}\n[media]\naddress = \"0.0.0.0\"\nadvertised = \"192.0.2.7\"\nports = \"30000-30009\"\ndscp = 34\nlatch = \"sdp-ip\"\n"
    );
    let env = vec![
        ("TRUNKGATE_MEDIA__TIMEOUT".to_owned(), "5s".to_owned()),
        ("TRUNKGATE_LISTEN__DSCP".to_owned(), "AF31".to_owned()),
    ];
    let p = Policy::from_toml_with_env(&src, "t.toml", &env).unwrap();
    assert_eq!(p.media.address, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(p.media.advertised, IpAddr::from([192, 0, 2, 7]));
    assert_eq!((p.media.port_min, p.media.port_max), (30000, 30009));
    assert_eq!(p.media.dscp, 34);
    assert_eq!(p.media.latch, MediaLatch::SdpIp);
    assert_eq!(p.media.timeout, Duration::from_secs(5));
    assert_eq!(p.listen.dscp, 26);
}

#[test]
fn unspecified_media_address_needs_something_to_advertise() {
    let src = format!("{BASE}\n[media]\naddress = \"0.0.0.0\"\n");
    // listen.advertised defaults to the listener IP 127.0.0.1: used for media too.
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.media.advertised, IpAddr::from([127, 0, 0, 1]));
    let src = src.replace("[listen]", "[listen]\nadvertised = \"sbc.example.com\"");
    let e = Policy::from_toml(&src, "t.toml").unwrap_err();
    assert!(e.to_string().contains("media.advertised is not set"), "{e}");
}

#[test]
fn media_quality_keys_have_defaults_and_precise_errors() {
    let m = Policy::embedded_default().unwrap().media;
    assert_eq!(m.one_way_after, Duration::from_secs(5));
    assert_eq!(m.quality_interval, Duration::from_secs(10));
    assert_eq!(m.assumed_delay, Duration::from_millis(40));
    let src = format!(
        "{BASE}\n[media]\none_way_after = \"2s\"\nquality_interval = \"3s\"\nassumed_delay = \"150ms\"\n"
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(p.media.one_way_after, Duration::from_secs(2));
    assert_eq!(p.media.quality_interval, Duration::from_secs(3));
    assert_eq!(p.media.assumed_delay, Duration::from_millis(150));
    let at = |body: &str| format!("{BASE}\n[media]\n{body}\n");
    assert_refused(
        &at("one_way_after = \"500ms\""),
        13,
        17,
        "shorter than a second",
    );
    assert_refused(
        &at("timeout = \"5s\"\none_way_after = \"5s\""),
        14,
        17,
        "not shorter than media.timeout",
    );
    assert_refused(&at("quality_interval = \"10m\""), 13, 20, "out of range");
    assert_refused(
        &at("assumed_delay = \"2s\""),
        13,
        17,
        "longer than a second",
    );
    assert_refused(&at("assumed_delay = 40"), 13, 17, "bare number");
}

#[test]
fn admin_token_file_and_drill_max_duration() {
    let p = Policy::from_toml(BASE, "t.toml").unwrap();
    assert_eq!(p.admin.token_file, None);
    assert_eq!(p.drill.max_duration, Duration::from_secs(1800));
    let src = format!(
        "{BASE}[admin]\nlisten = \"127.0.0.1:9091\"\ntoken_file = \"/etc/tg.token\"\n[drill]\nmax_duration = \"10m\"\n"
    );
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(
        p.admin.token_file.as_deref(),
        Some(std::path::Path::new("/etc/tg.token"))
    );
    assert_eq!(p.drill.max_duration, Duration::from_secs(600));
    let src = format!("{BASE}[drill]\nmax_duration = \"0s\"\n");
    assert_refused(
        &src,
        12,
        16,
        "drill.max_duration (0ns) is shorter than a second",
    );
}

#[test]
fn dns_servers_and_timeout() {
    let p = Policy::from_toml(BASE, "t.toml").unwrap();
    assert!(
        p.dns.servers.is_empty(),
        "default: the system's resolv.conf"
    );
    assert_eq!(p.dns.timeout, Duration::from_secs(2));
    let src =
        format!("{BASE}\n[dns]\nservers = [\"127.0.0.53\", \"[::1]:5353\"]\ntimeout = \"500ms\"\n");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert_eq!(
        p.dns.servers,
        [
            "127.0.0.53:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert_eq!(p.dns.timeout, Duration::from_millis(500));
    // BASE is 10 lines and ends with a newline; then a blank line, [dns] on 12, keys on 13.
    let bad = format!("{BASE}\n[dns]\nservers = [\"ns.example\"]\n");
    let e = assert_refused(&bad, 13, 12, "not an IP address");
    assert!(e.to_string().contains("127.0.0.53"), "{e}");
    let slow = format!("{BASE}\n[dns]\ntimeout = \"1m\"\n");
    assert_refused(&slow, 13, 11, "outside 100ms");
    let typo = format!("{BASE}\n[dns]\nserver = []\n");
    let e = assert_refused(&typo, 13, 1, "unknown key `server`");
    assert!(e.to_string().contains("did you mean `servers`"), "{e}");
}

#[test]
fn a_name_without_port_keeps_none() {
    let src = BASE.replace("\"127.0.0.3:5060\"", "\"sip.carrier.example\"");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert!(!p.trunks[0].address.port_given);
    assert_eq!(p.trunks[0].address.to_string(), "sip.carrier.example");
    let src = BASE.replace("\"127.0.0.3:5060\"", "\"sip.carrier.example:5080\"");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert!(p.trunks[0].address.port_given);
    assert_eq!(p.trunks[0].address.to_string(), "sip.carrier.example:5080");
}
