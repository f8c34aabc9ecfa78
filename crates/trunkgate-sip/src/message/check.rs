//! Value checks of the headers the proxy relies on (RFC 3261 §20, §25.1): name-addr
//! lists, Call-ID, CSeq, Content-Type. Each reads one value once; [`super::parse`] calls
//! them from its single pass over the header index.

use super::header::list_elements;
use super::lex::{is_lws, is_token, is_word, params_strict, parse_u32, trim_lws};
use super::{HeaderName, NameAddr, ParseError};
use memchr::memchr;
use std::ops::Range;

/// A name-addr or addr-spec header value ([`NameAddr::parse`]: structure, quotes, brackets,
/// parameters, the URI's shape). Errors name the header.
pub(super) fn name_addr(v: &[u8], name: HeaderName) -> Result<NameAddr<'_>, ParseError> {
    NameAddr::parse(v).map_err(|_| ParseError::BadHeaderValue(name.canonical()))
}

/// Every element of a name-addr list header (Contact, Route, ...): none empty, each
/// well-formed.
pub(super) fn name_addr_list(v: &[u8], name: HeaderName) -> Result<(), ParseError> {
    for r in list_elements(v) {
        let element = v.get(r).unwrap_or(&[]);
        if element.is_empty() {
            return Err(ParseError::BadHeaderValue(name.canonical()));
        }
        name_addr(element, name)?;
    }
    Ok(())
}

/// RFC 3261 `callid = word [ "@" word ]`.
pub(super) fn call_id_valid(v: &[u8]) -> bool {
    let word = |w: &[u8]| !w.is_empty() && w.iter().all(|&c| is_word(c));
    match memchr(b'@', v) {
        Some(at) => word(&v[..at]) && word(&v[at + 1..]),
        None => word(v),
    }
}

/// RFC 3261 `media-type = m-type SLASH m-subtype *(SEMI m-parameter)`.
pub(super) fn media_type_valid(v: &[u8]) -> bool {
    let token_len = |s: &[u8]| s.iter().take_while(|&&c| is_token(c)).count();
    let t = token_len(v);
    let rest = trim_lws(&v[t..]);
    let Some(rest) = rest.strip_prefix(b"/") else {
        return false;
    };
    let rest = trim_lws(rest);
    let st = token_len(rest);
    t > 0 && st > 0 && params_strict(&rest[st..])
}

/// `1*DIGIT LWS Method` → (number, method range relative to `v`).
pub(super) fn parse_cseq(v: &[u8]) -> Option<(u32, Range<usize>)> {
    let nd = v.iter().take_while(|c| c.is_ascii_digit()).count();
    let seq = parse_u32(v.get(..nd)?)?;
    let ws = v.get(nd..)?.iter().take_while(|&&c| is_lws(c)).count();
    if ws == 0 {
        return None;
    }
    let ms = nd + ws;
    let ml = v.get(ms..)?.iter().take_while(|&&c| is_token(c)).count();
    if ml == 0 || ms + ml != v.len() {
        return None;
    }
    Some((seq, ms..ms + ml))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn call_ids() {
        for good in [
            &b"a"[..],
            b"7f3e9a1c-2b4d@10.0.0.5",
            b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            b"[2001:db8::1]",
        ] {
            assert!(call_id_valid(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"a@",
            b"@b",
            b"a@b@c",
            b"a b",
            b"a,b",
            b"a;b",
            b"caf\xc3\xa9",
        ] {
            assert!(!call_id_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn media_types() {
        for good in [
            &b"application/sdp"[..],
            b"multipart/mixed;boundary=7a9cbec02ceef655",
            b"text/plain ; charset = \"utf-8\"",
            b"application / sdp",
        ] {
            assert!(media_type_valid(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"application",
            b"application/",
            b"/sdp",
            b"application/sdp, text/plain",
            b"application/sdp;",
            b"application/sdp;;charset=x",
        ] {
            assert!(!media_type_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn name_addrs_with_their_uris() {
        for bad in [
            &b"<:a@b>"[..],
            b"<1sip:a@b>",
            b"<sip>",
            b"<sip:a]b>",
            b"<sip:[[::1]]>",
        ] {
            assert!(
                name_addr(bad, HeaderName::To).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(name_addr(b"<sip:a@b>", HeaderName::Contact).is_ok());
        assert!(name_addr(b"<tel:+1555>", HeaderName::To).is_ok());
        assert!(name_addr(b"<name:John_Smith>", HeaderName::Contact).is_ok());
        assert_eq!(
            name_addr(b"<sip:a@[2001:db8::1>", HeaderName::Contact).unwrap_err(),
            ParseError::BadHeaderValue("Contact")
        );
        assert!(
            name_addr_list(b"<sip:a@b>, \"x, y\" <sip:c@d>;q=0.5", HeaderName::Contact).is_ok()
        );
        assert!(name_addr_list(b"<sip:a@b>,", HeaderName::Route).is_err());
        assert!(name_addr_list(b"", HeaderName::Route).is_err());
    }

    #[test]
    fn cseqs() {
        assert_eq!(parse_cseq(b"4294967295 INVITE"), Some((u32::MAX, 11..17)));
        assert_eq!(parse_cseq(b"0009\r\n  INVITE"), Some((9, 8..14)));
        for bad in [
            &b"4294967296 INVITE"[..],
            b"1",
            b"INVITE",
            b"1 INVITE x",
            b"-1 BYE",
        ] {
            assert_eq!(parse_cseq(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
