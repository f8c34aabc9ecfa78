//! The line level of a message: where the start line ends, the start line itself
//! (request or status line, RFC 3261 §7.1, §7.2), and the header index (one memchr pass,
//! offsets only, folds joined, RFC 3261 §7.3.1).

use super::lex::{is_lws, is_sip_version, is_token, is_token_str};
use super::uri::has_scheme;
use super::{HeaderEntry, HeaderName, Method, ParseError, SipUri, StartLine};
use memchr::{memchr, memrchr};
use smallvec::SmallVec;

#[inline]
fn u32_of(n: usize) -> u32 {
    // Callers have checked buf.len() <= u32::MAX.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// End of the start line (before its CR, if any) and the offset of the first header line.
pub(super) fn start_line_bounds(
    b: &[u8],
    start_offset: usize,
) -> Result<(usize, usize), ParseError> {
    let sl_lf = memchr(b'\n', b.get(start_offset..).unwrap_or(&[]))
        .map(|i| start_offset + i)
        .ok_or(ParseError::BadStartLine)?;
    let sl_end = if sl_lf > start_offset && b.get(sl_lf - 1) == Some(&b'\r') {
        sl_lf - 1
    } else {
        sl_lf
    };
    Ok((sl_end, sl_lf + 1))
}

/// Index the header lines from `pos` to the blank line (or the end of the buffer); returns
/// the index and the body offset. `lenient`: a line that is not `name: value` (or a fold
/// with nothing before it) is left out instead of failing, and indexing stops at
/// `max_headers` instead of failing.
pub(super) fn index_headers(
    b: &[u8],
    mut pos: usize,
    max_headers: usize,
    lenient: bool,
) -> Result<(SmallVec<[HeaderEntry; 24]>, usize), ParseError> {
    let len = b.len();
    let mut headers: SmallVec<[HeaderEntry; 24]> = SmallVec::new();
    // In lenient mode, whether the last line was left out (its folds go with it).
    let mut skipped = false;
    let body_start = loop {
        if pos >= len {
            break len;
        }
        // `lf`: where the line ends (its LF, or the buffer's end for a last line without
        // one, lenient only); `next`: where the next line starts.
        let (lf, next) = match memchr(b'\n', &b[pos..]) {
            Some(i) => (pos + i, pos + i + 1),
            None if lenient => (len, len),
            None => return Err(ParseError::BadHeader(pos)),
        };
        // pos <= lf <= len
        let mut eol = lf;
        if eol > pos && b[eol - 1] == b'\r' {
            eol -= 1;
        }
        if eol == pos {
            break next;
        }
        let first = b[pos];
        if first == b' ' || first == b'\t' {
            // Continuation of the previous header.
            let last = match headers.last_mut() {
                Some(last) if !skipped => last,
                _ if lenient => {
                    pos = next;
                    continue;
                }
                _ => return Err(ParseError::BadHeader(pos)),
            };
            last.line_end = u32_of(next);
            let mut a = pos;
            let mut z = eol;
            while a < z && is_lws(b[a]) {
                a += 1;
            }
            while z > a && is_lws(b[z - 1]) {
                z -= 1;
            }
            if a < z {
                if last.value_start == last.value_end {
                    last.value_start = u32_of(a);
                }
                last.value_end = u32_of(z);
            }
            pos = next;
            continue;
        }
        let line = &b[pos..eol];
        // name = token, then optional SP/HTAB, then ':' (one forward pass, no memchr:
        // names are short).
        let name_end = line.iter().take_while(|&&c| is_token(c)).count();
        let colon = name_end
            + line[name_end..]
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
        if name_end == 0 || line.get(colon) != Some(&b':') {
            if lenient {
                skipped = true;
                pos = next;
                continue;
            }
            return Err(ParseError::BadHeader(pos));
        }
        let name = &line[..name_end];
        let mut vs = pos + colon + 1;
        while vs < eol && is_lws(b[vs]) {
            vs += 1;
        }
        let mut ve = eol;
        while ve > vs && is_lws(b[ve - 1]) {
            ve -= 1;
        }
        if headers.len() >= max_headers {
            if lenient {
                break len;
            }
            return Err(ParseError::TooManyHeaders);
        }
        skipped = false;
        headers.push(HeaderEntry {
            name: HeaderName::from_bytes(name),
            line_start: u32_of(pos),
            line_end: u32_of(next),
            value_start: u32_of(vs),
            value_end: u32_of(ve),
        });
        pos = next;
    };
    Ok((headers, body_start))
}

pub(super) fn parse_start_line(b: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
    const ERR: ParseError = ParseError::BadStartLine;
    let line = b.get(s..e).ok_or(ERR)?;
    if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"SIP/2.0 ") {
        let rest = &line[8..];
        let digits = rest.get(..3).ok_or(ERR)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ERR);
        }
        let code = digits
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(ERR);
        }
        let reason = match rest.get(3) {
            None => e..e,
            Some(b' ') => s + 12..e,
            Some(_) => return Err(ERR),
        };
        if b.get(reason.clone())
            .is_none_or(|r| r.iter().any(|&c| c < 0x20 && c != b'\t'))
        {
            return Err(ERR);
        }
        return Ok(StartLine::Response { code, reason });
    }
    let sp1 = memchr(b' ', line).ok_or(ERR)?;
    let sp2 = memrchr(b' ', line).ok_or(ERR)?;
    if sp2 <= sp1 + 1 {
        return Err(ERR);
    }
    let method = &line[..sp1];
    let uri = &line[sp1 + 1..sp2];
    let version = &line[sp2 + 1..];
    if !is_token_str(method) {
        return Err(ERR);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        // Another `SIP/x.y` is another version: 505.
        return Err(if is_sip_version(version) {
            ParseError::BadVersion
        } else {
            ERR
        });
    }
    // Extra spaces around the URI are a malformed line; anything else not visible ASCII
    // inside it (an embedded space, a control, a non-ASCII byte) a malformed URI.
    if uri.first() == Some(&b' ') || uri.last() == Some(&b' ') {
        return Err(ERR);
    }
    if !uri.iter().all(|&c| (0x21..=0x7e).contains(&c)) || !has_scheme(uri) {
        return Err(ParseError::BadUri);
    }
    let scheme_is = |p: &[u8]| {
        uri.get(..p.len())
            .is_some_and(|u| u.eq_ignore_ascii_case(p))
    };
    if scheme_is(b"sip:") || scheme_is(b"sips:") {
        if !SipUri::parse(uri)?.headers.is_empty() {
            return Err(ParseError::BadUri);
        }
    } else if scheme_is(b"tel:") {
        SipUri::parse(uri)?;
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        method_token: s..s + sp1,
        uri: s + sp1 + 1..s + sp2,
    })
}
