//! TLS for the stream shell (rustls with the aws-lc-rs provider, tokio-rustls): the server
//! configuration our `tls:` listeners present, one client configuration per peer profile,
//! and the handshakes. After the handshake a TLS connection is served by exactly the same
//! reader/writer tasks as a TCP one ([`super::tcp`]); nothing above the byte stream knows
//! the difference.
//!
//! [`TlsProfiles`] is built from a policy snapshot ([`TlsProfiles::build`]: certificate
//! and key files read, every peer's server name and trust anchors resolved) and held in
//! [`TlsShared`] behind an `ArcSwap`. A reload swaps in a new one: each handshake loads the
//! profiles in force when it starts, so new connections present (and verify with) the new
//! certificates while connections already up keep the rustls state they were made with —
//! nothing is dropped.
//!
//! Outgoing connections are verified against the peer's name: the trunk's `tls.server_name`,
//! else its `address` host (a DNS name in SNI and the certificate's DNS SANs, an IP literal
//! against its IP SANs, no SNI). Which profile a destination gets is found by address: every
//! address of every trunk (and PBX node) in the table, so DNS-resolved trunks are covered.
//! A destination no peer owns (a Contact elsewhere) is verified against its IP address with
//! `[tls].ca_file` (or the system's trust store).
//!
//! Never logged: key contents. Logged: the served certificate's SHA-256 fingerprint at
//! every load, each failed handshake with the verifier's error and the expected name, and a
//! warning at every load for each peer with `insecure_skip_verify`.

use anyhow::{Context as _, anyhow};
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::Digest as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use trunkgate_config::{Host, HostPort, PeerTls, PeerTransport, Policy, Trunk};
use trunkgate_control::RoutingTable;

/// How a destination is reached over TLS: the client configuration (trust anchors, client
/// certificate), the name its certificate must carry, and who it is (for logs).
#[derive(Debug)]
pub struct PeerClient {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// `trunk "carrier-a"`, `pbx`, or `unknown peer`.
    pub who: String,
    pub insecure: bool,
}

/// Every TLS configuration of one policy snapshot. Immutable; swapped whole.
#[derive(Debug)]
pub struct TlsProfiles {
    /// What `tls:` listeners present (`None`: no `[tls]` certificate).
    server: Option<Arc<ServerConfig>>,
    /// Destination → its peer's profile.
    peers: HashMap<SocketAddr, Arc<PeerClient>>,
    /// For destinations no peer owns: `[tls].ca_file` (or the system's store), no client
    /// certificate, verified against the IP address. `None`: no TLS is configured at all.
    fallback: Option<Arc<ClientConfig>>,
    pub handshake_timeout: Duration,
    /// SHA-256 of the served leaf certificate, `AB:CD:…`.
    pub fingerprint: Option<String>,
}

impl TlsProfiles {
    /// No TLS: every handshake fails (a policy without `tls:` listeners and TLS peers).
    pub fn none() -> TlsProfiles {
        TlsProfiles {
            server: None,
            peers: HashMap::new(),
            fallback: None,
            handshake_timeout: Duration::from_secs(5),
            fingerprint: None,
        }
    }

