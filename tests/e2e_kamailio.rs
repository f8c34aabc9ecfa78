//! End-to-end tests against Kamailio (issue 19): the real `trunkgate` binary registers
//! carrier-a with a Kamailio registrar that demands digest auth (`tests/kamailio/
//! registrar.cfg`: the `auth` module with a fixed test password in a variable, `usrloc` in
//! memory, read with `kamcmd ul.dump`).
//!
//! 1. Right password, `expires = "10s"`: registered, refreshed at least twice,
//!    `trunkgate_registration_up{trunk="carrier-a"} 1`, the Contact in Kamailio's location
//!    table; calls the registrar routes to that Contact (a SIPp caller on `.6` → Kamailio →
//!    Trunkgate) reach the PBX (a SIPp UAS) as any inbound call; the Contact is gone from
//!    the table after Trunkgate's shutdown (Expires: 0).
//! 2. Wrong password: `registration_up 0`, the failure counted and logged with Kamailio's
//!    code, at most a handful of attempts in a minute (exponential backoff).
//!
//! 3. carrier-a is a Kamailio proxy (`tests/kamailio/proxy_auth.cfg`) that challenges every
//!    INVITE, and every BYE from Trunkgate, with 407 and forwards to a SIPp UAS: 200 calls
//!    from the PBX's SIPp at 10 calls/s complete, the PBX never receives a 401/407 (its
//!    message trace), and the UAS sees the INVITE at CSeq 2 and the PBX's BYE at CSeq 4.
//!
//! 4. The same carrier, but the callee hangs up (`tests/kamailio/uas_bye.xml`, the PBX
//!    `uac_wait_bye.xml`): its BYE, in the carrier's own CSeq space, reaches the PBX
//!    unchanged and its 200 goes back, after the INVITE's CSeq bump.
//!
//! Neither the log nor `/metrics` ever contains a password (every test greps for it).
//! Net numbers 90–93 (see `common::Net`); the UAS behind Kamailio is `127.0.N.6`.
//! Kamailio is started as a child, stopped by PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::kamailio::Kamailio;
use common::sipp::{LoggedMessage, Scenario, SippPeer};
use common::trunkgate::{Trunkgate, ctl};
use common::{Net, poll, scratch_dir, test_policy, value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "kam-Test-pw-7d1f";
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The test policy with carrier-a registering (`password_file` in `dir`).
fn policy_with_register(net: Net, dir: &Path, password: &str) -> std::path::PathBuf {
    let pw = dir.join("carrier-a.pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let text = test_policy(net);
    let anchor = format!("address = \"{}:5060\"", net.carrier_a_ip());
    assert!(text.contains(&anchor));
    let register = format!(
        "{anchor}\nregister = {{ user = \"acct-a\", password_file = \"{}\", expires = \"10s\", contact_user = \"tg-a\" }}",
        pw.display()
    );
    let text = text.replacen(&anchor, &register, 1);
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn registrar(dir: &Path, net: Net) -> Kamailio {
    let listen = format!("{}:5060", net.carrier_a_ip());
    Kamailio::start(
        dir,
        "registrar.cfg",
        &[("LISTEN", &listen), ("PASSWORD", PASSWORD)],
    )
}

fn metric(tg: &Trunkgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&tg.metrics(), name, labels)
}

fn assert_no_password(tg: &Trunkgate, log: &Path, password: &str) {
    let metrics = tg.metrics();
    assert!(!metrics.contains(password), "password in /metrics");
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!log_text.contains(password), "password in the log");
}

#[test]
fn registers_with_kamailio_refreshes_and_deregisters_at_shutdown() {
    let net = Net::new(80);
    let dir = scratch_dir("kamailio_register");
    let kam = registrar(&dir, net);
    let policy = policy_with_register(net, &dir, PASSWORD);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let up = [("trunk", "carrier-a")];
    let registered = [("trunk", "carrier-a"), ("result", "registered")];
    let first = poll(Duration::from_secs(10), || {
        (metric(&tg, "trunkgate_registration_up", &up) == 1.0).then_some(())
    });
    assert!(
        first.is_some(),
        "not registered in 10 s\ntrunkgate:\n{}\nkamailio:\n{}",
        tg.log_tail(),
        kam.log_tail()
    );
    let location = kam.location();
    assert!(
        location.contains("acct-a") && location.contains("sip:tg-a@"),
        "{location}"
    );
    // Two refreshes of a 10 s registration: at 5–8 s each.
    let started = Instant::now();
    let refreshed = poll(Duration::from_secs(25), || {
        (metric(&tg, "trunkgate_registrations_total", &registered) >= 3.0).then_some(())
    });
    assert!(
        refreshed.is_some(),
        "fewer than two refreshes in 25 s: {}\n{}",
        tg.metrics(),
        tg.log_tail()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "refreshes too early"
    );
    assert_eq!(metric(&tg, "trunkgate_registration_up", &up), 1.0);
    assert!(kam.location().contains("sip:tg-a@"));
    // Inbound: the provider sends calls for acct-a to the registered Contact.
    let pbx_addr = SocketAddr::new(net.pbx_ip(), 5060);
    let mut pbx = SippPeer::spawn(
        &dir,
        "pbx",
        Scenario::Builtin("uas"),
        net.pbx_ip(),
        None,
        &[],
        Duration::from_secs(60),
    );
    wait_answering(net.unknown_ip(), pbx_addr);
    let caller_ip = IpAddr::V4(Ipv4Addr::new(127, 0, net.n, 6));
    let args: Vec<String> = ["-s", "acct-a", "-r", "5", "-m", "10"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut caller = SippPeer::spawn(
        &dir,
        "caller",
        Scenario::Builtin("uac"),
        caller_ip,
        Some(SocketAddr::new(net.carrier_a_ip(), 5060)),
        &args,
        Duration::from_secs(30),
    );
    let result = caller.wait();
    assert!(
        result.failed == 0 && result.successful == 10,
        "inbound via the registered Contact: {} successful, {} failed\n{}\n{}\n{}",
        result.successful,
        result.failed,
        caller.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    assert_eq!(
        pbx.messages()
            .iter()
            .filter(|m| !m.sent && m.is_request("INVITE"))
            .filter_map(|m| m.header("Call-ID").map(str::to_owned))
            .collect::<HashSet<_>>()
            .len(),
        10,
        "the PBX answered every inbound call"
    );
    let _ = pbx.is_running();
    assert_no_password(&tg, &dir.join("trunkgate.log"), PASSWORD);
    tg.stop(STOP_WITHIN);
    // Deregistered: the location table no longer holds our Contact.
    let empty = poll(Duration::from_secs(5), || {
        let l = kam.location();
        (!l.contains("sip:tg-a@")).then_some(l)
    });
    assert!(
        empty.is_some(),
        "Contact left after shutdown:\n{}",
        kam.location()
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(log.contains("registration up"), "{log}");
    assert!(!log.contains(PASSWORD));
}

#[test]
fn a_wrong_password_stays_down_counted_logged_and_backs_off() {
    let net = Net::new(81);
    let dir = scratch_dir("kamailio_register_wrong");
    let kam = registrar(&dir, net);
    let wrong = "not-the-kam-password";
    let policy = policy_with_register(net, &dir, wrong);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let failed = [("trunk", "carrier-a"), ("result", "auth_failed")];
    let counted = poll(Duration::from_secs(10), || {
        (metric(&tg, "trunkgate_registrations_total", &failed) >= 1.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "no auth failure counted\n{}\n{}",
        tg.log_tail(),
        kam.log_tail()
    );
    let start = Instant::now();
    // Watch 35 s: with backoff 10 s, 20 s (+ up to 25 %) at most two more attempts.
    while start.elapsed() < Duration::from_secs(35) {
        assert_eq!(
            metric(&tg, "trunkgate_registration_up", &[("trunk", "carrier-a")]),
            0.0
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let attempts = metric(&tg, "trunkgate_registrations_total", &failed);
    assert!(
        (2.0..=3.0).contains(&attempts),
        "{attempts} failed attempts in ~40 s"
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    let down: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("registration down"))
        .collect();
    assert_eq!(down.len(), 1, "one line per state change:\n{log}");
    assert!(down[0].contains("code=401"), "{}", down[0]);
    assert!(kam.location().find("sip:tg-a@").is_none());
    assert_no_password(&tg, &dir.join("trunkgate.log"), wrong);
    tg.stop(STOP_WITHIN);
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(!log.contains(wrong));
}

/// The test policy with carrier-a's `auth` (`password_file` in `dir`).
fn policy_with_auth(net: Net, dir: &Path, password: &str) -> std::path::PathBuf {
    let pw = dir.join("carrier-a.pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let text = test_policy(net);
    let anchor = format!("address = \"{}:5060\"", net.carrier_a_ip());
    let auth = format!(
        "{anchor}\nauth = {{ user = \"acct-a\", password_file = \"{}\", realm = \"carrier-a\" }}",
        pw.display()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text.replacen(&anchor, &auth, 1)).unwrap();
    Trunkgate::check(&path);
    path
}

/// OPTIONS to `to` from `from` until it answers (SIPp's `-aa`), within 10 s.
fn wait_answering(from: IpAddr, to: SocketAddr) {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        assert!(
            Instant::now() < deadline,
            "{to} did not answer OPTIONS in 10 s"
        );
        let msg = format!(
            "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{i}\r\n\
             From: <sip:ready@{local}>;tag=r{i}\r\nTo: <sip:{to}>\r\n\
             Call-ID: ready-{i}-{}@{}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            std::process::id(),
            local.ip()
        );
        let _ = socket.send_to(msg.as_bytes(), to);
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200") {
                return;
            }
        }
    }
}

fn cseqs(log: &[LoggedMessage], method: &str) -> HashSet<String> {
    log.iter()
        .filter(|m| !m.sent && m.is_request(method))
        .filter_map(|m| m.header("CSeq").map(str::to_owned))
        .collect()
}

/// A SIPp UAS on `127.0.N.6` behind a Kamailio carrier-a that challenges INVITEs and
/// Trunkgate's BYEs, and Trunkgate with carrier-a's `auth`.
fn challenging_carrier(
    net: Net,
    dir: &Path,
    uas_scenario: Scenario<'_>,
) -> (SippPeer, Kamailio, Trunkgate) {
    let uas_ip = IpAddr::V4(Ipv4Addr::new(127, 0, net.n, 6));
    let uas_addr = SocketAddr::new(uas_ip, 5060);
    let uas = SippPeer::spawn(
        dir,
        "uas",
        uas_scenario,
        uas_ip,
        None,
        &[],
        Duration::from_secs(120),
    );
    wait_answering(net.unknown_ip(), uas_addr);
    let listen = format!("{}:5060", net.carrier_a_ip());
    let tg_ip = net.trunkgate_ip().to_string();
    let uas_text = uas_addr.to_string();
    let kam = Kamailio::start(
        dir,
        "proxy_auth.cfg",
        &[
            ("LISTEN", &listen),
            ("PASSWORD", PASSWORD),
            ("UAS", &uas_text),
            ("TRUNKGATE", &tg_ip),
        ],
    );
    let policy = policy_with_auth(net, dir, PASSWORD);
    let tg = Trunkgate::start(dir, Some(&policy), net.admin());
    (uas, kam, tg)
}

fn pbx_challenges(log: &[LoggedMessage]) -> usize {
    log.iter()
        .filter(|m| !m.sent)
        .map(LoggedMessage::start_line)
        .filter(|l| l.starts_with("SIP/2.0 401") || l.starts_with("SIP/2.0 407"))
        .count()
}

#[test]
fn invites_and_byes_challenged_by_kamailio_are_answered_for_the_pbx() {
    const CALLS: u32 = 200;
    let net = Net::new(82);
    let dir = scratch_dir("kamailio_invite_auth");
    let (uas, kam, tg) = challenging_carrier(net, &dir, Scenario::Builtin("uas"));
    let args: Vec<String> = ["-s", "1000", "-r", "10", "-m", &CALLS.to_string()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut pbx = SippPeer::spawn(
        &dir,
        "pbx",
        Scenario::Builtin("uac"),
        net.pbx_ip(),
        Some(net.sip()),
        &args,
        Duration::from_secs(90),
    );
    let result = pbx.wait();
    let pbx_log = pbx.messages();
    assert_eq!(pbx_challenges(&pbx_log), 0, "the PBX saw challenges");
    assert!(
        result.failed == 0 && result.successful == u64::from(CALLS),
        "{} successful, {} failed\n{}\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    // The PBX's own CSeqs: INVITE 1, BYE 2; behind Kamailio: INVITE 2, BYE 4 (each
    // challenged once).
    assert_eq!(
        cseqs(&pbx_log, "INVITE"),
        HashSet::new(),
        "the PBX receives no INVITE"
    );
    let pbx_byes_ok = pbx_log
        .iter()
        .filter(|m| !m.sent && m.is_response(200, "BYE"))
        .filter(|m| m.header("CSeq") == Some("2 BYE"))
        .count();
    assert_eq!(
        pbx_byes_ok, CALLS as usize,
        "200 to BYE with the PBX's CSeq"
    );
    let at_uas = poll(Duration::from_secs(5), || {
        let log = uas.messages();
        let byes = log
            .iter()
            .filter(|m| !m.sent && m.is_request("BYE"))
            .count();
        (byes >= CALLS as usize).then_some(log)
    })
    .unwrap_or_else(|| uas.messages());
    assert_eq!(
        cseqs(&at_uas, "INVITE"),
        HashSet::from(["2 INVITE".to_owned()])
    );
    assert_eq!(cseqs(&at_uas, "ACK"), HashSet::from(["2 ACK".to_owned()]));
    assert_eq!(cseqs(&at_uas, "BYE"), HashSet::from(["4 BYE".to_owned()]));
    let metrics = tg.metrics();
    let answered = value(
        &metrics,
        "trunkgate_digest_challenges_total",
        &[("trunk", "carrier-a"), ("result", "answered")],
    );
    assert_eq!(
        answered,
        f64::from(2 * CALLS),
        "one INVITE and one BYE challenge per call"
    );
    // The operator's views and a reload that changes the credentials (another password
    // file, another realm): no password in any output, diff, log line or metric.
    let policy = dir.join("policy.toml");
    let second = "kam-Second-pw-44c2";
    let pw2 = dir.join("carrier-a-2.pw");
    std::fs::write(&pw2, format!("{second}\n")).unwrap();
    let text = std::fs::read_to_string(&policy).unwrap();
    let changed = text
        .replace(
            &dir.join("carrier-a.pw").display().to_string(),
            &pw2.display().to_string(),
        )
        .replace("realm = \"carrier-a\"", "realm = \"carrier-a-2\"");
    assert_ne!(changed, text);
    std::fs::write(&policy, changed).unwrap();
    let mut seen = String::new();
    for args in [
        &["status"][..],
        &["trunks"],
        &["trunks", "--json"],
        &["reload", "--dry-run"],
        &["reload", "--diff"],
        &["status", "--json"],
    ] {
        let out = ctl(&policy, args);
        let both = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "ctl {args:?}: {both}");
        seen.push_str(&both);
    }
    assert!(
        seen.contains("carrier-a-2"),
        "the diff names the change: {seen}"
    );
    for pw in [PASSWORD, second] {
        assert!(!seen.contains(pw), "a password in ctl output:\n{seen}");
        assert_no_password(&tg, &dir.join("trunkgate.log"), pw);
    }
    tg.stop(STOP_WITHIN);
}

#[test]
fn a_bye_from_the_carrier_passes_after_the_cseq_bump() {
    const CALLS: u32 = 50;
    let net = Net::new(83);
    let dir = scratch_dir("kamailio_carrier_bye");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kamailio");
    let uas_xml = scenarios.join("uas_bye.xml");
    let pbx_xml = scenarios.join("uac_wait_bye.xml");
    let (mut uas, kam, tg) = challenging_carrier(net, &dir, Scenario::File(&uas_xml));
    let args: Vec<String> = ["-s", "1000", "-r", "10", "-m", &CALLS.to_string()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut pbx = SippPeer::spawn(
        &dir,
        "pbx",
        Scenario::File(&pbx_xml),
        net.pbx_ip(),
        Some(net.sip()),
        &args,
        Duration::from_secs(60),
    );
    let result = pbx.wait();
    let pbx_log = pbx.messages();
    assert_eq!(pbx_challenges(&pbx_log), 0, "the PBX saw challenges");
    assert!(
        result.failed == 0 && result.successful == u64::from(CALLS),
        "{} successful, {} failed\n{}\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    assert_eq!(cseqs(&pbx_log, "BYE"), HashSet::from(["1 BYE".to_owned()]));
    // Every carrier BYE got its 200 back.
    let answered = poll(Duration::from_secs(5), || {
        let log = uas.messages();
        let oks = log
            .iter()
            .filter(|m| !m.sent && m.is_response(200, "BYE"))
            .count();
        (oks >= CALLS as usize).then_some(oks)
    });
    assert!(
        answered.is_some(),
        "the UAS's BYEs were not all answered\n{}",
        uas.report()
    );
    assert_eq!(
        cseqs(&uas.messages(), "INVITE"),
        HashSet::from(["2 INVITE".to_owned()])
    );
    let _ = uas.is_running();
    assert_no_password(&tg, &dir.join("trunkgate.log"), PASSWORD);
    tg.stop(STOP_WITHIN);
}
