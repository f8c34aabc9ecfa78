//! SIP URIs (RFC 3261 §19.1) and name-addr forms (`"Bob" <sip:bob@host>;tag=x`).

use super::ParseError;

/// A borrowed view of a `sip:`/`sips:` URI (or `tel:`, which has no host: host is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub scheme: &'a [u8],
    pub user: Option<&'a [u8]>,
    /// Host without IPv6 brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// Everything from the first `;` after the host up to `?` or the end, `;` included.
    pub params: &'a [u8],
    /// Everything after `?`, empty when absent.
    pub headers: &'a [u8],
}

impl<'a> SipUri<'a> {
    pub fn parse(input: &'a [u8]) -> Result<SipUri<'a>, ParseError> {
        todo!("{input:?}")
    }
    /// `Some(None)` for a flag parameter such as `;lr`, `Some(Some(v))` for `;name=v`.
    /// Names compare case-insensitively.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        todo!("{name:?}")
    }
    pub fn is_ipv6(&self) -> bool {
        self.host.contains(&b':')
    }
}

/// `[display-name] <uri> *(;param)` or a bare `addr-spec *(;param)` (in which case the
/// URI's own `;params` are header params, per RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a [u8]>,
    /// The URI without angle brackets.
    pub uri: &'a [u8],
    /// Header parameters after the URI, leading `;` included; empty when none.
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    pub fn parse(input: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        todo!("{input:?}")
    }
    /// Header parameter value (`tag`, `expires`, ...); names compare case-insensitively.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        todo!("{name:?}")
    }
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }
}
