//! Tests of `[tls]` and the peers' `tls = { … }`: positions of every refusal, files that are
//! missing or not PEM, the listener rules, and that no key material reaches a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::tests::{BASE, assert_refused};
use crate::{PeerTransport, Policy};
use std::path::PathBuf;

/// Fake PEM: the checks read the PEM structure; whether the DER inside is a certificate
/// (and the key its key) is the binary's check, where the TLS configuration is built.
const CERT: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydA==\n-----END CERTIFICATE-----\n";
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1NQVRFUklBTA==\n-----END PRIVATE KEY-----\n";

/// A directory with `cert.pem`, `key.pem`, `ca.pem`, `garbage.pem` (not PEM) and
/// `cert-as-key.pem` (a certificate where a key should be).
fn files(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tg-config-tls-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), CERT).unwrap();
    std::fs::write(dir.join("key.pem"), KEY).unwrap();
    std::fs::write(dir.join("ca.pem"), format!("{CERT}{CERT}")).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a pem file at all\n").unwrap();
    std::fs::write(
        dir.join("broken.pem"),
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1NQVRFUklBTA==\n",
    )
    .unwrap();
    std::fs::write(dir.join("cert-as-key.pem"), CERT).unwrap();
    dir
}

/// BASE with a tls: listener and `[tls]` naming the files in `dir`, carrier-a over TLS.
fn tls_policy(dir: &std::path::Path) -> String {
    let d = dir.display();
    BASE.replace(
        "\"udp:127.0.0.1:5060\"",
        "\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"",
    )
    .replace(
        "address = \"127.0.0.3:5060\"",
        "address = \"127.0.0.3:5061\"\ntransport = \"tls\"",
    ) + &format!(
        "\n[tls]\ncertificate = \"{d}/cert.pem\"\nprivate_key = \"{d}/key.pem\"\nca_file = \"{d}/ca.pem\"\n"
    )
}

#[test]
fn a_complete_tls_policy_loads_with_its_defaults() {
    let dir = files("complete");
    let policy = Policy::from_toml(&tls_policy(&dir), "t.toml").unwrap();
    assert_eq!(policy.tls.certificate, Some(dir.join("cert.pem")));
    assert_eq!(policy.tls.private_key, Some(dir.join("key.pem")));
    assert_eq!(policy.tls.ca_file, Some(dir.join("ca.pem")));
    assert!(!policy.tls.require_client_certificate);
    assert_eq!(
        policy.tls.handshake_timeout,
        std::time::Duration::from_secs(5)
    );
    let trunk = &policy.trunks[0];
    assert_eq!(trunk.transport, PeerTransport::Tls);
    assert_eq!(trunk.tls, None, "no tls table: every default");
    // A policy without TLS has the empty [tls].
    let plain = Policy::from_toml(BASE, "t.toml").unwrap();
    assert_eq!(plain.tls.certificate, None);
}

#[test]
fn a_peer_tls_table_with_mutual_tls_and_a_server_name() {
    let dir = files("peer");
    let d = dir.display();
    let src = tls_policy(&dir).replace(
        "transport = \"tls\"",
        &format!(
            "transport = \"tls\"\ntls = {{ server_name = \"sip.carrier-a.example\", ca_file = \"{d}/ca.pem\", certificate = \"{d}/cert.pem\", private_key = \"{d}/key.pem\" }}"
        ),
    );
    let policy = Policy::from_toml(&src, "t.toml").unwrap();
    let tls = policy.trunks[0].tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("sip.carrier-a.example"));
    assert_eq!(tls.certificate, Some(dir.join("cert.pem")));
    assert!(!tls.insecure_skip_verify);
}

#[test]
fn a_tls_trunk_needs_a_tls_listener() {
    let dir = files("nolistener");
    let src = tls_policy(&dir).replace(", \"tls:127.0.0.1:5061\"", "");
    let e = assert_refused(
        &src,
        11,
        13,
        "trunk \"carrier-a\" transport is \"tls\" but listen.sip has no tls: listener",
    );
    assert!(e.to_string().contains("tls:0.0.0.0:5061"), "{e}");
    let src = BASE.replace(
        "allow = [\"127.0.0.2/32\"]",
        "allow = [\"127.0.0.2/32\"]\ntransport = \"tls\"",
    );
    assert_refused(
        &src,
        7,
        13,
        "pbx transport is \"tls\" but listen.sip has no tls: listener",
    );
}

