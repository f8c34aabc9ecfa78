//! HTTP Digest for SIP (RFC 3261 §22.4, RFC 2617 `qop=auth`, RFC 8760 SHA-256): parse a
//! `WWW-Authenticate`/`Proxy-Authenticate` challenge and write the matching
//! `Authorization`/`Proxy-Authorization` value. Hashes come from the RustCrypto crates
//! `md-5` and `sha2`. Pure functions and plain data: the caller supplies the client nonce
//! and the nonce count, so answers are deterministic under test.
//!
//! Passwords are [`Secret`]s: their `Debug` prints `***`, they have no `Display`, and
//! nothing here logs.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A password held in memory. `Debug` prints `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Secret {
        Secret(value.into())
    }

    /// The password itself: only for computing a digest.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What Trunkgate answers a trunk's challenge with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
    /// Answer only challenges for this realm; `None`: any realm the trunk names.
    pub realm: Option<String>,
}

/// Digest algorithms Trunkgate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hex(self, parts: &[&[u8]]) -> String {
        fn join<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> String {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part);
            }
            d.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }
        match self {
            Algorithm::Md5 => join(Md5::new(), parts),
            Algorithm::Sha256 => join(Sha256::new(), parts),
        }
    }
}

/// A parsed `WWW-Authenticate` or `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (answered with `qop=auth`, `nc` and `cnonce`).
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, the nonce expired.
    pub stale: bool,
}

impl Challenge {
    /// Parse a `Digest` challenge value. `None` for other schemes, an algorithm we do not
    /// answer (`-sess` variants, SHA-512-256), or a challenge without realm or nonce.
    pub fn parse(value: &[u8]) -> Option<Challenge> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let (scheme, rest) = text.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let (mut realm, mut nonce, mut opaque) = (None, None, None);
        let mut algorithm = Algorithm::Md5;
        let (mut qop_auth, mut stale) = (false, false);
        for (name, value) in params(rest) {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => opaque = Some(value),
                "stale" => stale = value.eq_ignore_ascii_case("true"),
                "qop" => {
                    qop_auth = value
                        .split(',')
                        .any(|q| q.trim().eq_ignore_ascii_case("auth"));
                }
                "algorithm" => {
                    algorithm = if value.eq_ignore_ascii_case("md5") {
                        Algorithm::Md5
                    } else if value.eq_ignore_ascii_case("sha-256") {
                        Algorithm::Sha256
                    } else {
                        return None;
                    };
                }
                _ => {}
            }
        }
        Some(Challenge {
            realm: realm?,
            nonce: nonce?,
            opaque,
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The credentials value answering this challenge for `method` on `uri`. `nc`: how many
    /// times this nonce has been used (1 for the first answer); `cnonce`: our client nonce.
    pub fn answer(
        &self,
        creds: &Credentials,
        method: &str,
        uri: &[u8],
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hex(&[
            creds.user.as_bytes(),
            self.realm.as_bytes(),
            creds.password.expose().as_bytes(),
        ]);
        let ha2 = alg.hex(&[method.as_bytes(), uri]);
        let uri = String::from_utf8_lossy(uri);
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hex(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ])
        } else {
            alg.hex(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()])
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            creds.user,
            self.realm,
            self.nonce,
            alg.token()
        );
        if self.qop_auth {
            out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque=\"{opaque}\""));
        }
        out
    }
}

/// `name=value` pairs of an auth header, values unquoted (commas inside quotes kept).
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(eq) = rest.find('=') else {
            return out;
        };
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else {
                return out;
            };
            value = quoted[..end].replace("\\\"", "\"");
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: Secret::new(password),
            realm: None,
        }
    }

    #[test]
    fn rfc2617_example_with_qop_auth() {
        // RFC 2617 §3.5 (HTTP, but the arithmetic is the same).
        let c = Challenge::parse(
            br#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let c = c.unwrap();
        assert!(c.qop_auth);
        let v = c.answer(
            &creds("Mufasa", "Circle Of Life"),
            "GET",
            b"/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{v}"
        );
        assert!(v.contains("nc=00000001"), "{v}");
        assert!(
            v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{v}"
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1 (the algorithm RFC 8760 brings to SIP).
        let c = Challenge::parse(
            br#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let v = c.answer(
            &creds("Mufasa", "Circle of Life"),
            "GET",
            b"/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            v.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{v}"
        );
        assert!(v.contains("algorithm=SHA-256"));
    }

    #[test]
    fn without_qop_and_odd_inputs() {
        let c = Challenge::parse(b"Digest realm=\"a,b\", nonce=abc, stale=TRUE").unwrap();
        assert_eq!(c.realm, "a,b");
        assert_eq!(c.nonce, "abc");
        assert!(c.stale && !c.qop_auth);
        let v = c.answer(&creds("u", "p"), "INVITE", b"sip:x@y", 1, "c");
        assert!(!v.contains("qop"));
        assert!(Challenge::parse(b"Basic realm=\"x\"").is_none());
        assert!(Challenge::parse(b"Digest nonce=\"x\"").is_none());
        assert!(Challenge::parse(b"Digest realm=\"x\", nonce=\"y\", algorithm=MD5-sess").is_none());
        assert!(Challenge::parse(b"Digest realm=\"unterminated").is_none());
        assert!(!format!("{:?}", creds("u", "hunter2")).contains("hunter2"));
    }
}