    /// Build the profiles of `policy` whose peers `table` resolved; `draining` are the
    /// trunks a reload removed that still carry calls (their BYEs still need TLS).
    pub fn build(
        policy: &Policy,
        table: &RoutingTable,
        draining: &[Trunk],
    ) -> anyhow::Result<TlsProfiles> {
        let uses_tls = policy
            .listen
            .sip
            .iter()
            .any(|l| l.transport == trunkgate_config::ListenTransport::Tls)
            || policy
                .trunks
                .iter()
                .chain(draining)
                .any(|t| t.transport == PeerTransport::Tls || t.tls.is_some())
            || policy.pbx.transport == PeerTransport::Tls
            || policy.pbx.tls.is_some();
        if !uses_tls {
            return Ok(TlsProfiles::none());
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let settings = &policy.tls;
        let mut roots = Roots::default();
        let (server, fingerprint) = server_config(settings, &provider, &mut roots)?;
        let mut clients = ClientCache::default();
        let fallback = clients
            .get(
                &provider,
                &mut roots,
                settings.ca_file.as_deref(),
                None,
                false,
            )
            .ok();
        let mut peers = HashMap::new();
        let mut add = |who: String,
                       host: &HostPort,
                       tls: Option<&PeerTls>,
                       addresses: &[SocketAddr]|
         -> anyhow::Result<()> {
            let default = PeerTls::default();
            let tls = tls.unwrap_or(&default);
            let name =
                server_name(tls, host).with_context(|| format!("{who}: no TLS server name"))?;
            let ca = tls.ca_file.as_deref().or(settings.ca_file.as_deref());
            let client_cert = match (&tls.certificate, &tls.private_key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                _ => None,
            };
            let config = clients
                .get(
                    &provider,
                    &mut roots,
                    ca,
                    client_cert,
                    tls.insecure_skip_verify,
                )
                .with_context(|| format!("{who} tls"))?;
            if tls.insecure_skip_verify {
                tracing::warn!(
                    peer = %who,
                    "TLS certificate verification is OFF for this peer (insecure_skip_verify = true): \
                     anyone can pose as it; for tests only"
                );
            }
            let client = Arc::new(PeerClient {
                config,
                name,
                who,
                insecure: tls.insecure_skip_verify,
            });
            // Two peers on one address (names that resolve alike): the first keeps it,
            // as the routing table's classification does.
            for address in addresses {
                peers.entry(*address).or_insert_with(|| client.clone());
            }
            Ok(())
        };
        for entry in table.trunks() {
            let Some(trunk) = policy
                .trunks
                .iter()
                .chain(draining)
                .find(|t| t.name == entry.name)
            else {
                continue;
            };
            let who = format!("trunk \"{}\"", trunk.name);
            let result = add(
                who.clone(),
                &trunk.address,
                trunk.tls.as_ref(),
                &entry.addresses,
            );
            match (configured(trunk.transport, trunk.tls.as_ref()), result) {
                (_, Ok(())) => {}
                (true, Err(e)) => return Err(e),
                // `auto` without a tls table: TLS only if a request came in over TLS; no
                // profile then means the fallback (verified against the IP address).
                (false, Err(e)) => {
                    tracing::debug!(peer = %who, error = %format!("{e:#}"), "no TLS profile");
                }
            }
        }
        let pbx_hosts =
            std::iter::once(&policy.pbx.address).chain(policy.pbx.nodes.iter().map(|n| &n.address));
        for (node, host) in table.pbx_nodes().iter().zip(pbx_hosts) {
            let who = if node.name == "pbx" {
                "pbx".to_owned()
            } else {
                format!("pbx node \"{}\"", node.name)
            };
            let result = add(who.clone(), host, policy.pbx.tls.as_ref(), &[node.address]);
            match (configured(node.transport, policy.pbx.tls.as_ref()), result) {
                (_, Ok(())) => {}
                (true, Err(e)) => return Err(e),
                (false, Err(e)) => {
                    tracing::debug!(peer = %who, error = %format!("{e:#}"), "no TLS profile");
                }
            }
        }
        if let (Some(fp), Some(cert)) = (&fingerprint, &settings.certificate) {
            tracing::info!(
                sha256 = %fp,
                certificate = %cert.display(),
                "TLS certificate loaded for the tls: listeners"
            );
        }
        Ok(TlsProfiles {
            server,
            peers,
            fallback,
            handshake_timeout: settings.handshake_timeout,
            fingerprint,
        })
    }

    /// The profile for a connection to `destination`.
    pub fn client_for(&self, destination: SocketAddr) -> Option<Arc<PeerClient>> {
        if let Some(peer) = self.peers.get(&destination) {
            return Some(peer.clone());
        }
        let config = self.fallback.clone()?;
        Some(Arc::new(PeerClient {
            config,
            name: ServerName::IpAddress(destination.ip().into()),
            who: "unknown peer".to_owned(),
            insecure: false,
        }))
    }
}

/// What `tls:` listeners serve: `[tls]`'s certificate chain and key (checked to belong
/// together), client certificates verified when required; the leaf's fingerprint.
fn server_config(
    settings: &trunkgate_config::TlsSettings,
    provider: &Arc<CryptoProvider>,
    roots: &mut Roots,
) -> anyhow::Result<(Option<Arc<ServerConfig>>, Option<String>)> {
    let (Some(cert), Some(key_path)) = (&settings.certificate, &settings.private_key) else {
        return Ok((None, None));
    };
    let chain = read_certificates(cert)?;
    let fingerprint = chain.first().map(fingerprint);
    let key = read_key(key_path)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if settings.require_client_certificate {
        let ca = settings
            .client_ca_file
            .as_ref()
            .or(settings.ca_file.as_ref())
            .ok_or_else(|| anyhow!("tls.require_client_certificate needs tls.client_ca_file"))?;
        let store = roots.get(Some(ca))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(store, provider.clone())
            .build()
            .context("building the client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "tls.private_key {} does not go with tls.certificate {}",
            key_path.display(),
            cert.display()
        )
    })?;
    Ok((Some(Arc::new(config)), fingerprint))
}

