//! Stream framing (RFC 3261 §18.3): where one message ends in the bytes received on a
//! TCP/TLS connection, and RFC 5626 keepalives. Only Content-Length is interpreted here; the
//! rest of a frame is [`SipMessage::parse`](super::SipMessage::parse)'s business, so one bad
//! message does not desynchronise the stream.

use super::lex::{is_sip_version, is_token, parse_u64, trim_lws};
use super::{Limits, ParseError};
use memchr::memchr;

/// A Content-Length value: `1*DIGIT` (surrounding whitespace allowed), within `usize`.
pub(crate) fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
    parse_u64(trim_lws(v))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(ParseError::BadHeaderValue("Content-Length"))
}

/// Stream framing (TCP/TLS, RFC 3261 §18.3): given the bytes received so far on a
/// connection, return `Ok(Some(n))` when the first `n` bytes are one whole message
/// (headers up to the blank line plus Content-Length body bytes; a missing Content-Length
/// on a stream counts as 0), `Ok(None)` when more bytes are needed, or an error when the
/// head is already over `limits.max_message_size` or Content-Length is malformed.
/// Leading CRLFs (RFC 5626 keepalives) must be removed first with [`skip_keepalive`]
/// (a buffer starting with CR or LF is refused with [`ParseError::BadStartLine`]).
///
/// Only the Content-Length line is interpreted (full or compact name, any case, folded,
/// whitespace before the colon); other header syntax errors are left to
/// [`SipMessage::parse`], so one bad message does not desynchronise the stream.
/// Several Content-Length headers with different values are [`ParseError::BadContentLength`];
/// head + body over the limit is [`ParseError::TooLarge`].
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    match buf.first() {
        None => return Ok(None),
        Some(b'\r' | b'\n') => return Err(ParseError::BadStartLine),
        Some(_) => {}
    }
    let need_more = || {
        if buf.len() > limits.max_message_size {
            Err(ParseError::TooLarge(buf.len()))
        } else {
            Ok(None)
        }
    };
    let Some(first_lf) = memchr(b'\n', buf) else {
        return need_more();
    };
    // A stream whose first line is not a SIP start line has lost its framing (or was never
    // SIP): refuse it so the connection is closed rather than resynchronised by guesswork.
    let start_line = buf.get(..first_lf).unwrap_or(&[]);
    let start_line = start_line.strip_suffix(b"\r").unwrap_or(start_line);
    // A status line, or a request line ending in a SIP version (another version than 2.0
    // is framed too, so that it can be answered 505).
    let is_sip = (start_line.len() >= 8 && start_line[..8].eq_ignore_ascii_case(b"SIP/2.0 "))
        || memchr::memrchr(b' ', start_line)
            .and_then(|sp| start_line.get(sp + 1..))
            .is_some_and(is_sip_version);
    if !is_sip {
        return Err(ParseError::BadStartLine);
    }
    let mut cl: Option<usize> = None;
    // Value range of the Content-Length header being collected (extended by folds).
    let mut cur: Option<(usize, usize)> = None;
    let mut finish = |cur: &mut Option<(usize, usize)>| -> Result<(), ParseError> {
        if let Some((a, z)) = cur.take() {
            let n = parse_content_length(buf.get(a..z).unwrap_or(&[]))?;
            if cl.is_some_and(|c| c != n) {
                return Err(ParseError::BadContentLength);
            }
            cl = Some(n);
        }
        Ok(())
    };
    let mut pos = first_lf + 1;
    let head_end = loop {
        if pos > limits.max_message_size {
            return Err(ParseError::TooLarge(pos));
        }
        let Some(rest) = buf.get(pos..) else {
            return need_more();
        };
        let Some(i) = memchr(b'\n', rest) else {
            return need_more();
        };
        let lf = pos + i;
        let line = &rest[..i];
        match line.first() {
            None => break lf + 1,
            Some(b'\r') if line.len() == 1 => break lf + 1,
            Some(b' ' | b'\t') => {
                if let Some((_, z)) = cur.as_mut() {
                    *z = lf;
                }
            }
            Some(&c) => {
                finish(&mut cur)?;
                // Only `l` / `Content-Length` matter here.
                if matches!(c, b'l' | b'L' | b'c' | b'C') {
                    let n = line.iter().take_while(|&&c| is_token(c)).count();
                    let colon = n + line[n..]
                        .iter()
                        .take_while(|&&c| c == b' ' || c == b'\t')
                        .count();
                    let name = &line[..n];
                    let is_cl = (n == 1 || name.eq_ignore_ascii_case(b"content-length"))
                        && line.get(colon) == Some(&b':')
                        && (n != 1 || c | 0x20 == b'l');
                    if is_cl {
                        cur = Some((pos + colon + 1, lf));
                    }
                }
            }
        }
        pos = lf + 1;
    };
    finish(&mut cur)?;
    if head_end > limits.max_message_size {
        return Err(ParseError::TooLarge(head_end));
    }
    let total = head_end
        .checked_add(cl.unwrap_or(0))
        .ok_or(ParseError::BadContentLength)?;
    if total > limits.max_message_size {
        return Err(ParseError::TooLarge(total));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Number of leading CR/LF bytes (keepalive pings `\r\n\r\n`, pongs `\r\n`).
pub fn skip_keepalive(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::message::SipMessage;
    use bytes::Bytes;

    fn minimal(extra: &str) -> String {
        format!(
            "OPTIONS sip:b@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
             From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>\r\nCall-ID: c1\r\n\
             CSeq: 1 OPTIONS\r\n{extra}\r\n"
        )
    }

    #[test]
    fn frame_len_cases() {
        let lim = Limits::default();
        let msg = (minimal("Content-Length: 5\r\n") + "hello").into_bytes();
        let n = msg.len();
        // Partial head.
        for cut in [1, 10, n - 8, n - 7, n - 6] {
            assert_eq!(frame_len(&msg[..cut], &lim), Ok(None), "cut {cut}");
        }
        // Partial body.
        assert_eq!(frame_len(&msg[..n - 1], &lim), Ok(None));
        assert_eq!(frame_len(&msg, &lim), Ok(Some(n)));
        // Two messages back to back, with a keepalive between.
        let mut two = msg.clone();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(minimal("").as_bytes());
        assert_eq!(frame_len(&two, &lim), Ok(Some(n)));
        let rest = &two[n..];
        let k = skip_keepalive(rest);
        assert_eq!(k, 4);
        let second = &rest[k..];
        assert_eq!(frame_len(second, &lim), Ok(Some(second.len())));
        assert!(SipMessage::parse(Bytes::copy_from_slice(second), &lim).is_ok());
        // Keepalives.
        assert_eq!(skip_keepalive(b"\r\n\r\nINVITE"), 4);
        assert_eq!(skip_keepalive(b"\r\n"), 2);
        assert_eq!(skip_keepalive(b""), 0);
        assert_eq!(frame_len(b"", &lim), Ok(None));
        // Another SIP version is framed (to be answered 505); HTTP is not.
        let s = b"OPTIONS sip:a SIP/7.0\r\nX: y\r\n\r\n";
        assert_eq!(frame_len(s, &lim), Ok(Some(s.len())));
        let s = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(frame_len(s, &lim), Err(ParseError::BadStartLine));
        assert_eq!(
            frame_len(b"OPTIONS sip:a SIP/2.\r\n\r\n", &lim),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(frame_len(b"\r\n", &lim), Err(ParseError::BadStartLine));
        assert_eq!(
            frame_len(b"THIS IS NOT SIP\r\nno colon\r\n\r\n", &lim),
            Err(ParseError::BadStartLine)
        );
        // Bare LF, compact, folded, space before colon.
        let s = b"OPTIONS sip:a SIP/2.0\nl :\n 3\nX: y\n\nabcde";
        assert_eq!(frame_len(s, &lim), Ok(Some(s.len() - 2)));
        // Missing Content-Length on a stream = 0.
        let s = b"OPTIONS sip:a SIP/2.0\r\nX: y\r\n\r\nNEXT";
        assert_eq!(frame_len(s, &lim), Ok(Some(s.len() - 4)));
        // Errors.
        let s = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n";
        assert_eq!(
            frame_len(s, &lim),
            Err(ParseError::BadHeaderValue("Content-Length"))
        );
        let s = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n";
        assert_eq!(frame_len(s, &lim), Err(ParseError::BadContentLength));
        let s = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n";
        assert!(matches!(frame_len(s, &lim), Err(ParseError::TooLarge(_))));
        let s = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(frame_len(s, &lim).is_err());
        let long = vec![b'a'; 70_000];
        assert_eq!(frame_len(&long, &lim), Err(ParseError::TooLarge(70_000)));
        let mut long_lines = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
        while long_lines.len() < 70_000 {
            long_lines.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            frame_len(&long_lines, &lim),
            Err(ParseError::TooLarge(_))
        ));
        // Byte-at-a-time feeding finds the frame exactly once, at the end.
        for i in 1..n {
            assert_eq!(frame_len(&msg[..i], &lim), Ok(None), "at {i}");
        }
    }
}
