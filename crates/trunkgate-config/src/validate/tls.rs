//! `[tls]` (our certificate, the trust anchors, client certificates on `tls:` listeners)
//! and each peer's `tls = { … }` (server name, CAs, a client certificate for mutual TLS,
//! `insecure_skip_verify`), with the rules that tie them to the listeners: a `tls:`
//! listener needs a certificate and key, a peer reached over TLS needs a `tls:` listener
//! (its port is the one our Via and Record-Route advertise).
//!
//! Certificate, key and CA files are read here, so a missing file, one that is not PEM,
//! or a key file without a key is refused at its `file:line:col` like any other value.
//! Whether a key belongs to its certificate is checked where the TLS configuration is
//! built (the binary; that needs the crypto provider this crate does not link). Nothing
//! read from a key file ever reaches a message: errors name the file and what is wrong
//! with it, never its content.

use super::Check;
use crate::error::At;
use crate::raw::{Field, RawPeerTls, RawPolicy, Value};
use crate::values::Problem;
use crate::{Host, HostPort, Listen, ListenTransport, PeerTls, PeerTransport, TlsSettings};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

pub(crate) mod defaults {
    pub const HANDSHAKE_TIMEOUT: &str = "5s";
}

/// PEM files larger than this are refused (a CA bundle is ~200 KiB; a mistaken path to a
/// large file should not be read into memory).
const MAX_PEM_FILE: u64 = 4 * 1024 * 1024;

/// What a PEM file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemContent {
    /// At least one certificate (ours first, or CA certificates).
    Certificates,
    /// A private key.
    PrivateKey,
}

/// A PEM reader error in words that never quote the file (a key file's lines are secret).
fn pem_problem(error: &pem::Error, content: PemContent) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no -----END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed -----BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "bad base64 inside a PEM section".to_owned(),
        pem::Error::Io(e) => format!("cannot be read: {e}"),
        pem::Error::NoItemsFound => match content {
            PemContent::Certificates => "holds no -----BEGIN CERTIFICATE----- section".to_owned(),
            PemContent::PrivateKey => {
                "holds no private key (PKCS#8, PKCS#1 or SEC1 PEM section)".to_owned()
            }
        },
        pem::Error::SectionTooLarge => "a PEM section is too large".to_owned(),
        _ => "is not valid PEM".to_owned(),
    }
}

