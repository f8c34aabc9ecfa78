//! One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host[:port];branch=...;received=...;rport`.

use super::ParseError;

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

impl<'a> Via<'a> {
    /// Parse one Via value (not a comma-joined list). Linear whitespace may appear around
    /// `/`, `:` and `;` and across folds.
    pub fn parse(input: &'a [u8]) -> Result<Via<'a>, ParseError> {
        todo!("{input:?}")
    }
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        todo!("{name:?}")
    }
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.param(b"branch").flatten()
    }
    pub fn received(&self) -> Option<&'a [u8]> {
        self.param(b"received").flatten()
    }
    /// `Some(None)` for a bare `;rport`, `Some(Some(port))` for `;rport=5060`.
    pub fn rport(&self) -> Option<Option<u16>> {
        todo!()
    }
}
