//! Handshakes in process, with certificates `rcgen` makes: verification against the
//! trunk's name (DNS or IP SAN), a certificate for another name refused with the verifier's
//! words, `insecure_skip_verify`, mutual TLS with `require_client_certificate`, and a key
//! that does not go with its certificate refused at build without quoting the key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::PathBuf;
use tokio::net::TcpListener;
use trunkgate_control::TrunkIds;

struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("tg-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    /// `NAME.pem` / `NAME.key` for `sans`; returns the key's PEM text.
    fn issue(&self, name: &str, sans: &[&str]) -> String {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let params = CertificateParams::new(sans).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        key.serialize_pem()
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// A policy with a tls: listener serving `server` and carrier-a at `trunk` over TLS with
/// `trunk_tls` (inline table body) and `[tls]` extras.
fn profiles(
    pki: &Pki,
    server: &str,
    trunk: SocketAddr,
    trunk_tls: &str,
    extra: &str,
) -> TlsProfiles {
    let text = format!(
        r#"[listen]
sip = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
[pbx]
address = "127.0.0.2:5060"
allow = ["127.0.0.2/32"]
[[trunk]]
name = "carrier-a"
address = "{trunk}"
transport = "tls"
tls = {{ {trunk_tls} }}
[tls]
certificate = "{cert}"
private_key = "{key}"
ca_file = "{ca}"
{extra}
"#,
        cert = pki.path(&format!("{server}.pem")),
        key = pki.path(&format!("{server}.key")),
        ca = pki.path("ca.pem"),
    );
    let policy = Policy::from_toml(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let table =
        RoutingTable::new(&policy, &mut TrunkIds::default(), crate::startup::resolve).unwrap();
    TlsProfiles::build(&policy, &table, &[]).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Accept one connection on `listener` with `server`'s profiles while `client` connects to
/// it with `client`'s profile for the listener's address: (server result, client result).
async fn handshake(
    listener: TcpListener,
    server: &TlsProfiles,
    client: &TlsProfiles,
) -> (Result<bool, String>, Result<(), String>) {
    let address = listener.local_addr().unwrap();
    let peer = client.client_for(address).expect("a client profile");
    let connect = async {
        let stream = TcpStream::connect(address).await.unwrap();
        connect(stream, &peer, Duration::from_secs(2))
            .await
            .map(drop)
            .map_err(|e| e.reason)
    };
    let accept = async {
        let (stream, _) = listener.accept().await.unwrap();
        accept(stream, server)
            .await
            .map(|tls| tls.get_ref().1.peer_certificates().is_some())
            .map_err(|e| e.reason)
    };
    tokio::join!(accept, connect)
}

#[tokio::test]
async fn a_trunk_is_verified_by_its_server_name_or_its_ip_address() {
    let pki = Pki::new("names");
    pki.issue("sbc", &["sbc.test", "127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let server = profiles(&pki, "sbc", at, "server_name = \"sbc.test\"", "");
    assert_eq!(
        server.fingerprint.as_deref().map(str::len),
        Some(95),
        "SHA-256 as AB:CD:…"
    );
    let (s, c) = handshake(listener, &server, &server).await;
    assert_eq!((s, c), (Ok(false), Ok(())), "by DNS name");
    // No server_name: the address's IP literal, matched against the IP SAN.
    let listener = TcpListener::bind(at).await.unwrap();
    let by_ip = profiles(&pki, "sbc", at, "", "");
    let (s, c) = handshake(listener, &server, &by_ip).await;
    assert_eq!((s, c), (Ok(false), Ok(())), "by IP SAN");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_unless_verification_is_off() {
    let pki = Pki::new("mismatch");
    pki.issue("sbc", &["wrong.test"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let strict = profiles(&pki, "sbc", at, "server_name = \"carrier-a.test\"", "");
    let (_, c) = handshake(listener, &strict, &strict).await;
    let error = c.unwrap_err();
    assert!(
        error.contains("not valid for name \"carrier-a.test\"") && error.contains("wrong.test"),
        "{error}"
    );
    let listener = TcpListener::bind(at).await.unwrap();
    let insecure = profiles(&pki, "sbc", at, "insecure_skip_verify = true", "");
    assert!(insecure.client_for(at).unwrap().insecure);
    let (s, c) = handshake(listener, &strict, &insecure).await;
    assert_eq!((s, c), (Ok(false), Ok(())));
}

#[tokio::test]
async fn required_client_certificates_admit_mutual_tls_only() {
    let pki = Pki::new("mtls");
    pki.issue("sbc", &["127.0.0.1"]);
    pki.issue("client", &["carrier-a.test"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let server = profiles(&pki, "sbc", at, "", "require_client_certificate = true");
    let mutual = profiles(
        &pki,
        "sbc",
        at,
        &format!(
            "certificate = \"{}\", private_key = \"{}\"",
            pki.path("client.pem"),
            pki.path("client.key")
        ),
        "",
    );
    let (s, c) = handshake(listener, &server, &mutual).await;
    assert_eq!(
        (s, c),
        (Ok(true), Ok(())),
        "the client's certificate is verified"
    );
    let listener = TcpListener::bind(at).await.unwrap();
    let anonymous = profiles(&pki, "sbc", at, "", "");
    let (s, _) = handshake(listener, &server, &anonymous).await;
    let error = s.unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[test]
fn a_key_that_does_not_go_with_its_certificate_is_refused_without_quoting_it() {
    let pki = Pki::new("mismatched-key");
    pki.issue("sbc", &["127.0.0.1"]);
    let other_key = pki.issue("other", &["127.0.0.1"]);
    std::fs::copy(pki.dir.join("other.key"), pki.dir.join("sbc.key")).unwrap();
    let text = format!(
        "[listen]\nsip = [\"tls:127.0.0.1:5061\"]\n[pbx]\naddress = \"127.0.0.2:5060\"\n\
         [[trunk]]\nname = \"a\"\naddress = \"127.0.0.3:5061\"\ntransport = \"tls\"\n\
         [tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\nca_file = \"{}\"\n",
        pki.path("sbc.pem"),
        pki.path("sbc.key"),
        pki.path("ca.pem")
    );
    let policy = Policy::from_toml(&text, "t.toml").unwrap();
    let table =
        RoutingTable::new(&policy, &mut TrunkIds::default(), crate::startup::resolve).unwrap();
    let error = format!(
        "{:#}",
        TlsProfiles::build(&policy, &table, &[]).unwrap_err()
    );
    let checked = format!("{:#}", check(&policy).unwrap_err());
    assert_eq!(checked, error, "`trunkgate check` finds it too");
    assert!(
        error.contains("sbc.key")
            && error.contains("does not go with")
            && error.contains("sbc.pem"),
        "{error}"
    );
    let body = other_key.lines().nth(1).unwrap();
    assert!(!error.contains(body), "key material in the error");
}

#[test]
fn a_policy_without_tls_builds_no_profiles() {
    let policy = Policy::from_toml(
        "[listen]\nsip = [\"udp:127.0.0.1:5060\"]\n[pbx]\naddress = \"127.0.0.2:5060\"\n\
         [[trunk]]\nname = \"a\"\naddress = \"127.0.0.3:5060\"\n",
        "t.toml",
    )
    .unwrap();
    let table =
        RoutingTable::new(&policy, &mut TrunkIds::default(), crate::startup::resolve).unwrap();
    let profiles = TlsProfiles::build(&policy, &table, &[]).unwrap();
    assert!(profiles.server.is_none() && profiles.fingerprint.is_none());
    assert!(
        profiles
            .client_for("127.0.0.3:5061".parse().unwrap())
            .is_none()
    );
}

#[test]
fn the_pbx_over_tls_gets_its_profile_and_unknown_destinations_the_fallback() {
    let pki = Pki::new("pbx");
    pki.issue("sbc", &["127.0.0.1"]);
    let text = format!(
        "[listen]\nsip = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n\
         [pbx]\naddress = \"127.0.0.2:5061\"\ntransport = \"tls\"\ntls = {{ server_name = \"pbx.lan\" }}\n\
         [[trunk]]\nname = \"a\"\naddress = \"127.0.0.3:5060\"\ntransport = \"udp\"\n\
         [tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\nca_file = \"{}\"\n",
        pki.path("sbc.pem"),
        pki.path("sbc.key"),
        pki.path("ca.pem")
    );
    let policy = Policy::from_toml(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let table =
        RoutingTable::new(&policy, &mut TrunkIds::default(), crate::startup::resolve).unwrap();
    let profiles = TlsProfiles::build(&policy, &table, &[]).unwrap();
    let pbx = profiles
        .client_for("127.0.0.2:5061".parse().unwrap())
        .unwrap();
    assert_eq!(
        (pbx.who.as_str(), name_text(&pbx.name).as_str()),
        ("pbx", "pbx.lan")
    );
    // A Contact somewhere no peer is: verified against its IP address with [tls] ca_file.
    let other = profiles
        .client_for("192.0.2.7:5061".parse().unwrap())
        .unwrap();
    assert_eq!(
        (other.who.as_str(), name_text(&other.name).as_str()),
        ("unknown peer", "192.0.2.7")
    );
    assert!(!other.insecure);
}
