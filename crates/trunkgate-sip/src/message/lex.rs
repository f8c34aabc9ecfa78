//! Small byte-level helpers shared by the message parsers (private).

use memchr::memchr;

/// Linear whitespace as the value parsers see it: SP, HTAB, CR, LF (folds included).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    CLASS[b as usize] & LWS != 0
}

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

/// RFC 3261 `word` characters (Call-ID): `token` plus `( ) < > : \ " / [ ] ? { }`.
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}

const TOKEN: u8 = 1;
const LWS: u8 = 2;
const WORD: u8 = 4;
/// Visible ASCII other than `<`, `>`, `"` ([`is_uri_char`]).
pub(crate) const URI: u8 = 8;
/// `[` or `]`.
pub(crate) const BRACKET: u8 = 16;

/// The class bits of a byte (`TOKEN`, `LWS`, `WORD`, `URI`, `BRACKET`).
#[inline]
pub(crate) fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// Byte classes: one table lookup instead of a chain of comparisons.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[i] |= TOKEN | WORD;
        }
        if matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        ) {
            t[i] |= WORD;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            t[i] |= LWS;
        }
        if b >= 0x21 && b <= 0x7e && !matches!(b, b'<' | b'>' | b'"') {
            t[i] |= URI;
        }
        if matches!(b, b'[' | b']') {
            t[i] |= BRACKET;
        }
        i += 1;
    }
    t
};

/// `SIP/` 1*DIGIT "." 1*DIGIT (RFC 3261 §7.1 SIP-Version; `SIP` in any case).
pub(crate) fn is_sip_version(v: &[u8]) -> bool {
    let Some(n) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .and_then(|_| v.get(4..))
    else {
        return false;
    };
    let dot = n.iter().position(|&c| c == b'.').unwrap_or(0);
    let (major, minor) = (&n[..dot], n.get(dot + 1..).unwrap_or(&[]));
    !major.is_empty()
        && !minor.is_empty()
        && major.iter().all(u8::is_ascii_digit)
        && minor.iter().all(u8::is_ascii_digit)
}

#[inline]
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    trim_end_lws(trim_start_lws(s))
}

pub(crate) fn trim_start_lws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_lws(b)).count();
    s.get(n..).unwrap_or(&[])
}

pub(crate) fn trim_end_lws(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| is_lws(b)).count();
    s.get(..s.len() - n).unwrap_or(&[])
}

/// Parse an unsigned decimal made only of digits (no sign, no whitespace), with overflow check.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

pub(crate) fn parse_port(s: &[u8]) -> Option<u16> {
    if s.len() > 5 {
        return None;
    }
    parse_u64(s).and_then(|n| u16::try_from(n).ok())
}

/// Host at the start of `s`: `[v6]` (returned without brackets) or a hostname / IPv4
/// (`alnum - . _`). Returns the host and the number of bytes consumed.
pub(crate) fn parse_host(s: &[u8]) -> Option<(&[u8], usize)> {
    if s.first() == Some(&b'[') {
        let close = memchr(b']', s)?;
        let inner = s.get(1..close)?;
        if inner.is_empty()
            || !inner.contains(&b':')
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        Some((inner, close + 1))
    } else {
        let n = s
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            .count();
        if n == 0 {
            return None;
        }
        Some((s.get(..n)?, n))
    }
}

/// Visible ASCII that may appear unquoted inside a URI (no space, controls, `<`, `>`, `"`).
#[inline]
pub(crate) fn is_uri_char(b: u8) -> bool {
    CLASS[b as usize] & URI != 0
}

/// Iterator over `;name[=value]` parameters (quote-aware; names and values trimmed; the
/// value is returned raw, quotes included).
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Params { rest: raw }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest;
            if s.is_empty() {
                return None;
            }
            let s = if s.first() == Some(&b';') {
                s.get(1..).unwrap_or(&[])
            } else {
                s
            };
            let mut i = 0;
            let mut in_quote = false;
            while let Some(&b) = s.get(i) {
                match b {
                    b'"' => in_quote = !in_quote,
                    b'\\' if in_quote => i += 1,
                    b';' if !in_quote => break,
                    _ => {}
                }
                i += 1;
            }
            let end = i.min(s.len());
            let (piece, rest) = s.split_at(end);
            self.rest = rest;
            let piece = trim_lws(piece);
            if piece.is_empty() {
                continue;
            }
            return Some(match memchr(b'=', piece) {
                Some(eq) => (
                    trim_lws(piece.get(..eq).unwrap_or(&[])),
                    Some(trim_lws(piece.get(eq + 1..).unwrap_or(&[]))),
                ),
                None => (piece, None),
            });
        }
    }
}

