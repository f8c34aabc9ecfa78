//! Dialogs by the book and mixed transports (issue 11), end to end with SIPp on loopback:
//!
//! 1. PBX on UDP → Trunkgate → carrier-a on TCP (`transport = "tcp"`), 100 calls; and the
//!    reverse, carrier-a calling in over TCP to a PBX on UDP (`[pbx] transport = "udp"`).
//! 2. A carrier that forks (`tests/dialogs/uas_fork.xml`: two 200 OKs with two To tags): the
//!    PBX ACKs both, hangs up the second answer, then the first — every request reaches its
//!    own dialog and gets 200 (before, the BYE of the second answer ended the first call and
//!    its own BYE got 481).
//! 3. An out-of-dialog REFER from the PBX (`uac_refer.xml`), accepted with 202 by the carrier
//!    (`uas_refer.xml`), whose NOTIFY comes back along the recorded route: forwarded to the
//!    PBX, not answered 481.
//!
//! 4. carrier-a's `[trunk.outbound]` rules (national → +44 called and calling numbers, the
//!    PBX's `X-Internal-*` headers removed, a header added, a fixed User-Agent) on 100 calls,
//!    read back from carrier-a's message trace, INVITEs and in-dialog requests alike.
//!
//! Nets 85–89.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Scenario, SippPeer, Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, scratch_dir, test_policy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/dialogs")
        .join(name)
}

