//! SIP URIs (RFC 3261 §19.1) and name-addr forms (`"Bob" <sip:bob@host>;tag=x`).

use super::ParseError;
use super::lex::{
    BRACKET, URI, class, closing_quote, find_param, is_lws, is_token, is_uri_char, params_strict,
    parse_host, parse_port, trim_end_lws, trim_lws, trim_start_lws,
};
use memchr::{memchr, memrchr};

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
    /// Parse `sip:`, `sips:` (scheme case-insensitive) or `tel:`. The user part is
    /// everything before the last `@` (it may hold `;` and `?`, RFC 3261 `user-unreserved`);
    /// a `:password` after the user is accepted and not returned. When that reading fails
    /// (an unescaped `@` inside `?headers`, e.g. a Replaces Call-ID), the last `@` before the
    /// first `?` is tried instead. No whitespace, no `<>"`, ASCII only.
    pub fn parse(input: &'a [u8]) -> Result<SipUri<'a>, ParseError> {
        let colon = memchr(b':', input).ok_or(ParseError::BadUri)?;
        let scheme = input.get(..colon).ok_or(ParseError::BadUri)?;
        let rest = input.get(colon + 1..).ok_or(ParseError::BadUri)?;
        if !rest.iter().all(|&b| is_uri_char(b)) {
            return Err(ParseError::BadUri);
        }
        if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
            let at = memrchr(b'@', rest);
            match parse_sip_rest(scheme, rest, at) {
                Ok(u) => Ok(u),
                Err(e) => {
                    let q = memchr(b'?', rest).unwrap_or(rest.len());
                    let at2 = memrchr(b'@', rest.get(..q).unwrap_or(&[]));
                    if at2 != at {
                        parse_sip_rest(scheme, rest, at2)
                    } else {
                        Err(e)
                    }
                }
            }
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            let end = memchr(b'?', rest).unwrap_or(rest.len());
            let (main, headers) = rest.split_at(end);
            let headers = headers.get(1..).unwrap_or(&[]);
            let semi = memchr(b';', main).unwrap_or(main.len());
            let (number, params) = main.split_at(semi);
            if number.is_empty() {
                return Err(ParseError::BadUri);
            }
            Ok(SipUri {
                scheme,
                user: Some(number),
                host: b"",
                port: None,
                params,
                headers,
            })
        } else {
            Err(ParseError::BadUri)
        }
    }

    /// `Some(None)` for a flag parameter such as `;lr`, `Some(Some(v))` for `;name=v`.
    /// Names compare case-insensitively.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }
    pub fn is_ipv6(&self) -> bool {
        self.host.contains(&b':')
    }
    /// `sips:` (case-insensitive).
    pub fn is_sips(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"sips")
    }
    /// `tel:` (case-insensitive).
    pub fn is_tel(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"tel")
    }
    /// Loose-routing flag `;lr`.
    pub fn is_loose_route(&self) -> bool {
        self.param(b"lr").is_some()
    }
    /// `;transport=` value.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param(b"transport").flatten()
    }
}

