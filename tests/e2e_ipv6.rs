//! IPv6 end to end (issue 12 item 2): the real `trunkgate` binary between SIPp peers on
//! `::1`, and a dual-stack call between an IPv4 PBX and an IPv6 carrier.
//!
//! Address plan (no other test uses these): every IPv6 peer is on `::1`, told apart by port
//! (the policy's peer addresses differ only in port, see `docs/policy.md`):
//! - `ipv6_calls_both_ways_with_media_anchored`: Trunkgate `[::1]:15060` (admin
//!   `[::1]:15099`), PBX `[::1]:15061`, carrier-a `[::1]:15062`; relay ports 42000–42799,
//!   SIPp media on 42900/42920.
//! - `dual_stack_call_pbx_ipv4_carrier_ipv6`: Trunkgate `127.0.140.1:15070` and
//!   `[::1]:15070` (admin `127.0.140.1:15098`), PBX `127.0.140.2:15071`, carrier-a
//!   `[::1]:15072`; relay ports 43000–43799, carrier media on 43900.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/ipv6.rs"]
mod ipv6;

use common::sipp::LoggedMessage;
use common::trunkgate::Trunkgate;
use common::{calls_list, poll, scratch_dir, value};
use ipv6::{Peer, sdp_family};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn start(dir: &Path, policy: &str, admin: SocketAddr) -> Trunkgate {
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).expect("write policy");
    Trunkgate::check(&path);
    Trunkgate::start(dir, Some(&path), admin)
}

/// A policy with one PBX and carrier-a, generous limits, media anchored.
fn policy(
    listen: &[SocketAddr],
    admin: SocketAddr,
    pbx: SocketAddr,
    carrier: SocketAddr,
    media: &str,
) -> String {
    let sip: Vec<String> = listen.iter().map(|a| format!("\"udp:{a}\"")).collect();
    format!(
        r#"[listen]
sip = [{sip}]

[sip]
shutdown_grace = "2s"

[admin]
listen = "{admin}"

[pbx]
address = "{pbx}"
allow = []

[media]
{media}

[records]
enabled = false

[[trunk]]
name = "carrier-a"
address = "{carrier}"
allow = []
max_sessions = 10000
max_cps = 10000

[[route]]
name = "default"
match = {{ to_prefix = [""] }}
trunks = ["carrier-a"]
strategy = "priority"
"#,
        sip = sip.join(", ")
    )
}

fn invites(log: &[LoggedMessage]) -> Vec<&LoggedMessage> {
    log.iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .collect()
}

fn oks(log: &[LoggedMessage]) -> Vec<&LoggedMessage> {
    log.iter()
        .filter(|m| !m.sent && m.is_response(200, "INVITE"))
        .collect()
}

/// Every message names Trunkgate's media address `ip` in `o=` and every `c=` (with the
/// address type of its family) and an anchored port in `ports`.
fn assert_anchored_sdp(
    what: &str,
    messages: &[&LoggedMessage],
    ip: IpAddr,
    ports: std::ops::RangeInclusive<u16>,
) {
    for m in messages {
        let sdp = sdp_family(&m.text).unwrap_or_else(|| panic!("{what}: no SDP in\n{}", m.text));
        assert!(
            sdp.all_at(ip) && ports.contains(&sdp.port),
            "{what}: SDP not anchored at {ip} on a port of {ports:?}: {sdp:?}\n{}",
            m.text
        );
    }
}

/// The header lines named `name` of a logged message (in order).
fn headers<'a>(m: &'a LoggedMessage, name: &str) -> Vec<&'a str> {
    m.text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// Gauges of the relay back at zero (every call's media released).
fn assert_media_idle(tg: &Trunkgate, admin: SocketAddr) -> String {
    let mut metrics = String::new();
    let idle = poll(Duration::from_secs(10), || {
        metrics = tg.metrics();
        (calls_list(admin).is_empty()
            && value(&metrics, "trunkgate_media_sessions", &[]) == 0.0
            && value(&metrics, "trunkgate_dialogs_active", &[]) == 0.0)
            .then_some(())
    });
    assert!(
        idle.is_some(),
        "media/dialogs not idle after the calls:\n{metrics}"
    );
    metrics
}