/// `trunkgate check`: what the validation cannot see without the crypto provider — that
/// every key belongs to its certificate, that CA files hold usable CAs — for `[tls]` and
/// every peer's `tls` table. Names are not resolved.
pub fn check(policy: &Policy) -> anyhow::Result<()> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = Roots::default();
    server_config(&policy.tls, &provider, &mut roots)?;
    let mut clients = ClientCache::default();
    let peers = policy
        .trunks
        .iter()
        .map(|t| (format!("trunk \"{}\"", t.name), t.tls.as_ref()))
        .chain(std::iter::once(("pbx".to_owned(), policy.pbx.tls.as_ref())));
    for (who, tls) in peers {
        let Some(tls) = tls else { continue };
        let client_cert = match (&tls.certificate, &tls.private_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let ca = tls.ca_file.as_deref().or(policy.tls.ca_file.as_deref());
        clients
            .get(
                &provider,
                &mut roots,
                ca,
                client_cert,
                tls.insecure_skip_verify,
            )
            .with_context(|| format!("{who} tls"))?;
    }
    Ok(())
}

/// A peer the policy sends TLS to for sure (`transport = "tls"` or a `tls` table), whose
/// profile must build; other peers get one when it builds.
fn configured(transport: PeerTransport, tls: Option<&PeerTls>) -> bool {
    transport == PeerTransport::Tls || tls.is_some()
}

/// The name a peer's certificate must carry: `server_name`, else the address's host (a
/// DNS name, or the IP literal); for an address resolved from a name, the name.
fn server_name(tls: &PeerTls, host: &HostPort) -> anyhow::Result<ServerName<'static>> {
    let text = match (&tls.server_name, &host.host) {
        (Some(name), _) => name.clone(),
        (None, Host::Name(name)) => name.clone(),
        (None, Host::Ip(ip)) => ip.to_string(),
    };
    ServerName::try_from(text.as_str())
        .map(|n| n.to_owned())
        .map_err(|_| anyhow!("`{text}` is not a DNS name or an IP address"))
}

/// SHA-256 of a DER certificate, as `AB:CD:…` (what `openssl x509 -fingerprint -sha256`
/// prints).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = sha2::Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{}: {}", path.display(), pem_words(&e)))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The key in `path`. Errors name the file, never its content.
fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| anyhow!("{}: {}", path.display(), pem_words(&e)))
}

/// A PEM error in words that quote nothing from the file.
fn pem_words(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot be read: {io}"),
        Error::NoItemsFound => "no PEM section of the expected kind".to_owned(),
        _ => "not valid PEM".to_owned(),
    }
}

/// Trust anchors by CA file (`None`: the system's store), each read once per build.
#[derive(Default)]
struct Roots(HashMap<Option<PathBuf>, Arc<RootCertStore>>);

impl Roots {
    fn get(&mut self, ca: Option<&PathBuf>) -> anyhow::Result<Arc<RootCertStore>> {
        self.get_path(ca.map(PathBuf::as_path))
    }