/// Is `s` a URI scheme followed by `:` (RFC 3986 `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`)?
pub(crate) fn has_scheme(s: &[u8]) -> bool {
    let Some(colon) = memchr(b':', s) else {
        return false;
    };
    let scheme = s.get(..colon).unwrap_or(&[]);
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn parse_sip_rest<'a>(
    scheme: &'a [u8],
    rest: &'a [u8],
    at: Option<usize>,
) -> Result<SipUri<'a>, ParseError> {
    const ERR: ParseError = ParseError::BadUri;
    let (user, hp) = match at {
        Some(a) => {
            let userinfo = rest.get(..a).ok_or(ERR)?;
            let user = userinfo
                .get(..memchr(b':', userinfo).unwrap_or(userinfo.len()))
                .ok_or(ERR)?;
            if user.is_empty() {
                return Err(ERR);
            }
            (Some(user), rest.get(a + 1..).ok_or(ERR)?)
        }
        None => (None, rest),
    };
    let (host, mut i) = parse_host(hp).ok_or(ERR)?;
    let mut port = None;
    if hp.get(i) == Some(&b':') {
        let start = i + 1;
        let mut end = start;
        while hp.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        port = Some(parse_port(hp.get(start..end).unwrap_or(&[])).ok_or(ERR)?);
        i = end;
    }
    let mut params: &[u8] = b"";
    if hp.get(i) == Some(&b';') {
        let tail = hp.get(i..).unwrap_or(&[]);
        let end = memchr(b'?', tail).unwrap_or(tail.len());
        params = tail.get(..end).unwrap_or(&[]);
        i += end;
    }
    let mut headers: &[u8] = b"";
    if hp.get(i) == Some(&b'?') {
        headers = hp.get(i + 1..).unwrap_or(&[]);
        i = hp.len();
    }
    if i != hp.len() || params.contains(&b'@') {
        return Err(ERR);
    }
    Ok(SipUri {
        scheme,
        user,
        host,
        port,
        params,
        headers,
    })
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
    /// Leading/trailing linear whitespace is ignored. `display` is the display name without
    /// its quotes (escapes left as written) or the unquoted token run, trimmed; `None` when
    /// absent. The URI must have a `scheme:`; it is not parsed further (use
    /// [`SipUri::parse`] on `uri`).
    ///
    /// Strict, as RFC 3261 §25.1 writes it: an unquoted display name is tokens and
    /// whitespace only (`Bell, Alexander <sip:...>` fails), a quoted one must close; nothing
    /// but the URI between `<` and `>` (no whitespace: `< sip:a@b >` fails); a bare addr-spec
    /// holds no `,` or `?` (such a URI must be bracketed, §20); the header parameters are
    /// `;name[=value]` with no empty ones (`;;tag=1` fails).
    pub fn parse(input: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        const ERR: ParseError = ParseError::BadUri;
        let s = trim_lws(input);
        let na = if s.first() == Some(&b'"') {
            let close = closing_quote(s).ok_or(ERR)?;
            let display = s.get(1..close).ok_or(ERR)?;
            let rest = trim_start_lws(s.get(close + 1..).ok_or(ERR)?);
            if rest.first() != Some(&b'<') {
                return Err(ERR);
            }
            let (uri, params) = angle(rest)?;
            NameAddr {
                display: Some(display),
                uri,
                params,
            }
        } else if let Some(lt) = memchr(b'<', s) {
            let display = trim_lws(s.get(..lt).ok_or(ERR)?);
            if !display.iter().all(|&b| is_token(b) || is_lws(b)) {
                return Err(ERR);
            }
            let (uri, params) = angle(s.get(lt..).ok_or(ERR)?)?;
            NameAddr {
                display: (!display.is_empty()).then_some(display),
                uri,
                params,
            }
        } else {
            let semi = memchr(b';', s).unwrap_or(s.len());
            let (uri, params) = s.split_at(semi);
            let uri = trim_end_lws(uri);
            if !uri_shape(uri) || uri.iter().any(|&b| b == b',' || b == b'?') {
                return Err(ERR);
            }
            NameAddr {
                display: None,
                uri,
                params,
            }
        };
        if !params_strict(na.params) {
            return Err(ERR);
        }
        Ok(na)
    }
    /// Header parameter value (`tag`, `expires`, ...); names compare case-insensitively.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }
    /// Parse the URI (`sip:`, `sips:`, `tel:`).
    pub fn sip_uri(&self) -> Result<SipUri<'a>, ParseError> {
        SipUri::parse(self.uri)
    }
}

/// The shape of a URI inside a header, in one pass: a scheme (`ALPHA *(ALPHA / DIGIT / + - .)`)
/// and `:`, then visible ASCII other than `<>"` and whitespace, with IPv6 brackets balanced
/// and not nested. The URI is not parsed further: the proxy parses the ones it uses
/// (Contact, Route, Record-Route) when it uses them.
fn uri_shape(uri: &[u8]) -> bool {
    let Some(colon) = memchr(b':', uri) else {
        return false;
    };
    let (scheme, rest) = uri.split_at(colon);
    if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
        || !scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return false;
    }
    // One table lookup per byte; brackets are rare and looked at only when present.
    let mut brackets = false;
    for &b in rest {
        let c = class(b);
        if c & URI == 0 {
            return false;
        }
        brackets |= c & BRACKET != 0;
    }
    !brackets || brackets_balanced(rest)
}

/// `[`…`]` pairs, not nested, none left open or closed without opening.
fn brackets_balanced(s: &[u8]) -> bool {
    let mut open = false;
    for &b in s {
        match b {
            b'[' if !open => open = true,
            b']' if open => open = false,
            b'[' | b']' => return false,
            _ => {}
        }
    }
    !open
}