/// Done-when: 500 calls over IPv6 (`::1`) both ways — PBX → carrier-a and carrier-a → PBX —
/// with media anchored: every SDP each SIPp received names Trunkgate's IPv6 media address in
/// `o=`/`c=` (`IN IP6 ::1`) and a relay port, Via and Record-Route carry `[::1]:15060`, the
/// relay counted every call answered, and everything is released afterwards.
#[test]
fn ipv6_calls_both_ways_with_media_anchored() {
    const CALLS: u64 = 500;
    let dir = scratch_dir("ipv6_calls_both_ways_with_media_anchored");
    let (sbc, admin, pbx, carrier) = (at(V6, 15060), at(V6, 15099), at(V6, 15061), at(V6, 15062));
    let tg = start(
        &dir,
        &policy(
            &[sbc],
            admin,
            pbx,
            carrier,
            "address = \"::1\"\nports = \"42000-42799\"",
        ),
        admin,
    );
    let relay_ports = 42000..=42799;
    let calls = CALLS.to_string();
    let uac_args = [
        "-sn", "uac", "-s", "1000", "-m", &calls, "-r", "100", "-mi", "::1",
    ];
    let timeout = Duration::from_secs(30);
    let started = std::time::Instant::now();

    for (direction, (caller, callee)) in [("outbound", (pbx, carrier)), ("inbound", (carrier, pbx))]
    {
        let (caller_name, callee_name) = if direction == "outbound" {
            ("pbx-uac", "carrier-uas")
        } else {
            ("carrier-uac", "pbx-uas")
        };
        let mut uas = Peer::spawn(
            &dir,
            callee_name,
            callee,
            None,
            &["-sn", "uas", "-mi", "::1", "-mp", "42920"],
            timeout,
        );
        uas.wait_bound(callee);
        let mut args: Vec<&str> = uac_args.to_vec();
        args.extend(["-mp", "42900"]);
        let mut uac = Peer::spawn(&dir, caller_name, caller, Some(sbc), &args, timeout);
        uac.assert_all_succeeded(CALLS);

        // Every offer the callee got and every answer the caller got is anchored in IPv6.
        let uas_log = uas.messages();
        let got = invites(&uas_log);
        assert_eq!(
            got.len() as u64,
            CALLS,
            "{direction}: INVITEs at {callee_name}"
        );
        assert_anchored_sdp(
            &format!("{direction}: INVITE at {callee_name}"),
            &got,
            V6,
            relay_ports.clone(),
        );
        let uac_log = uac.messages();
        let answers = oks(&uac_log);
        assert_eq!(
            answers.len() as u64,
            CALLS,
            "{direction}: 200 OKs at {caller_name}"
        );
        assert_anchored_sdp(
            &format!("{direction}: 200 OK at {caller_name}"),
            &answers,
            V6,
            relay_ports.clone(),
        );
        // Our Via and Record-Route in brackets, our listener's port.
        let first = got[0];
        let vias = headers(first, "Via");
        assert!(
            vias.first()
                .is_some_and(|v| v.starts_with("SIP/2.0/UDP [::1]:15060;branch=z9hG4bK-tg-")),
            "{direction}: top Via at {callee_name}: {vias:?}"
        );
        assert_eq!(
            headers(first, "Record-Route"),
            ["<sip:[::1]:15060;lr>"],
            "{direction}"
        );
        assert_eq!(
            first.start_line(),
            format!("INVITE sip:1000@{callee} SIP/2.0"),
            "{direction}"
        );
        drop(uas);
    }
    eprintln!("ipv6: {} calls each way in {:?}", CALLS, started.elapsed());

    let metrics = assert_media_idle(&tg, admin);
    let answered = value(
        &metrics,
        "trunkgate_media_answered_total",
        &[("trunk", "carrier-a")],
    );
    assert_eq!(
        answered,
        (2 * CALLS) as f64,
        "calls with anchored media answered:\n{metrics}"
    );
    assert_eq!(
        value(&metrics, "trunkgate_sip_unknown_source_total", &[]),
        0.0,
        "{metrics}"
    );
}

fn scenario(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests")
        .join(name);
    assert!(path.is_file(), "scenario {} missing", path.display());
    path
}

fn counts(call: &Value) -> [u64; 4] {
    let s = &call["streams"][0];
    let n = |leg: &str, key: &str| s[leg][key].as_u64().unwrap_or(0);
    [
        n("a", "rx_packets"),
        n("b", "tx_packets"),
        n("b", "rx_packets"),
        n("a", "tx_packets"),
    ]
}

