//! TLS for the end-to-end tests: a test CA and certificates made with `rcgen` at run time
//! (nothing committed), the SHA-256 fingerprint of the certificate a listener serves (read
//! with a rustls client, as `openssl s_client | openssl x509 -fingerprint -sha256` would),
//! and Kamailio with its TLS module as a carrier's TLS edge (`tests/kamailio/tls_edge.cfg`).

#![allow(dead_code)]

use crate::common::kamailio::Kamailio;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::Digest as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A certificate and its key as PEM files, and the certificate's fingerprint.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the DER, `AB:CD:…` (Trunkgate logs and exports it in this form).
    pub fingerprint: String,
}

/// A CA that exists for one test: its certificate in `ca.pem`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
}

/// SHA-256 of a DER certificate as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl TestCa {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Trunkgate e2e test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write ca.pem");
        TestCa { issuer, ca_file }
    }

    /// A certificate for `sans` (DNS names; IP literals become IP SANs), signed by this CA,
    /// written to `dir/NAME.pem` and `dir/NAME.key`.
    pub fn issue(&self, dir: &Path, name: &str, sans: &[&str]) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let issued = Issued {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            fingerprint: fingerprint(cert.der()),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}

/// Connect from `from` (an address Trunkgate admits) to the TLS listener `to`, verify it
/// against `ca_file` for `server_name`, and return the served leaf certificate's
/// fingerprint. A rustls client rather than `openssl s_client`: its verdict is the same and
/// it needs no output parsing.
pub fn served_fingerprint(
    from: IpAddr,
    to: SocketAddr,
    ca_file: &Path,
    server_name: &str,
) -> Result<String, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect {to}: {e}"))?;
    let mut tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| format!("handshake with {to}: {e}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate served")?;
    let fp = fingerprint(leaf.as_ref());
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(fp)
}

/// Kamailio on `ip` (UDP 5060, TLS 5061) as carrier-a's TLS edge: it serves `cert`, verifies
/// Trunkgate's certificate against `ca` when it connects to it, relays Trunkgate's INVITEs
/// to `uas` over UDP and everyone else's to `trunkgate:5061` over TLS. `client_certs`: the
/// clients connecting to it (Trunkgate) must show a certificate `ca` verifies.
pub fn kamailio_edge(
    dir: &Path,
    ip: IpAddr,
    cert: &Issued,
    ca: &TestCa,
    uas: SocketAddr,
    trunkgate: IpAddr,
    client_certs: bool,
) -> Kamailio {
    let tls_cfg = dir.join("kamailio-tls.cfg");
    let verify = if client_certs { "yes" } else { "no" };
    let text = format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = {verify}\nrequire_certificate = {verify}\n\
         certificate = {cert}\nprivate_key = {key}\nca_list = {ca}\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n\
         ca_list = {ca}\n",
        cert = cert.cert.display(),
        key = cert.key.display(),
        ca = ca.ca_file.display()
    );
    std::fs::write(&tls_cfg, text).expect("write kamailio-tls.cfg");
    Kamailio::start(
        dir,
        "tls_edge.cfg",
        &[
            ("IP", &ip.to_string()),
            ("UAS", &uas.to_string()),
            ("TRUNKGATE", &trunkgate.to_string()),
            ("TLSCFG", &tls_cfg.display().to_string()),
        ],
    )
}

/// Kamailio's TLS connections (`tls.list`): one entry per connection.
pub fn kamailio_tls_connections(kam: &Kamailio) -> usize {
    kam.rpc(&["tls.list"])
        .map(|out| {
            out.lines()
                .filter(|l| l.trim_start().starts_with("id:"))
                .count()
        })
        .unwrap_or(0)
}
