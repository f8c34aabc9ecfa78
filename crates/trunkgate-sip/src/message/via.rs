//! One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host[:port];branch=...;received=...;rport`.

use super::ParseError;
use super::lex::{
    find_param, is_lws, is_token, params_strict, parse_host, parse_port, trim_end_lws,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ... as written.
    pub transport: &'a [u8],
    /// sent-by host without IPv6 brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// Parameters, leading `;` included; empty when none.
    pub params: &'a [u8],
}

struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn skip_lws(&mut self) -> usize {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&b| is_lws(b)) {
            self.i += 1;
        }
        self.i - start
    }
    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&b| is_token(b)) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or(&[])
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn rest(&self) -> &'a [u8] {
        self.s.get(self.i..).unwrap_or(&[])
    }
}

impl<'a> Via<'a> {
    /// Parse one Via value (not a comma-joined list). Linear whitespace may appear around
    /// `/`, `:` and `;` and across folds. Strict about the rest (RFC 3261 §20.42): protocol
    /// `SIP/2.0`, a transport token, a sent-by host (name, IPv4 or bracketed IPv6) with an
    /// optional port, then only `;name[=value]` parameters — no empty ones (`;;`, a trailing
    /// `;`), no stray text.
    pub fn parse(input: &'a [u8]) -> Result<Via<'a>, ParseError> {
        const ERR: ParseError = ParseError::BadHeaderValue("Via");
        let mut c = Cur { s: input, i: 0 };
        c.skip_lws();
        if !c.token().eq_ignore_ascii_case(b"SIP") {
            return Err(ERR);
        }
        c.skip_lws();
        if !c.eat(b'/') {
            return Err(ERR);
        }
        c.skip_lws();
        if c.token() != b"2.0" {
            return Err(ERR);
        }
        c.skip_lws();
        if !c.eat(b'/') {
            return Err(ERR);
        }
        c.skip_lws();
        let transport = c.token();
        if transport.is_empty() || c.skip_lws() == 0 {
            return Err(ERR);
        }
        let (host, n) = parse_host(c.rest()).ok_or(ERR)?;
        c.i += n;
        c.skip_lws();
        let mut port = None;
        if c.eat(b':') {
            c.skip_lws();
            let start = c.i;
            while c.s.get(c.i).is_some_and(u8::is_ascii_digit) {
                c.i += 1;
            }
            port = Some(parse_port(c.s.get(start..c.i).unwrap_or(&[])).ok_or(ERR)?);
            c.skip_lws();
        }
        let params = trim_end_lws(c.rest());
        if !params_strict(params) {
            return Err(ERR);
        }
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// Whether `input` starts like a Via value a response can be sent back on: `name / version
    /// / transport` tokens (any version: a `505` answers `SIP/7.0` too), whitespace and a
    /// sent-by that is at least one byte. Looser than [`Via::parse`] on purpose: it decides
    /// whether a request that failed to parse can still be answered.
    pub fn answerable(input: &[u8]) -> bool {
        let mut c = Cur { s: input, i: 0 };
        for part in 0..3 {
            c.skip_lws();
            if c.token().is_empty() {
                return false;
            }
            c.skip_lws();
            if part < 2 && !c.eat(b'/') {
                return false;
            }
        }
        c.i > 0
            && c.s.get(c.i - 1).is_some_and(|&b| is_lws(b))
            && !trim_end_lws(c.rest()).is_empty()
    }

    /// Parameter by name (case-insensitive): `Some(None)` for a flag, `Some(Some(v))` for
    /// `name=v` (value raw, trimmed).
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.param(b"branch").flatten()
    }
    pub fn received(&self) -> Option<&'a [u8]> {
        self.param(b"received").flatten()
    }
    /// `Some(None)` for a bare `;rport`, `Some(Some(port))` for `;rport=5060` (an unparsable
    /// value counts as a bare `;rport`).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param(b"rport").map(|v| v.and_then(parse_port))
    }
    /// `received` without IPv6 brackets (RFC 5118 writes `received=[2001:db8::1]`, RFC 3261
    /// grammar allows the bare form too).
    pub fn received_host(&self) -> Option<&'a [u8]> {
        let r = self.received()?;
        match r {
            [b'[', inner @ .., b']'] => Some(inner),
            _ => Some(r),
        }
    }
    /// Transport compared case-insensitively.
    pub fn transport_is(&self, t: &[u8]) -> bool {
        self.transport.eq_ignore_ascii_case(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical() {
        let v =
            Via::parse(b"SIP/2.0/UDP pc33.atlanta.com:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"pc33.atlanta.com");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
        assert_eq!(v.params, b";branch=z9hG4bK776asdhds;rport");
    }

    #[test]
    fn whitespace_everywhere_and_folds() {
        let v = Via::parse(
            b"SIP / 2.0 / TCP\r\n  host.example : 5070 ; BRANCH = z9hG4bKx ;rport=1234 ",
        )
        .unwrap();
        assert_eq!(v.transport, b"TCP");
        assert_eq!(v.host, b"host.example");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some(&b"z9hG4bKx"[..]));
        assert_eq!(v.rport(), Some(Some(1234)));
        assert!(v.transport_is(b"tcp"));
    }

    #[test]
    fn ipv6() {
        let v =
            Via::parse(b"SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK1;received=[2001:db8::9]")
                .unwrap();
        assert_eq!(v.host, b"2001:db8::5");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.received(), Some(&b"[2001:db8::9]"[..]));
        assert_eq!(v.received_host(), Some(&b"2001:db8::9"[..]));
        let v = Via::parse(b"SIP/2.0/TLS [::1];received=::1").unwrap();
        assert_eq!(v.host, b"::1");
        assert_eq!(v.port, None);
        assert_eq!(v.received_host(), Some(&b"::1"[..]));
    }

    #[test]
    fn no_params_no_port() {
        let v = Via::parse(b"sip/2.0/udp 10.0.0.1").unwrap();
        assert_eq!(v.host, b"10.0.0.1");
        assert_eq!(v.params, b"");
        assert_eq!(v.branch(), None);
    }

    #[test]
    fn answerable_needs_protocol_and_sent_by() {
        for good in [
            &b"SIP/2.0/UDP h"[..],
            b"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
            b"SIP / 2.0 / TCP  x;;",
            b"SIP/2.0/UDP 192.0.2.15;;",
            b"SIP/2.0/UDP [2001:db8::1]:5060;branch=x",
        ] {
            assert!(Via::answerable(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/2.0 UDP h",
            b"garbage",
            b"SIP//UDP h",
            b"SIP/2.0/UDPh",
        ] {
            assert!(!Via::answerable(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/3.0/UDP h",
            b"HTTP/2.0/UDP h",
            b"SIP/2.0 UDP h",
            b"SIP/2.0/UDPh",
            b"SIP/2.0/UDP h:99999",
            b"SIP/2.0/UDP h:",
            b"SIP/2.0/UDP h:x",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP h, SIP/2.0/UDP g",
            b"SIP/2.0/UDP h;branch=a b",
            b"SIP/2.0/UDP h;=x",
            b"SIP/2.0/UDP h junk",
            b"SIP/2.0/UDP h;;",
            b"SIP/2.0/UDP h;branch=z9hG4bK1;",
            b"SIP/2.0/UDP h;;branch=z9hG4bK1",
            b"SIP/2.0/UDP h;branch=",
            b"SIP/2.0/UDP h:5060;",
            b"SIP/2.0/UDP 192.0.2.15;;",
            b"SIP/2.0/UDP bad host;branch=z9hG4bK1",
            b"SIP/2.0/UDP h;branch=z9hG4bK1 extra",
        ] {
            assert!(Via::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