/// Read `path` and check it holds `content`; the problem in words otherwise.
fn check_pem(path: &std::path::Path, content: PemContent) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_owned());
    }
    if meta.len() > MAX_PEM_FILE {
        return Err(format!("is {} bytes: too large for a PEM file", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    match content {
        PemContent::Certificates => {
            let mut n = 0usize;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                cert.map_err(|e| pem_problem(&e, content))?;
                n += 1;
            }
            if n == 0 {
                return Err(pem_problem(&pem::Error::NoItemsFound, content));
            }
            Ok(())
        }
        PemContent::PrivateKey => PrivateKeyDer::from_pem_slice(&bytes)
            .map(drop)
            .map_err(|e| pem_problem(&e, content)),
    }
}

/// A listener's position in `listen.sip` (for errors about a `tls:` listener).
fn tls_listener_spot(raw: &RawPolicy) -> Option<At> {
    let f = raw.listen.as_ref()?.get_ref().sip.as_ref()?;
    let Value::Array(items) = &f.value else {
        return None;
    };
    items.iter().find_map(|item| match &item.value {
        Value::Str(s) if s.starts_with("tls:") => Some(item.at.clone()),
        _ => None,
    })
}

impl Check<'_, '_> {
    /// A PEM file name holding `content`; `None` (reported) when missing or wrong.
    fn pem_file(&mut self, f: &Field, what: &str, content: PemContent) -> Option<PathBuf> {
        let text = self.string(f, what)?;
        if text.trim().is_empty() {
            self.report.error(
                &f.at,
                format!("{what} is empty"),
                Some("write the file's path, e.g. \"/etc/trunkgate/tls/sbc.pem\"".into()),
            );
            return None;
        }
        let path = PathBuf::from(text);
        match check_pem(&path, content) {
            Ok(()) => Some(path),
            Err(problem) => {
                let hint = match content {
                    PemContent::Certificates => {
                        "name a readable PEM file with -----BEGIN CERTIFICATE----- sections"
                    }
                    PemContent::PrivateKey => {
                        "name a readable PEM file with the private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY), readable by trunkgate's user only"
                    }
                };
                self.report.error(
                    &f.at,
                    format!("{what} `{text}` {problem}"),
                    Some(hint.into()),
                );
                None
            }
        }
    }

    /// `certificate` + `private_key` of `table`: both or neither.
    fn key_pair(
        &mut self,
        certificate: Option<&Field>,
        private_key: Option<&Field>,
        table: &str,
    ) -> (Option<PathBuf>, Option<PathBuf>) {
        let cert = certificate.and_then(|f| {
            self.pem_file(f, &format!("{table}.certificate"), PemContent::Certificates)
        });
        let key = private_key.and_then(|f| {
            self.pem_file(f, &format!("{table}.private_key"), PemContent::PrivateKey)
        });
        match (certificate, private_key) {
            (Some(f), None) => self.report.error(
                &f.at,
                format!("{table}.certificate is set without {table}.private_key"),
                Some("add private_key = \"/path/key.pem\" (the certificate's key)".into()),
            ),
            (None, Some(f)) => self.report.error(
                &f.at,
                format!("{table}.private_key is set without {table}.certificate"),
                Some("add certificate = \"/path/cert.pem\" (the key's certificate chain)".into()),
            ),
            _ => {}
        }
        (cert, key)
    }

    /// `[tls]`, and the rule that a `tls:` listener needs a certificate and key.
    pub(super) fn tls(&mut self, raw: &RawPolicy, listen: &Listen) -> TlsSettings {
        let empty = crate::raw::RawTls::default();
        let t = raw.tls.as_ref().map_or(&empty, Spanned::get_ref);
        let (certificate, private_key) =
            self.key_pair(t.certificate.as_ref(), t.private_key.as_ref(), "tls");
        let ca_file = t
            .ca_file
            .as_ref()
            .and_then(|f| self.pem_file(f, "tls.ca_file", PemContent::Certificates));
        let client_ca_file = t
            .client_ca_file
            .as_ref()
            .and_then(|f| self.pem_file(f, "tls.client_ca_file", PemContent::Certificates));
        let require_client_certificate = t
            .require_client_certificate
            .as_ref()
            .and_then(|f| self.boolean(f, "tls.require_client_certificate"))
            .unwrap_or(false);
        if let (true, Some(f)) = (require_client_certificate, &t.require_client_certificate) {
            if t.client_ca_file.is_none() && t.ca_file.is_none() {
                self.report.error(
                    &f.at,
                    "tls.require_client_certificate is true but no CA is named to verify clients with",
                    Some("set tls.client_ca_file (or tls.ca_file) to the CA that issued your peers' client certificates; the system's public CAs would admit anyone with any certificate".into()),
                );
            }
        }
        let (handshake_timeout, timeout_at) = self.duration(
            t.handshake_timeout.as_ref(),
            "tls.handshake_timeout",
            defaults::HANDSHAKE_TIMEOUT,
        );
        if let (true, Some(at)) = (
            handshake_timeout < Duration::from_millis(100)
                || handshake_timeout > Duration::from_secs(60),
            timeout_at,
        ) {
            self.report.error(
                &at,
                format!("tls.handshake_timeout ({handshake_timeout:?}) is outside 100ms–60s"),
                Some(format!("write e.g. \"{}\"", defaults::HANDSHAKE_TIMEOUT)),
            );
        }
        let tls_listener = listen
            .sip
            .iter()
            .any(|l| l.transport == ListenTransport::Tls);
        if tls_listener && (t.certificate.is_none() || t.private_key.is_none()) {
            let spot = tls_listener_spot(raw).unwrap_or(At::Nowhere);
            self.report.error(
                &spot,
                "a tls: listener needs [tls] certificate and private_key",
                Some("add [tls] certificate = \"/etc/trunkgate/tls/sbc.pem\" and private_key = \"/etc/trunkgate/tls/sbc.key\"".into()),
            );
        }
        TlsSettings {
            certificate,
            private_key,
            ca_file,
            require_client_certificate,
            client_ca_file,
            handshake_timeout,
        }
    }

    /// `tls = { … }` of `owner` (`trunk "a"`, `pbx`), reached over `transport` (written at
    /// `transport_at`) at `address`; the rule that TLS needs a `tls:` listener.
    pub(super) fn peer_tls(
        &mut self,
        raw: Option<&Spanned<RawPeerTls>>,
        transport: PeerTransport,
        transport_at: Option<&At>,
        owner: &str,
        address: &HostPort,
    ) -> Option<PeerTls> {
        if transport == PeerTransport::Tls && !self.tls_listener {
            let at = transport_at.cloned().unwrap_or(At::Nowhere);
            self.report.error(
                &at,
                format!("{owner} transport is \"tls\" but listen.sip has no tls: listener"),
                Some("add a listener such as \"tls:0.0.0.0:5061\" to listen.sip (its port is the one Via and Record-Route name), with [tls] certificate and private_key".into()),
            );
        }
        let spanned = raw?;
        let at = super::span_of(spanned);
        let t = spanned.get_ref();
        if matches!(transport, PeerTransport::Udp | PeerTransport::Tcp) {
            let name = if transport == PeerTransport::Udp {
                "udp"
            } else {
                "tcp"
            };
            self.report.error(
                &at,
                format!("{owner} has tls = {{ … }} but its transport is \"{name}\""),
                Some("set transport = \"tls\" (or remove the tls table)".into()),
            );
        }
        let what = |key: &str| format!("{owner} tls.{key}");
        let server_name = t.server_name.as_ref().and_then(|f| {
            self.parsed(f, &what("server_name"), |s| {
                ServerName::try_from(s)
                    .map(|_| s.to_owned())
                    .map_err(|_| {
                        Problem::new(format!("`{s}` is not a DNS name or an IP address"))
                            .hint("write the name the peer's certificate carries, e.g. \"sip.carrier-a.example\"")
                    })
            })
        });
        if let (None, Host::Name(name)) = (&server_name, &address.host) {
            if ServerName::try_from(name.as_str()).is_err() {
                self.report.error(
                    &at,
                    format!("{owner}'s address host `{name}` cannot be a TLS server name"),
                    Some("set tls.server_name to the name the peer's certificate carries".into()),
                );
            }
        }
        let ca_file = t
            .ca_file
            .as_ref()
            .and_then(|f| self.pem_file(f, &what("ca_file"), PemContent::Certificates));
        let (certificate, private_key) = self.key_pair(
            t.certificate.as_ref(),
            t.private_key.as_ref(),
            &format!("{owner} tls"),
        );
        let insecure_skip_verify = t
            .insecure_skip_verify
            .as_ref()
            .and_then(|f| self.boolean(f, &what("insecure_skip_verify")))
            .unwrap_or(false);
        if let (true, Some(_)) = (insecure_skip_verify, &t.ca_file) {
            let f = t.ca_file.as_ref();
            self.report.error(
                f.map_or(&at, |f| &f.at),
                format!("{owner} tls has both ca_file and insecure_skip_verify = true"),
                Some("a CA to verify with and no verification contradict: drop one".into()),
            );
        }
        Some(PeerTls {
            server_name,
            ca_file,
            certificate,
            private_key,
            insecure_skip_verify,
        })
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
