//! Value checks of the headers the proxy relies on (RFC 3261 §20, §25.1): name-addr
//! lists, Call-ID, CSeq, Content-Type. Each reads one value once; [`super::parse`] calls
//! them from its single pass over the header index.

use super::header::list_elements;
use super::lex::{is_lws, is_token, is_word, params_strict, parse_u32, trim_lws};
use super::{HeaderName, NameAddr, ParseError, SipUri};
use memchr::memchr;
use std::ops::Range;

/// A name-addr or addr-spec header value ([`NameAddr::parse`]); a sip, sips or tel URI in
/// it must parse too. Errors name the header.
pub(super) fn name_addr(v: &[u8], name: HeaderName) -> Result<NameAddr<'_>, ParseError> {
    let err = ParseError::BadHeaderValue(name.canonical());
    let na = NameAddr::parse(v).map_err(|_| err.clone())?;
    let scheme = na
        .uri
        .get(..memchr(b':', na.uri).unwrap_or(0))
        .unwrap_or(&[]);
    let known = [&b"sip"[..], b"sips", b"tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    if known && SipUri::parse(na.uri).is_err() {
        return Err(err);
    }
    Ok(na)
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