/// `s` starts with `<`: returns (uri, params).
fn angle(s: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    const ERR: ParseError = ParseError::BadUri;
    let gt = memchr(b'>', s).ok_or(ERR)?;
    let uri = s.get(1..gt).ok_or(ERR)?;
    if !uri_shape(uri) {
        return Err(ERR);
    }
    let params = trim_start_lws(s.get(gt + 1..).ok_or(ERR)?);
    if !params.is_empty() && params.first() != Some(&b';') {
        return Err(ERR);
    }
    Ok((uri, params))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_full() {
        let u = SipUri::parse(b"sips:alice:secret@atlanta.com:5061;transport=tls;lr?subject=x&h=y")
            .unwrap();
        assert_eq!(u.scheme, b"sips");
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.host, b"atlanta.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, b";transport=tls;lr");
        assert_eq!(u.headers, b"subject=x&h=y");
        assert_eq!(u.param(b"LR"), Some(None));
        assert_eq!(u.transport(), Some(&b"tls"[..]));
        assert!(u.is_sips());
        assert!(u.is_loose_route());
    }

    #[test]
    fn sip_uri_forms() {
        let u = SipUri::parse(b"SIP:10.0.0.1").unwrap();
        assert_eq!((u.user, u.host, u.port), (None, &b"10.0.0.1"[..], None));
        let u = SipUri::parse(b"sip:bob@[2001:db8::1]:5080;maddr=[2001:db8::2]").unwrap();
        assert_eq!(u.host, b"2001:db8::1");
        assert!(u.is_ipv6());
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.param(b"maddr"), Some(Some(&b"[2001:db8::2]"[..])));
        let u = SipUri::parse(b"sip:+15551234;npdi;rn=+1555@gw.example;user=phone").unwrap();
        assert_eq!(u.user, Some(&b"+15551234;npdi;rn=+1555"[..]));
        assert_eq!(u.host, b"gw.example");
        assert_eq!(u.param(b"user"), Some(Some(&b"phone"[..])));
        // user with '?' and '@' in the right place
        let u = SipUri::parse(b"sip:a?b@host").unwrap();
        assert_eq!(u.user, Some(&b"a?b"[..]));
        // unescaped '@' in headers: fallback reading
        let u = SipUri::parse(b"sip:bob@b.example?Replaces=abc@10.0.0.1%3Bto-tag%3D1").unwrap();
        assert_eq!(u.user, Some(&b"bob"[..]));
        assert_eq!(u.host, b"b.example");
        assert_eq!(u.headers, b"Replaces=abc@10.0.0.1%3Bto-tag%3D1");
    }

    #[test]
    fn tel_uri() {
        let u = SipUri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.host, b"");
        assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
        assert_eq!(u.param(b"phone-context"), Some(Some(&b"example.com"[..])));
        assert!(u.is_tel());
    }

    #[test]
    fn uri_rejects() {
        for bad in [
            &b""[..],
            b"sip",
            b"sip:",
            b"http://x",
            b"sip:@host",
            b"sip:bob@",
            b"sip:host:99999",
            b"sip:host:",
            b"sip:host junk",
            b"sip:ho st",
            b"sip:[::1",
            b"sip:host>",
            b"tel:",
            b"sip:h\xff",
        ] {
            assert!(
                SipUri::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(b"\"Bob \\\"B\\\" <x>\" <sip:bob@b.example>;tag=a6c85cf").unwrap();
        assert_eq!(n.display, Some(&b"Bob \\\"B\\\" <x>"[..]));
        assert_eq!(n.uri, b"sip:bob@b.example");
        assert_eq!(n.tag(), Some(&b"a6c85cf"[..]));

        let n = NameAddr::parse(b"  Bob  Smith <sip:bob@b;lr> ; tag = 1 ; expires=60 ").unwrap();
        assert_eq!(
            NameAddr::parse(b"caller<sip:c@example.com>;tag=323")
                .unwrap()
                .display,
            Some(&b"caller"[..])
        );
        let n2 = NameAddr::parse(b"token1~` token2'+_ token3*%!.- <sip:m@example.com>;p''~+*_!.-%=\"\xd1\x80\";tag=_t~1'+`*%!-.").unwrap();
        assert_eq!(n2.tag(), Some(&b"_t~1'+`*%!-."[..]));
        assert_eq!(n.display, Some(&b"Bob  Smith"[..]));
        assert_eq!(n.uri, b"sip:bob@b;lr");
        assert_eq!(n.tag(), Some(&b"1"[..]));
        assert_eq!(n.param(b"EXPIRES"), Some(Some(&b"60"[..])));

        let n = NameAddr::parse(b"<sip:alice@a>").unwrap();
        assert_eq!((n.display, n.params), (None, &b""[..]));
        assert_eq!(n.sip_uri().unwrap().host, b"a");

        let n = NameAddr::parse(b"sip:x@y;tag=1").unwrap();
        assert_eq!(n.uri, b"sip:x@y");
        assert_eq!(n.params, b";tag=1");
        assert_eq!(n.tag(), Some(&b"1"[..]));

        let n = NameAddr::parse(b"tel:+1555").unwrap();
        assert_eq!(n.tag(), None);
    }

    #[test]
    fn name_addr_rejects() {
        for bad in [
            &b""[..],
            b"<>",
            b"\"unterminated <sip:a@b>",
            b"\"x\" sip:a@b",
            b"<sip:a@b",
            b"<sip:a@b> junk",
            b"nohost",
            b"<nocolon>",
            b"a\"b <sip:x@y>",
            b"\"Mr. J. User <sip:j.user@example.com>",
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"\"Watson, Thomas\" < sip:t.watson@example.org >",
            b"<sip:a@b >",
            b"sip:caller@example.net;;tag=134161461246",
            b"\"Joe\" <sip:joe@example.org>;;;;",
            b"<sip:a@b>;tag=1;",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"sip:a@b,sip:c@d",
            b"<sip:a@b>, <sip:c@d>",
            b"<sip:a@b>>",
            b"<sip:a<b>",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