#[test]
fn missing_unreadable_and_non_pem_files_are_refused_at_their_value() {
    let dir = files("files");
    let d = dir.display().to_string();
    let src = tls_policy(&dir).replace("/cert.pem\"", "/missing.pem\"");
    let e = assert_refused(&src, 14, 15, "tls.certificate");
    let text = e.to_string();
    assert!(
        text.contains("missing.pem") && text.contains("cannot be read"),
        "{text}"
    );
    let src = tls_policy(&dir).replace(&format!("{d}/cert.pem"), &format!("{d}/garbage.pem"));
    assert_refused(&src, 14, 15, "holds no -----BEGIN CERTIFICATE----- section");
    let src = tls_policy(&dir).replace(&format!("{d}/key.pem"), &format!("{d}/cert-as-key.pem"));
    assert_refused(&src, 15, 15, "holds no private key");
    let src = tls_policy(&dir).replace(&format!("{d}/key.pem"), &format!("{d}/broken.pem"));
    let e = assert_refused(&src, 15, 15, "a PEM section has no -----END line");
    assert!(
        !e.to_string().contains("U0VDUkVU"),
        "key material in an error: {e}"
    );
    let src = tls_policy(&dir).replace(&format!("{d}/ca.pem"), &d);
    assert_refused(&src, 16, 11, "is not a regular file");
}

#[test]
fn a_listener_without_a_certificate_and_half_a_key_pair_are_refused() {
    let dir = files("pair");
    let src = tls_policy(&dir);
    let no_key = src
        .lines()
        .filter(|l| !l.starts_with("private_key"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_refused(
        &no_key,
        14,
        15,
        "tls.certificate is set without tls.private_key",
    );
    assert_refused(
        &no_key,
        2,
        30,
        "a tls: listener needs [tls] certificate and private_key",
    );
    let dir2 = files("pair-peer");
    let d = dir2.display();
    let half = tls_policy(&dir2).replace(
        "transport = \"tls\"",
        &format!("transport = \"tls\"\ntls = {{ private_key = \"{d}/key.pem\" }}"),
    );
    assert_refused(
        &half,
        12,
        23,
        "trunk \"carrier-a\" tls.private_key is set without trunk \"carrier-a\" tls.certificate",
    );
}

#[test]
fn peer_tls_rules() {
    let dir = files("rules");
    let d = dir.display();
    let udp = tls_policy(&dir).replace(
        "transport = \"tls\"",
        "transport = \"udp\"\ntls = { server_name = \"sip.example\" }",
    );
    assert_refused(&udp, 12, 7, "has tls = { … } but its transport is \"udp\"");
    let bad_name = tls_policy(&dir).replace(
        "transport = \"tls\"",
        "transport = \"tls\"\ntls = { server_name = \"not a name!\" }",
    );
    assert_refused(
        &bad_name,
        12,
        23,
        "`not a name!` is not a DNS name or an IP address",
    );
    let contradiction = tls_policy(&dir).replace(
        "transport = \"tls\"",
        &format!(
            "transport = \"tls\"\ntls = {{ ca_file = \"{d}/ca.pem\", insecure_skip_verify = true }}"
        ),
    );
    assert_refused(
        &contradiction,
        12,
        19,
        "both ca_file and insecure_skip_verify",
    );
    let insecure = tls_policy(&dir).replace(
        "transport = \"tls\"",
        "transport = \"tls\"\ntls = { insecure_skip_verify = true }",
    );
    let policy = Policy::from_toml(&insecure, "t.toml").unwrap();
    assert!(policy.trunks[0].tls.as_ref().unwrap().insecure_skip_verify);
    let unknown = tls_policy(&dir).replace(
        "transport = \"tls\"",
        "transport = \"tls\"\ntls = { sever_name = \"x\" }",
    );
    let e = assert_refused(
        &unknown,
        12,
        9,
        "unknown key `sever_name` in a trunk's or [pbx]'s tls",
    );
    assert!(e.to_string().contains("did you mean `server_name`?"), "{e}");
}

#[test]
fn client_certificates_need_a_ca_and_the_timeout_a_range() {
    let dir = files("clients");
    let d = dir.display().to_string();
    let no_ca = tls_policy(&dir).replace(&format!("ca_file = \"{d}/ca.pem\"\n"), "")
        + "require_client_certificate = true\n";
    assert_refused(&no_ca, 16, 30, "no CA is named to verify clients with");
    let ok = tls_policy(&dir) + "require_client_certificate = true\nhandshake_timeout = \"2s\"\n";
    let policy = Policy::from_toml(&ok, "t.toml").unwrap();
    assert!(policy.tls.require_client_certificate);
    assert_eq!(
        policy.tls.handshake_timeout,
        std::time::Duration::from_secs(2)
    );
    let long = tls_policy(&dir) + "handshake_timeout = \"5m\"\n";
    assert_refused(
        &long,
        17,
        21,
        "tls.handshake_timeout (300s) is outside 100ms–60s",
    );
}

#[test]
fn tls_keys_can_be_overridden_from_the_environment() {
    let dir = files("env");
    let src = tls_policy(&dir);
    let env = crate::tests::env(&[("TRUNKGATE_TLS__HANDSHAKE_TIMEOUT", "3s")]);
    let policy = Policy::from_toml_with_env(&src, "t.toml", &env).unwrap();
    assert_eq!(
        policy.tls.handshake_timeout,
        std::time::Duration::from_secs(3)
    );
}