    fn get_path(&mut self, ca: Option<&Path>) -> anyhow::Result<Arc<RootCertStore>> {
        let key = ca.map(Path::to_path_buf);
        if let Some(store) = self.0.get(&key) {
            return Ok(store.clone());
        }
        let mut store = RootCertStore::empty();
        match ca {
            Some(path) => {
                let (added, ignored) = store.add_parsable_certificates(read_certificates(path)?);
                if added == 0 {
                    return Err(anyhow!(
                        "{}: none of its {ignored} certificates is a usable CA",
                        path.display()
                    ));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(anyhow!(
                        "the system's trust store has no CA certificate ({} errors); set tls.ca_file",
                        native.errors.len()
                    ));
                }
            }
        }
        let store = Arc::new(store);
        self.0.insert(key, store.clone());
        Ok(store)
    }
}

/// Client configurations by (CA, client certificate, insecure): trunks of one provider
/// share one (and its session-resumption cache).
#[derive(Default)]
struct ClientCache(HashMap<ProfileKey, Arc<ClientConfig>>);

/// What makes two client configurations the same: CA file, client certificate and key
/// files, insecure.
type ProfileKey = (Option<PathBuf>, Option<(PathBuf, PathBuf)>, bool);

impl ClientCache {
    fn get(
        &mut self,
        provider: &Arc<CryptoProvider>,
        roots: &mut Roots,
        ca: Option<&Path>,
        client_cert: Option<(&Path, &Path)>,
        insecure: bool,
    ) -> anyhow::Result<Arc<ClientConfig>> {
        let key = (
            ca.map(Path::to_path_buf),
            client_cert.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
            insecure,
        );
        if let Some(config) = self.0.get(&key) {
            return Ok(config.clone());
        }
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
        } else {
            builder.with_root_certificates(roots.get_path(ca)?)
        };
        let config = match client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
                .with_context(|| {
                    format!(
                        "private_key {} does not go with certificate {}",
                        key.display(),
                        cert.display()
                    )
                })?,
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(config);
        self.0.insert(key, config.clone());
        Ok(config)
    }
}

/// `insecure_skip_verify`: any certificate for any name is accepted. The handshake's
/// signatures are still checked (the peer must hold the key of the certificate it shows),
/// so the connection is encrypted — just not to anyone in particular.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS profiles in force, swapped by every reload.
#[derive(Debug)]
pub struct TlsShared {
    current: ArcSwap<TlsProfiles>,
}

impl TlsShared {
    pub fn new(profiles: TlsProfiles) -> TlsShared {
        TlsShared {
            current: ArcSwap::from_pointee(profiles),
        }
    }

    /// The profiles a new handshake uses.
    pub fn current(&self) -> Arc<TlsProfiles> {
        self.current.load_full()
    }

    /// New connections use `profiles` from now on; connections up keep theirs.
    pub fn set(&self, profiles: Arc<TlsProfiles>) {
        self.current.store(profiles);
    }
}

/// Why a handshake failed, for the log line and the counter.
#[derive(Debug)]
pub struct HandshakeError {
    pub reason: String,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The server side of a handshake on an accepted connection.
pub async fn accept(
    stream: TcpStream,
    profiles: &TlsProfiles,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, HandshakeError> {
    let Some(config) = profiles.server.clone() else {
        return Err(HandshakeError {
            reason: "no [tls] certificate is loaded".to_owned(),
        });
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(profiles.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(HandshakeError {
            reason: e.to_string(),
        }),
        Err(_) => Err(HandshakeError {
            reason: format!("no handshake within {:?}", profiles.handshake_timeout),
        }),
    }
}

/// The client side of a handshake with `peer` on a fresh connection to it.
pub async fn connect(
    stream: TcpStream,
    peer: &PeerClient,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
    let connector = tokio_rustls::TlsConnector::from(peer.config.clone());
    match tokio::time::timeout(timeout, connector.connect(peer.name.clone(), stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(HandshakeError {
            reason: e.to_string(),
        }),
        Err(_) => Err(HandshakeError {
            reason: format!("no handshake within {timeout:?}"),
        }),
    }
}

/// `ServerName` as the operator wrote it (`sip.carrier.example`, `127.0.0.3`).
pub fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => format!("{name:?}"),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