/// The test policy with carrier-a reached over `trunk` and the PBX over `pbx`.
fn policy(dir: &Path, net: Net, trunk: &str, pbx: &str) -> PathBuf {
    let mut text = test_policy(net);
    for (ip, transport) in [(net.pbx_ip(), pbx), (net.carrier_a_ip(), trunk)] {
        let anchor = format!("address = \"{ip}:5060\"");
        assert!(text.contains(&anchor), "{anchor}");
        text = text.replacen(
            &anchor,
            &format!("{anchor}\ntransport = \"{transport}\""),
            1,
        );
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn dialogs_drain(tg: &Trunkgate) {
    tg.assert_dialogs_drain(Duration::from_secs(10));
}

/// 100 calls from `caller` (on its IP, over its transport) to a SIPp UAS `callee`, with
/// the PBX reached over UDP and carrier-a over TCP.
fn mixed_run(net: Net, test: &str, caller: (&str, Transport), callee: (&str, Transport)) {
    let ip = |name: &str| match name {
        "pbx" => net.pbx_ip(),
        _ => net.carrier_a_ip(),
    };
    let dir = scratch_dir(test);
    let _uas = Uas::start(
        &dir,
        callee.0,
        ip(callee.0),
        callee.1,
        Duration::from_secs(90),
    );
    let policy = policy(&dir, net, "tcp", "udp");
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let spec = UacSpec::new(ip(caller.0), net.sip(), caller.1, 20, 100);
    Uac::spawn(&dir, caller.0, spec)
        .wait()
        .assert_all_succeeded(100);
    let m = tg.metrics();
    assert!(
        common::value(&m, "trunkgate_tcp_connections_total", &[]) >= 1.0,
        "the trunk leg went over TCP"
    );
    dialogs_drain(&tg);
    tg.stop(Duration::from_secs(10));
}

#[test]
fn pbx_on_udp_to_a_trunk_on_tcp() {
    mixed_run(
        Net::new(85),
        "dialogs_udp_to_tcp",
        ("pbx", Transport::Udp),
        ("carrier_a", Transport::Tcp),
    );
}

#[test]
fn a_trunk_on_tcp_to_a_pbx_on_udp() {
    mixed_run(
        Net::new(86),
        "dialogs_tcp_to_udp",
        ("carrier_a", Transport::Tcp),
        ("pbx", Transport::Udp),
    );
}

fn peer(
    dir: &Path,
    name: &str,
    file: &str,
    ip: std::net::IpAddr,
    to: Option<SocketAddr>,
    args: &[&str],
) -> SippPeer {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let path = scenario(file);
    SippPeer::spawn(
        dir,
        name,
        Scenario::File(&path),
        ip,
        to,
        &args,
        Duration::from_secs(60),
    )
}

/// A carrier SIPp scenario and a PBX one through Trunkgate (both UDP): `calls` calls at
/// 5/s, every one of which must succeed at the PBX.
struct ScenarioRun {
    carrier: SippPeer,
    pbx: SippPeer,
    tg: Trunkgate,
}

fn scenario_run(net: Net, test: &str, (uas, uac): (&str, &str), calls: u64) -> ScenarioRun {
    let dir = scratch_dir(test);
    let carrier = peer(&dir, "carrier_a", uas, net.carrier_a_ip(), None, &[]);
    let policy = policy(&dir, net, "udp", "udp");
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let n = calls.to_string();
    let mut pbx = peer(
        &dir,
        "pbx",
        uac,
        net.pbx_ip(),
        Some(net.sip()),
        &["-s", "1000", "-r", "5", "-m", &n],
    );
    let result = pbx.wait();
    assert!(
        result.failed == 0 && result.successful == calls,
        "{} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail()
    );
    ScenarioRun { carrier, pbx, tg }
}

#[test]
fn each_answer_of_a_forking_carrier_is_its_own_dialog() {
    let run = scenario_run(
        Net::new(87),
        "dialogs_fork",
        ("uas_fork.xml", "uac_fork.xml"),
        20,
    );
    let (carrier, tg) = (&run.carrier, &run.tg);
    // The carrier saw each BYE with its own dialog's To/From tags: one per answer.
    let log = common::poll(Duration::from_secs(5), || {
        let log = carrier.messages();
        (log.iter()
            .filter(|m| !m.sent && m.is_request("BYE"))
            .count()
            >= 40)
            .then_some(log)
    })
    .unwrap_or_else(|| carrier.messages());
    let byes: Vec<String> = log
        .iter()
        .filter(|m| !m.sent && m.is_request("BYE"))
        .filter_map(|m| m.header("From").map(str::to_owned))
        .collect();
    assert_eq!(byes.len(), 40, "two BYEs per call");
    for tag in ["SIPpTagA", "SIPpTagB"] {
        assert_eq!(
            byes.iter().filter(|f| f.contains(tag)).count(),
            0,
            "BYEs come from the PBX (its From tag), whatever the dialog"
        );
    }
    let to_tags = |tag: &str| {
        log.iter()
            .filter(|m| !m.sent && m.is_request("BYE"))
            .filter(|m| m.header("To").is_some_and(|t| t.contains(tag)))
            .count()
    };
    assert_eq!((to_tags("SIPpTagA"), to_tags("SIPpTagB")), (20, 20));
    dialogs_drain(tg);
    run.tg.stop(Duration::from_secs(10));
}

#[test]
fn a_notify_after_an_out_of_dialog_refer_reaches_the_pbx() {
    let run = scenario_run(
        Net::new(88),
        "dialogs_refer",
        ("uas_refer.xml", "uac_refer.xml"),
        10,
    );
    let (pbx, tg) = (&run.pbx, &run.tg);
    let notifies = pbx
        .messages()
        .iter()
        .filter(|m| !m.sent && m.is_request("NOTIFY"))
        .count();
    assert_eq!(notifies, 10, "every NOTIFY forwarded to the PBX");
    let m = tg.metrics();
    assert_eq!(
        common::value(&m, "trunkgate_trunk_sessions", &[("trunk", "carrier-a")]),
        0.0,
        "a subscription is no session"
    );
    run.tg.stop(Duration::from_secs(10));
}

#[test]
fn carrier_a_gets_its_numbers_and_headers_as_its_rules_say() {
    const CALLS: usize = 100;
    let net = Net::new(89);
    let dir = scratch_dir("dialogs_header_rules");
    let mut carrier = SippPeer::spawn(
        &dir,
        "carrier_a",
        Scenario::Builtin("uas"),
        net.carrier_a_ip(),
        None,
        &[],
        Duration::from_secs(90),
    );
    let rules = "\n[trunk.outbound]\ncalled = [[\"00\", \"+\"], [\"0\", \"+44\"]]\n\
                 calling = [[\"0\", \"+44\"]]\nremove_headers = [\"X-Internal-*\"]\n\
                 add_headers = [\"X-Account: 1234\"]\nuser_agent = \"Trunkgate-Test\"\n";
    let base = std::fs::read_to_string(policy(&dir, net, "udp", "udp")).unwrap();
    // The rules belong to carrier-a: right after its [[trunk]] table's keys.
    let anchor = "\n[[trunk]]\nname = \"carrier-b\"";
    assert!(base.contains(anchor), "{base}");
    let text = base.replacen(anchor, &format!("{rules}{anchor}"), 1);
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    let tg = Trunkgate::start(&dir, Some(&path), net.admin());
    let mut pbx = peer(
        &dir,
        "pbx",
        "uac_headers.xml",
        net.pbx_ip(),
        Some(net.sip()),
        &["-s", "01632960000", "-r", "20", "-m", &CALLS.to_string()],
    );
    let result = pbx.wait();
    assert!(
        result.failed == 0 && result.successful == CALLS as u64,
        "{} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail()
    );
    let log = common::poll(Duration::from_secs(5), || {
        let log = carrier.messages();
        (log.iter()
            .filter(|m| !m.sent && m.is_request("BYE"))
            .count()
            >= CALLS)
            .then_some(log)
    })
    .unwrap_or_else(|| carrier.messages());
    let received: Vec<_> = log.iter().filter(|m| !m.sent).collect();
    let invites: Vec<_> = received.iter().filter(|m| m.is_request("INVITE")).collect();
    assert_eq!(invites.len(), CALLS);
    for m in &invites {
        let line = m.start_line();
        assert!(line.starts_with("INVITE sip:+441632960000@"), "{line}");
        let h = |n: &str| m.header(n).unwrap_or_default().to_owned();
        assert!(h("To").contains("sip:+441632960000@"), "To: {}", h("To"));
        assert!(
            h("From").contains("sip:+442079460000@"),
            "From: {}",
            h("From")
        );
        assert!(
            h("P-Asserted-Identity").contains("sip:+442079460000@"),
            "PAI: {}",
            h("P-Asserted-Identity")
        );
        assert_eq!(h("User-Agent"), "Trunkgate-Test");
        assert_eq!(h("X-Account"), "1234");
        assert!(m.header("X-Internal-Id").is_none() && m.header("X-Internal-Queue").is_none());
    }
    // In-dialog requests keep the same numbers (the carrier's dialog stays one).
    for m in received
        .iter()
        .filter(|m| m.is_request("BYE") || m.is_request("ACK"))
    {
        assert!(
            m.header("From")
                .unwrap_or_default()
                .contains("sip:+442079460000@")
        );
        assert!(m.header("X-Internal-Id").is_none());
    }
    let _ = carrier.is_running();
    dialogs_drain(&tg);
    tg.stop(Duration::from_secs(10));
}
