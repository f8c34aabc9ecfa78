//! SIP over TLS end to end (issue 12 item 1) with a real TLS peer: Debian's Kamailio with
//! its TLS module (`kamailio-tls-modules`, `tests/kamailio/tls_edge.cfg`) is carrier-a's
//! TLS edge in front of SIPp on UDP. Debian's SIPp is built without OpenSSL (`-t l1` is
//! refused), so Kamailio terminates TLS on the carrier's side:
//!
//!   PBX SIPp (UDP) → Trunkgate → TLS → Kamailio → UDP → carrier SIPp UAS
//!   carrier SIPp UAC (UDP) → Kamailio → TLS → Trunkgate → PBX SIPp UAS (UDP)
//!
//! The test CA and every certificate are made by the test (`rcgen`, `common/tls.rs`).
//!
//! 1. 500 calls out and 500 in, 0 failed, over reused TLS connections: Trunkgate's
//!    `trunkgate_tls_connections_total` stays at one or two (one per direction at most:
//!    Kamailio may reuse Trunkgate's connection through its `;alias`), and Kamailio's
//!    `tls.list` agrees.
//! 2. Kamailio serves a certificate for `wrong.test` while carrier-a's `tls.server_name` is
//!    `carrier-a.test`: the handshake is refused, every call fails over to carrier-b (a SIPp
//!    UAS on UDP), and Trunkgate's log names the verifier's error and the expected name.
//! 3. A reload with a new certificate in the same files, during calls that arrived over
//!    TLS: those calls (and the ones after) finish on the same connection (no new handshake
//!    from Kamailio), while a new connection is served the new certificate (its SHA-256
//!    checked with a rustls client) and `trunkgate_tls_certificate_info` follows; before
//!    that, a rotation with a key that does not match is refused and changes nothing.
//! 4. Kamailio requires client certificates: with carrier-a's `tls.certificate` every call
//!    reaches it; without, Kamailio refuses the connection (a TLS 1.3 alert after the
//!    handshake) and every call fails over to carrier-b at once, not after a timer.
//!
//! Net numbers 130–133 (see `common::Net`); carrier SIPps on `127.0.N.6` (UAS) and `.7`
//! (UAC), Kamailio on `.3` (UDP 5060, TLS 5061). Every child is stopped by its PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::peers::wait_answering;
use common::sipp::{Scenario, SippPeer};
use common::trunkgate::{Trunkgate, ctl};
use common::{Net, poll, scratch_dir, value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tls::{Issued, TestCa, kamailio_edge, kamailio_tls_connections, served_fingerprint};

const CALLS: u64 = 500;
const STOP_WITHIN: Duration = Duration::from_secs(10);

fn ip(net: Net, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net.n, host))
}

