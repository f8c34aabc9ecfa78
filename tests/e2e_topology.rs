//! Topology hiding (issue 12 item 3), end to end with SIPp on loopback: carrier-a has
//! `topology_hiding = true`.
//!
//! 1. 200 calls PBX → carrier-a (`tests/topology/pbx_uac.xml`, `carrier_uas.xml`): the PBX
//!    names itself everywhere (Via, Contact, From, To, Call-ID, SDP, P-Asserted-Identity,
//!    User-Agent, Server); the carrier re-INVITEs every call through the Contact and
//!    Record-Route it was given; odd calls are hung up by the PBX, even ones by the carrier.
//!    Every call completes on both sides, and carrier-a's message trace contains neither the
//!    PBX's address nor any of the PBX's Call-IDs.
//! 2. 100 calls carrier-a → PBX (SIPp's built-in `uac`; `pbx_uas.xml` answers with its own
//!    Contact, Record-Route, Server and P-Asserted-Identity): the same for the answers the
//!    carrier receives.
//!
//! Nets 150–151.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{LoggedMessage, Scenario, SippPeer};
use common::trunkgate::Trunkgate;
use common::{Net, scratch_dir, test_policy};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/topology")
        .join(name)
}

/// The test policy with `topology_hiding = true` for carrier-a.
fn hiding_policy(dir: &Path, net: Net) -> PathBuf {
    let text = test_policy(net);
    let anchor = format!("address = \"{}:5060\"", net.carrier_a_ip());
    assert!(text.contains(&anchor), "{anchor}");
    let text = text.replacen(&anchor, &format!("{anchor}\ntopology_hiding = true"), 1);
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn peer(
    dir: &Path,
    name: &str,
    scenario: Scenario<'_>,
    ip: std::net::IpAddr,
    to: Option<std::net::SocketAddr>,
    args: &[&str],
) -> SippPeer {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    SippPeer::spawn(dir, name, scenario, ip, to, &args, Duration::from_secs(60))
}

/// Nothing of the inside in what `carrier` logged (sent or received): no `pbx_ip`, none of
/// `call_ids`; requests it received carry one Via (ours).
fn assert_nothing_inside(log: &[LoggedMessage], pbx_ip: &str, call_ids: &HashSet<String>) {
    assert!(!log.is_empty());
    for m in log {
        assert!(
            !m.text.contains(pbx_ip),
            "the PBX's address reached the carrier:\n{}",
            m.text
        );
        if let Some(cid) = m.header("Call-ID") {
            assert!(
                !call_ids.contains(cid),
                "a PBX Call-ID reached the carrier:\n{}",
                m.text
            );
        }
        let request = !m.start_line().starts_with("SIP/2.0");
        if request && !m.sent {
            let vias = m
                .text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
                .count();
            assert_eq!(vias, 1, "only Trunkgate's Via:\n{}", m.text);
        }
    }
}

fn call_ids(log: &[LoggedMessage]) -> HashSet<String> {
    log.iter()
        .filter_map(|m| m.header("Call-ID").map(str::to_owned))
        .collect()
}

/// Wait for `peer` to end and require `calls` successful calls, none failed.
fn assert_completed(peer: &mut SippPeer, who: &str, calls: u64, tg: &Trunkgate) {
    let result = peer.wait();
    assert!(
        result.failed == 0 && result.successful == calls,
        "{who}: {} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        peer.report(),
        tg.log_tail()
    );
}

#[test]
fn outbound_calls_show_the_carrier_nothing_of_the_pbx() {
    const CALLS: u64 = 200;
    let net = Net::new(150);
    let dir = scratch_dir("topology_outbound");
    let n = CALLS.to_string();
    let uas = scenario("carrier_uas.xml");
    let mut carrier = peer(
        &dir,
        "carrier_a",
        Scenario::File(&uas),
        net.carrier_a_ip(),
        None,
        &["-m", &n],
    );
    let policy = hiding_policy(&dir, net);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let uac = scenario("pbx_uac.xml");
    let mut pbx = peer(
        &dir,
        "pbx",
        Scenario::File(&uac),
        net.pbx_ip(),
        Some(net.sip()),
        &["-s", "1000", "-r", "25", "-l", "60", "-m", &n],
    );
    assert_completed(&mut pbx, "PBX", CALLS, &tg);
    assert_completed(&mut carrier, "carrier-a", CALLS, &tg);

    let pbx_log = pbx.messages();
    let inside_ids = call_ids(&pbx_log);
    assert_eq!(
        inside_ids.len(),
        CALLS as usize,
        "one Call-ID per call at the PBX"
    );
    let log = carrier.messages();
    assert_nothing_inside(&log, &net.pbx_ip().to_string(), &inside_ids);
    let outer_ids = call_ids(&log);
    assert_eq!(
        outer_ids.len(),
        CALLS as usize,
        "one Call-ID per call at the carrier"
    );
    assert!(
        outer_ids.iter().all(|c| c.starts_with("tg")),
        "{outer_ids:?}"
    );

    let received = |method: &str| {
        log.iter()
            .filter(|m| !m.sent && m.is_request(method))
            .count()
    };
    let sent = |method: &str| {
        log.iter()
            .filter(|m| m.sent && m.is_request(method))
            .count()
    };
    assert_eq!(received("INVITE"), CALLS as usize);
    assert_eq!(
        sent("INVITE"),
        CALLS as usize,
        "a re-INVITE from the carrier per call"
    );
    assert_eq!(
        (received("BYE"), sent("BYE")),
        (CALLS as usize / 2, CALLS as usize / 2),
        "BYE from either side"
    );
    // What the carrier got names Trunkgate: Contact, SDP (anchored), identities, products.
    let tg_ip = net.trunkgate_ip().to_string();
    for m in log
        .iter()
        .filter(|m| !m.sent && m.header("Contact").is_some())
    {
        let contact = m.header("Contact").unwrap();
        assert!(
            contact.starts_with("<sip:tg") && contact.contains(&tg_ip),
            "{contact}"
        );
    }
    for m in log
        .iter()
        .filter(|m| !m.sent && m.text.contains("\r\nc=IN IP4"))
    {
        let (ip, _) = common::sdp_media_address(&m.text).unwrap();
        assert_eq!(ip.to_string(), tg_ip, "anchored SDP:\n{}", m.text);
    }
    for m in log.iter().filter(|m| !m.sent) {
        for h in ["User-Agent", "Server"] {
            if let Some(v) = m.header(h) {
                assert!(!v.contains("PBX-Product"), "{h}: {v}");
            }
        }
    }
    // The PBX saw its own Call-IDs on everything, and the carrier's re-INVITE for each call.
    let reinvites = pbx_log
        .iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .count();
    assert_eq!(reinvites, CALLS as usize);
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(Duration::from_secs(10));
}

#[test]
fn inbound_answers_show_the_carrier_nothing_of_the_pbx() {
    const CALLS: u64 = 100;
    let net = Net::new(151);
    let dir = scratch_dir("topology_inbound");
    let n = CALLS.to_string();
    let uas = scenario("pbx_uas.xml");
    let mut pbx = peer(
        &dir,
        "pbx",
        Scenario::File(&uas),
        net.pbx_ip(),
        None,
        &["-m", &n],
    );
    let policy = hiding_policy(&dir, net);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let mut carrier = peer(
        &dir,
        "carrier_a",
        Scenario::Builtin("uac"),
        net.carrier_a_ip(),
        Some(net.sip()),
        &["-s", "2000", "-r", "25", "-l", "60", "-m", &n],
    );
    assert_completed(&mut carrier, "carrier-a", CALLS, &tg);
    assert_completed(&mut pbx, "PBX", CALLS, &tg);
    let log = carrier.messages();
    assert_nothing_inside(&log, &net.pbx_ip().to_string(), &HashSet::new());
    let answers: Vec<_> = log
        .iter()
        .filter(|m| !m.sent && m.is_response(200, "INVITE"))
        .collect();
    assert_eq!(answers.len(), CALLS as usize);
    for m in answers {
        assert!(
            m.header("Contact").unwrap().starts_with("<sip:tg"),
            "{}",
            m.text
        );
        assert!(
            !m.header("Server")
                .unwrap_or_default()
                .contains("PBX-Product")
        );
    }
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(Duration::from_secs(10));
}