fn leg_addr(call: &Value, leg: &str, key: &str) -> Option<SocketAddr> {
    call["streams"][0][leg][key]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// Done-when: a mixed call — the PBX on IPv4, carrier-a on IPv6 — where each receives SDP in
/// its own family (`IN IP4 127.0.140.1` toward the PBX, `IN IP6 ::1` toward the carrier), RTP
/// (G.711 from a pcap, echoed by the carrier) is relayed both ways across the families, the
/// relay's legs sit on one address of each family, and the INVITE the carrier gets carries
/// our IPv6 Via and a double Record-Route (RFC 5658: IPv6 toward it, IPv4 toward the PBX).
#[test]
fn dual_stack_call_pbx_ipv4_carrier_ipv6() {
    assert!(
        Path::new(PCAP).is_file(),
        "{PCAP} missing (Debian package sip-tester)"
    );
    let v4 = |host: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 140, host));
    let dir = scratch_dir("dual_stack_call_pbx_ipv4_carrier_ipv6");
    let (sbc4, sbc6) = (at(v4(1), 15070), at(V6, 15070));
    let (admin, pbx, carrier) = (at(v4(1), 15098), at(v4(2), 15071), at(V6, 15072));
    let tg = start(
        &dir,
        &policy(
            &[sbc4, sbc6],
            admin,
            pbx,
            carrier,
            "address = [\"127.0.140.1\", \"::1\"]\nports = \"43000-43799\"",
        ),
        admin,
    );
    let mut uas = Peer::spawn(
        &dir,
        "carrier-uas",
        carrier,
        None,
        &[
            "-sn",
            "uas",
            "-m",
            "1",
            "-rtp_echo",
            "-mi",
            "::1",
            "-mp",
            "43900",
        ],
        Duration::from_secs(40),
    );
    uas.wait_bound(carrier);
    let uac_scenario = scenario("media/uac_pcap_echo.xml");
    let mut uac = Peer::spawn(
        &dir,
        "pbx-uac",
        pbx,
        Some(sbc4),
        &[
            "-sf",
            uac_scenario.to_str().unwrap(),
            "-s",
            "1000",
            "-m",
            "1",
            "-mi",
            "127.0.140.2",
            "-mp",
            "16000",
        ],
        Duration::from_secs(40),
    );

    // While the pcap plays: packets each way on both legs, growing.
    let mut seen = Vec::new();
    let first = poll(Duration::from_secs(10), || {
        seen = calls_list(admin);
        match seen.as_slice() {
            [c] if counts(c).iter().all(|&n| n >= 50) => Some(c.clone()),
            _ => None,
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "no call with >= 50 packets on [a.rx, b.tx, b.rx, a.tx] within 10 s: {seen:#?}\n{}\n{}",
            uac.report(),
            uas.report()
        )
    });
    std::thread::sleep(Duration::from_millis(1000));
    let later = calls_list(admin);
    assert_eq!(later.len(), 1, "{later:#?}");
    let (c0, c1) = (counts(&first), counts(&later[0]));
    assert!(
        c0.iter().zip(&c1).all(|(a, b)| b > a),
        "packet counts did not grow: {c0:?} -> {c1:?}"
    );
    eprintln!("dual stack: [a.rx, b.tx, b.rx, a.tx] {c0:?} -> {c1:?}");
    let call = &later[0];
    let (a_local, b_local) = (
        leg_addr(call, "a", "local").expect("leg a local"),
        leg_addr(call, "b", "local").expect("leg b local"),
    );
    assert_eq!(
        a_local.ip(),
        v4(1),
        "the PBX's leg is on the IPv4 media address: {call:#}"
    );
    assert_eq!(
        b_local.ip(),
        V6,
        "the carrier's leg is on the IPv6 media address: {call:#}"
    );
    assert_eq!(
        leg_addr(call, "a", "latched_peer"),
        Some(at(v4(2), 16000)),
        "{call:#}"
    );
    assert_eq!(
        leg_addr(call, "b", "latched_peer"),
        Some(at(V6, 43900)),
        "{call:#}"
    );
    for leg in ["a", "b"] {
        assert_eq!(
            call["streams"][0][leg]["dropped"], 0,
            "leg {leg} dropped: {call:#}"
        );
    }

    uac.assert_all_succeeded(1);
    uas.assert_all_succeeded(1);

    // Each side's SDP in its own family, naming its own leg.
    let uac_log = uac.messages();
    let answer = oks(&uac_log);
    assert_eq!(answer.len(), 1);
    assert_anchored_sdp(
        "200 OK at the IPv4 PBX",
        &answer,
        v4(1),
        a_local.port()..=a_local.port(),
    );
    let uas_log = uas.messages();
    let offer = invites(&uas_log);
    assert_eq!(offer.len(), 1);
    assert_anchored_sdp(
        "INVITE at the IPv6 carrier",
        &offer,
        V6,
        b_local.port()..=b_local.port(),
    );
    for line in ["a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000"] {
        assert!(
            offer[0].text.contains(line),
            "offer lost {line:?}:\n{}",
            offer[0].text
        );
    }
    // Our Via toward the carrier is IPv6; the route set names us in both families, the
    // carrier's side first (RFC 5658 double Record-Route across the address families).
    let vias = headers(offer[0], "Via");
    assert!(
        vias[0].starts_with("SIP/2.0/UDP [::1]:15070;branch="),
        "{vias:?}"
    );
    assert_eq!(
        headers(offer[0], "Record-Route"),
        ["<sip:[::1]:15070;lr>", "<sip:127.0.140.1:15070;lr>"]
    );
    assert_eq!(offer[0].start_line(), "INVITE sip:1000@[::1]:15072 SIP/2.0");
    // The BYE from the PBX reached the carrier through both of our routes.
    assert!(
        uas_log.iter().any(|m| !m.sent && m.is_request("BYE")),
        "no BYE at the carrier:\n{}",
        uas.report()
    );

    let metrics = assert_media_idle(&tg, admin);
    let packets = |side: &str| {
        value(
            &metrics,
            "trunkgate_media_packets_total",
            &[("trunk", "carrier-a"), ("side", side)],
        )
    };
    eprintln!(
        "dual stack: media packets by side: {:?}",
        common::samples(&metrics, "trunkgate_media_packets_total")
    );
    assert!(
        packets("pbx") >= 200.0 && packets("trunk") >= 200.0,
        "relayed packets by side:\n{metrics}"
    );
}