/// Case-insensitive lookup in a raw parameter list.
pub(crate) fn find_param<'a>(raw: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(raw)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Strict check of a raw parameter list (RFC 3261 `*( SEMI generic-param )`): empty, or
/// `;` separated pieces, each `token [ EQUAL gen-value ]` where gen-value is a token-ish run
/// (token characters plus `:[]` for IPv6 `received=`/`maddr=`) or one whole quoted string.
/// Linear whitespace may surround `;` and `=`. An empty piece (`;;`, a trailing `;`) fails:
/// those are the "stray separators" RFC 4475 §3.1.2.1 wants refused.
pub(crate) fn params_strict(raw: &[u8]) -> bool {
    let raw = trim_lws(raw);
    let Some(rest) = raw.strip_prefix(b";") else {
        return raw.is_empty();
    };
    let mut s = rest;
    loop {
        let mut i = 0;
        let mut in_quote = false;
        while let Some(&b) = s.get(i) {
            match b {
                b'"' => in_quote = !in_quote,
                b'\\' if in_quote => i += 1,
                b';' if !in_quote => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(s.len());
        if !param_valid(trim_lws(s.get(..end).unwrap_or(&[]))) {
            return false;
        }
        match s.get(end + 1..) {
            Some(next) if end < s.len() => s = next,
            _ => return true,
        }
    }
}

/// One `name[=value]` piece, already trimmed.
fn param_valid(piece: &[u8]) -> bool {
    let (name, value) = match memchr(b'=', piece) {
        Some(eq) => (
            trim_lws(piece.get(..eq).unwrap_or(&[])),
            Some(trim_lws(piece.get(eq + 1..).unwrap_or(&[]))),
        ),
        None => (piece, None),
    };
    is_token_str(name)
        && match value {
            None => true,
            Some(v) if v.first() == Some(&b'"') => closing_quote(v) == Some(v.len() - 1),
            Some(v) => {
                !v.is_empty()
                    && v.iter()
                        .all(|&b| is_token(b) || matches!(b, b':' | b'[' | b']'))
            }
        }
}

/// Index of the closing `"` of a quoted string whose opening quote is at `s[0]`.
pub(crate) fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Append a decimal number.
pub(crate) fn put_u64(out: &mut bytes::BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or(&[]));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn params_iterate_and_find() {
        let raw = b";branch=z9hG4bK1 ; RPORT ;received = [2001:db8::1];x=\"a;b\"";
        let v: Vec<_> = Params::new(raw).collect();
        assert_eq!(v.len(), 4);
        assert_eq!(find_param(raw, b"rport"), Some(None));
        assert_eq!(
            find_param(raw, b"received"),
            Some(Some(&b"[2001:db8::1]"[..]))
        );
        assert_eq!(find_param(raw, b"x"), Some(Some(&b"\"a;b\""[..])));
        assert!(params_strict(raw));
        assert!(params_strict(b""));
        assert!(params_strict(b" ;\r\n  tag = 98asjd8"));
        assert!(params_strict(b";q = 0.33;x=\"a\\\"b;c\""));
        for bad in [
            &b";a b=c"[..],
            b";;tag=1",
            b";tag=1;",
            b";tag=1;;",
            b";",
            b"tag=1",
            b";=x",
            b";x=",
            b";x=\"open",
            b";x=\"a\"b",
            b";x=a,b",
        ] {
            assert!(!params_strict(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(is_word(b'<') && is_word(b'"') && is_word(b'a') && !is_word(b'@'));
        assert!(!is_word(b',') && !is_word(b';') && !is_word(b' '));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b""), None);
        let mut b = bytes::BytesMut::new();
        put_u64(&mut b, 0);
        put_u64(&mut b, 1234567);
        put_u64(&mut b, u64::MAX);
        assert_eq!(&b[..], b"0123456718446744073709551615");
    }

    #[test]
    fn hosts() {
        assert_eq!(parse_host(b"[::1]:5060"), Some((&b"::1"[..], 5)));
        assert_eq!(parse_host(b"a.b-c:1"), Some((&b"a.b-c"[..], 5)));
        assert_eq!(parse_host(b"[]"), None);
        assert_eq!(parse_host(b":"), None);
        assert_eq!(parse_host(b"[1.2.3.4]"), None);
    }
}