/// Trunkgate's policy: UDP and TLS listeners, the PBX on UDP, carrier-a over TLS (verified
/// as `carrier-a.test` against the test CA; with `client`, showing that client certificate),
/// carrier-b on UDP as its failover.
fn write_policy(
    dir: &Path,
    net: Net,
    cert: &Path,
    key: &Path,
    ca: &Path,
    client: Option<&Issued>,
) -> PathBuf {
    let n = net.n;
    let client = client.map_or_else(String::new, |c| {
        format!(
            ", certificate = \"{}\", private_key = \"{}\"",
            c.cert.display(),
            c.key.display()
        )
    });
    let text = format!(
        r#"[listen]
sip = ["udp:127.0.{n}.1:5060", "tls:127.0.{n}.1:5061"]

[sip]
shutdown_grace = "5s"

[admin]
listen = "127.0.{n}.1:9091"

[pbx]
address = "127.0.{n}.2:5060"
transport = "udp"
allow = ["127.0.{n}.2/32"]

[[trunk]]
name = "carrier-a"
address = "127.0.{n}.3:5061"
transport = "tls"
allow = ["127.0.{n}.3/32"]
max_sessions = 100000
max_cps = 100000
tls = {{ server_name = "carrier-a.test"{client} }}

[[trunk]]
name = "carrier-b"
address = "127.0.{n}.4:5060"
allow = ["127.0.{n}.4/32"]
max_sessions = 100000
max_cps = 100000

[[route]]
name = "default"
match = {{ to_prefix = [""] }}
trunks = ["carrier-a", "carrier-b"]
strategy = "priority"

[tls]
certificate = "{cert}"
private_key = "{key}"
ca_file = "{ca}"
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn metric(tg: &Trunkgate, name: &str) -> f64 {
    value(&tg.metrics(), name, &[])
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A SIPp UAS on `ip:5060`, answering when this returns.
fn uas(dir: &Path, net: Net, name: &str, ip: IpAddr) -> SippPeer {
    let mut peer = SippPeer::spawn(
        dir,
        name,
        Scenario::Builtin("uas"),
        ip,
        None,
        &[],
        Duration::from_secs(120),
    );
    wait_answering(&mut peer, net.unknown_ip(), SocketAddr::new(ip, 5060));
    peer
}

/// `calls` calls from a SIPp UAC on `from` to `to` at `rate`/s (each `hold_ms` long).
fn uac(
    dir: &Path,
    name: &str,
    from: IpAddr,
    to: SocketAddr,
    calls: u64,
    rate: u32,
    hold_ms: u32,
) -> SippPeer {
    SippPeer::spawn(
        dir,
        name,
        Scenario::Builtin("uac"),
        from,
        Some(to),
        &args(&[
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-d",
            &hold_ms.to_string(),
            "-l",
            "400",
        ]),
        Duration::from_secs(60),
    )
}

/// Copy `from`'s certificate and key over `cert`/`key` (write then rename: a reload never
/// reads half a file).
fn install_cert(from: &Issued, cert: &Path, key: &Path) {
    for (src, dst) in [(&from.cert, cert), (&from.key, key)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

#[test]
fn five_hundred_calls_each_way_over_reused_tls_connections() {
    let net = Net::new(130);
    let dir = scratch_dir("tls_calls");
    let ca = TestCa::new(&dir);
    let tg_cert = ca.issue(&dir, "trunkgate", &["trunkgate.test", "127.0.130.1"]);
    let kam_cert = ca.issue(&dir, "carrier-a", &["carrier-a.test"]);
    let carrier_uas = ip(net, 6);
    let mut uas_out = uas(&dir, net, "carrier-uas", carrier_uas);
    let kam = kamailio_edge(
        &dir,
        net.carrier_a_ip(),
        &kam_cert,
        &ca,
        SocketAddr::new(carrier_uas, 5060),
        net.trunkgate_ip(),
        false,
    );
    let policy = write_policy(&dir, net, &tg_cert.cert, &tg_cert.key, &ca.ca_file, None);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());

    // Outbound: the PBX (UDP) → Trunkgate → TLS → Kamailio → carrier's UAS.
    let mut pbx = uac(&dir, "pbx-uac", net.pbx_ip(), net.sip(), CALLS, 100, 0);
    let out = pbx.wait();
    assert!(
        out.successful == CALLS && out.failed == 0,
        "outbound over TLS: {} successful, {} failed\n{}\n{}\n{}",
        out.successful,
        out.failed,
        pbx.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    let after_out = metric(&tg, "trunkgate_tls_connections_total");
    assert_eq!(
        after_out,
        1.0,
        "500 outbound calls over one TLS connection\n{}",
        tg.metrics()
    );
    assert_eq!(
        metric(&tg, "trunkgate_tls_handshake_failures_connect_total"),
        0.0
    );
    let _ = uas_out.is_running();

    // Inbound: the carrier's UAC → Kamailio → TLS → Trunkgate → the PBX (UDP).
    drop(pbx);
    let mut pbx_uas = uas(&dir, net, "pbx-uas", net.pbx_ip());
    let mut caller = uac(
        &dir,
        "carrier-uac",
        ip(net, 7),
        SocketAddr::new(net.carrier_a_ip(), 5060),
        CALLS,
        100,
        0,
    );
    let inbound = caller.wait();
    assert!(
        inbound.successful == CALLS && inbound.failed == 0,
        "inbound over TLS: {} successful, {} failed\n{}\n{}\n{}",
        inbound.successful,
        inbound.failed,
        caller.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    let total = metric(&tg, "trunkgate_tls_connections_total");
    assert!(
        (1.0..=2.0).contains(&total),
        "1,000 calls over at most one TLS connection per direction, got {total}\n{}",
        tg.metrics()
    );
    assert_eq!(
        metric(&tg, "trunkgate_tls_handshake_failures_accept_total"),
        0.0
    );
    let kam_conns = kamailio_tls_connections(&kam);
    assert!(
        (1..=2).contains(&kam_conns),
        "Kamailio's tls.list: {kam_conns} connections\n{}",
        kam.rpc(&["tls.list"]).unwrap_or_default()
    );
    eprintln!(
        "{} calls out and {} in over {total} TLS session(s) at Trunkgate, {kam_conns} at Kamailio",
        out.successful, inbound.successful
    );
    let _ = pbx_uas.is_running();
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
}

#[test]
fn a_certificate_for_another_name_is_refused_and_calls_fail_over() {
    let net = Net::new(131);
    let dir = scratch_dir("tls_mismatch");
    let ca = TestCa::new(&dir);
    let tg_cert = ca.issue(&dir, "trunkgate", &["127.0.131.1"]);
    // Signed by the trusted CA, but for another name than carrier-a's server_name.
    let wrong = ca.issue(&dir, "wrong", &["wrong.test"]);
    let carrier_b = uas(&dir, net, "carrier-b", net.carrier_b_ip());
    let kam = kamailio_edge(
        &dir,
        net.carrier_a_ip(),
        &wrong,
        &ca,
        SocketAddr::new(ip(net, 6), 5060),
        net.trunkgate_ip(),
        false,
    );
    let policy = write_policy(&dir, net, &tg_cert.cert, &tg_cert.key, &ca.ca_file, None);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let mut pbx = uac(&dir, "pbx-uac", net.pbx_ip(), net.sip(), 20, 20, 0);
    let result = pbx.wait();
    assert!(
        result.successful == 20 && result.failed == 0,
        "calls failed over to carrier-b: {} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail()
    );
    let invites_at_b = carrier_b
        .messages()
        .iter()
        .filter(|m| !m.sent && m.is_request("INVITE"))
        .count();
    assert_eq!(invites_at_b, 20, "every call reached carrier-b");
    assert!(metric(&tg, "trunkgate_tls_handshake_failures_connect_total") >= 1.0);
    assert_eq!(
        metric(&tg, "trunkgate_tls_connections_total"),
        0.0,
        "no TLS session with the impostor"
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake failed"))
        .unwrap_or_else(|| panic!("no handshake failure logged:\n{log}"));
    assert!(line.contains("expected=carrier-a.test"), "{line}");
    assert!(line.contains("carrier-a"), "{line}");
    assert!(
        line.contains("not valid for name") && line.contains("wrong.test"),
        "the verifier's error, with the name presented: {line}"
    );
    let _ = kam.log_tail();
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
}

#[test]
fn a_reload_with_a_new_certificate_keeps_connections_and_serves_it_to_new_ones() {
    let net = Net::new(132);
    let dir = scratch_dir("tls_rotation");
    let ca = TestCa::new(&dir);
    let first = ca.issue(&dir, "sbc-2026", &["trunkgate.test", "127.0.132.1"]);
    let second = ca.issue(&dir, "sbc-2027", &["trunkgate.test", "127.0.132.1"]);
    assert_ne!(first.fingerprint, second.fingerprint);
    let (cert, key) = (dir.join("sbc.pem"), dir.join("sbc.key"));
    install_cert(&first, &cert, &key);
    let kam_cert = ca.issue(&dir, "carrier-a", &["carrier-a.test"]);
    let kam = kamailio_edge(
        &dir,
        net.carrier_a_ip(),
        &kam_cert,
        &ca,
        SocketAddr::new(ip(net, 6), 5060),
        net.trunkgate_ip(),
        false,
    );
    let policy = write_policy(&dir, net, &cert, &key, &ca.ca_file, None);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let fp_label = |fp: &str| {
        value(
            &tg.metrics(),
            "trunkgate_tls_certificate_info",
            &[("sha256", fp)],
        )
    };
    assert_eq!(fp_label(&first.fingerprint), 1.0, "{}", tg.metrics());
    let mut pbx_uas = uas(&dir, net, "pbx-uas", net.pbx_ip());
    let tls_listener = SocketAddr::new(net.trunkgate_ip(), 5061);
    let served = |name: &str| {
        served_fingerprint(net.carrier_a_ip(), tls_listener, &ca.ca_file, name)
            .unwrap_or_else(|e| panic!("TLS to {tls_listener}: {e}\n{}", tg.log_tail()))
    };
    assert_eq!(served("trunkgate.test"), first.fingerprint);
    // 40 calls of 3 s at 10/s through Kamailio, which connects to Trunkgate over TLS.
    let mut caller = uac(
        &dir,
        "carrier-uac",
        ip(net, 7),
        SocketAddr::new(net.carrier_a_ip(), 5060),
        40,
        10,
        3000,
    );
    let up = poll(Duration::from_secs(10), || {
        (common::sum(&tg.metrics(), "trunkgate_dialogs_active") >= 10.0).then_some(())
    });
    assert!(
        up.is_some(),
        "calls did not come up\n{}\n{}",
        tg.log_tail(),
        kam.log_tail()
    );
    let sessions_before = metric(&tg, "trunkgate_tls_connections_total");
    assert_eq!(sessions_before, 2.0, "our probe and Kamailio's connection");
    // A botched rotation first: the new certificate with the old key. The reload refuses
    // it (naming the files), and the running certificate stays.
    let botched = Issued {
        key: first.key.clone(),
        ..second.clone()
    };
    install_cert(&botched, &cert, &key);
    let out = ctl(&policy, &["reload"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("refused") && said.contains("does not go with"),
        "ctl reload with a mismatched key: {said}"
    );
    assert_eq!(
        served("trunkgate.test"),
        first.fingerprint,
        "the running certificate stays"
    );
    let sessions_before = sessions_before + 1.0;
    // Rotate: new files in place, then reload (what docs/operations.md tells operators).
    install_cert(&second, &cert, &key);
    let out = ctl(&policy, &["reload"]);
    assert!(
        out.status.success(),
        "ctl reload: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        served("127.0.132.1"),
        second.fingerprint,
        "a new connection gets the new certificate"
    );
    assert_eq!(fp_label(&second.fingerprint), 1.0);
    assert_eq!(
        fp_label(&first.fingerprint),
        0.0,
        "the old fingerprint's series is gone"
    );
    let result = caller.wait();
    assert!(
        result.successful == 40 && result.failed == 0,
        "calls across the reload: {} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        caller.report(),
        tg.log_tail()
    );
    assert_eq!(
        metric(&tg, "trunkgate_tls_connections_total"),
        sessions_before + 1.0,
        "Kamailio's connection carried every call across the reload (only our second probe is new)"
    );
    assert_eq!(
        metric(&tg, "trunkgate_tls_handshake_failures_accept_total"),
        0.0
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(
        log.contains(&second.fingerprint),
        "the new fingerprint is logged"
    );
    let key_text = std::fs::read_to_string(&second.key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!log.contains(key_body), "key material in the log");
    assert!(!tg.metrics().contains(key_body), "key material in /metrics");
    let _ = pbx_uas.is_running();
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
}

#[test]
fn a_carrier_that_requires_client_certificates_gets_ours() {
    let net = Net::new(133);
    let dir = scratch_dir("tls_mutual");
    let ca = TestCa::new(&dir);
    let tg_cert = ca.issue(&dir, "trunkgate", &["127.0.133.1"]);
    let client = ca.issue(&dir, "trunkgate-client", &["trunkgate.test"]);
    let kam_cert = ca.issue(&dir, "carrier-a", &["carrier-a.test"]);
    let carrier_uas = ip(net, 6);
    let uas_a = uas(&dir, net, "carrier-uas", carrier_uas);
    let carrier_b = uas(&dir, net, "carrier-b", net.carrier_b_ip());
    let kam = kamailio_edge(
        &dir,
        net.carrier_a_ip(),
        &kam_cert,
        &ca,
        SocketAddr::new(carrier_uas, 5060),
        net.trunkgate_ip(),
        true,
    );
    let invites = |peer: &SippPeer| {
        peer.messages()
            .iter()
            .filter(|m| !m.sent && m.is_request("INVITE"))
            .count()
    };
    // With its client certificate: every call goes to carrier-a.
    let policy = write_policy(
        &dir,
        net,
        &tg_cert.cert,
        &tg_cert.key,
        &ca.ca_file,
        Some(&client),
    );
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let mut pbx = uac(&dir, "pbx-uac", net.pbx_ip(), net.sip(), 20, 20, 0);
    let result = pbx.wait();
    assert!(
        result.successful == 20 && result.failed == 0,
        "mutual TLS: {} successful, {} failed\n{}\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail(),
        kam.log_tail()
    );
    assert_eq!(invites(&uas_a), 20, "every call reached carrier-a");
    assert_eq!(invites(&carrier_b), 0);
    assert_eq!(metric(&tg, "trunkgate_tls_connections_total"), 1.0);
    tg.stop(STOP_WITHIN);
    // Without it: carrier-a refuses the connection; every call fails over to carrier-b,
    // each within a second (the refusal ends the branch; no try_timeout, no Timer B).
    let policy = write_policy(&dir, net, &tg_cert.cert, &tg_cert.key, &ca.ca_file, None);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let mut pbx = uac(&dir, "pbx-uac-2", net.pbx_ip(), net.sip(), 10, 10, 0);
    let result = pbx.wait();
    assert!(
        result.successful == 10 && result.failed == 0,
        "without a client certificate: {} successful, {} failed\n{}\n{}",
        result.successful,
        result.failed,
        pbx.report(),
        tg.log_tail()
    );
    assert!(
        result.elapsed < Duration::from_secs(5),
        "10 calls at 10/s took {:?}: failover waited for a timer",
        result.elapsed
    );
    assert_eq!(
        invites(&carrier_b),
        10,
        "every call failed over to carrier-b"
    );
    assert_eq!(invites(&uas_a), 20, "none reached carrier-a's callee");
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(
        log.contains("TLS handshake failed") || log.contains("CertificateRequired"),
        "the refusal is logged with the peer's alert:\n{}",
        tg.log_tail()
    );
    tg.assert_dialogs_drain(Duration::from_secs(10));
    tg.stop(STOP_WITHIN);
}
