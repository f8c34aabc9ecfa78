//! Start line and header index.

use super::lex::{is_lws, is_token, is_token_str, parse_u32, parse_u64, trim_lws};
use super::uri::has_scheme;
use super::{HeaderEntry, HeaderName, Method, SipUri, Via};
use crate::message::header::{SplitValues, names_equal, split_values};
use bytes::Bytes;
use memchr::{memchr, memrchr};
use smallvec::SmallVec;
use std::ops::Range;

/// Bounds applied while parsing; anything over them is refused, never truncated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest whole message (start line + headers + body), bytes.
    pub max_message_size: usize,
    /// Most header lines (after unfolding) in one message.
    pub max_headers: usize,
    /// Most Via values (across all Via lines).
    pub max_via: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65_535,
            max_headers: 128,
            max_via: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed start line")]
    BadStartLine,
    #[error("more than the allowed number of headers")]
    TooManyHeaders,
    #[error("more than the allowed number of Via values")]
    TooManyVias,
    #[error("malformed header line at byte {0}")]
    BadHeader(usize),
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeaderValue(&'static str),
    #[error("Content-Length does not match the body")]
    BadContentLength,
    #[error("malformed URI")]
    BadUri,
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_token: Range<usize>,
        uri: Range<usize>,
    },
    Response {
        code: u16,
        reason: Range<usize>,
    },
}

/// A parsed SIP message: the buffer plus an index into it. Cheap to clone (the buffer is
/// reference-counted).
#[derive(Debug, Clone)]
pub struct SipMessage {
    buf: Bytes,
    start: StartLine,
    headers: SmallVec<[HeaderEntry; 24]>,
    /// Offset of the start line (past any leading CRLFs, RFC 3261 §7.5).
    start_offset: usize,
    /// Offset of the first header line (just past the start line's CRLF).
    headers_start: usize,
    /// Offset of the body (just past the blank line).
    body_start: usize,
    body: Range<usize>,
    cseq: (u32, Method),
    cseq_method: Range<usize>,
    call_id: Range<usize>,
    from: Range<usize>,
    to: Range<usize>,
    top_via: Range<usize>,
    /// The top Via's parts (parsed once at parse time).
    via_transport: Range<usize>,
    via_host: Range<usize>,
    via_port: Option<u16>,
    via_params: Range<usize>,
    from_tag: Option<Range<usize>>,
    to_tag: Option<Range<usize>>,
    via_count: usize,
    max_forwards: Option<u32>,
    content_length: Option<usize>,
}

/// Range of `part` inside `base` (`0..0` when it is empty or not a sub-slice).
fn sub_range(base: &[u8], part: &[u8]) -> Range<usize> {
    let off = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match off.checked_add(part.len()) {
        Some(end) if !part.is_empty() && end <= base.len() => off..end,
        _ => 0..0,
    }
}

#[inline]
fn u32_of(n: usize) -> u32 {
    // Callers have checked buf.len() <= u32::MAX.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl SipMessage {
    /// Parse one whole message (a UDP datagram, or a stream frame cut by [`frame_len`]).
    /// Checks: start line; header syntax; mandatory Via, From, To, Call-ID, CSeq present and
    /// well-formed (the top Via parses, CSeq is `number method` and for requests the method
    /// matches); Max-Forwards numeric if present; Content-Length numeric and not larger than
    /// the bytes present (bytes past it are ignored); the limits.
    ///
    /// Also: leading CRLFs before the start line are skipped (RFC 3261 §7.5; a datagram of
    /// only CRLFs is [`ParseError::Empty`]); a NUL byte anywhere in the head is refused;
    /// a datagram whose last header line ends the buffer without a blank line is accepted
    /// with an empty body; several Content-Length headers must agree.
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<SipMessage, ParseError> {
        let len = buf.len();
        if len > limits.max_message_size || len > u32::MAX as usize {
            return Err(ParseError::TooLarge(len));
        }
        let b: &[u8] = &buf;
        let start_offset = skip_keepalive(b);
        if start_offset >= len {
            return Err(ParseError::Empty);
        }

        // Start line.
        let sl_lf = memchr(b'\n', &b[start_offset..])
            .map(|i| start_offset + i)
            .ok_or(ParseError::BadStartLine)?;
        let sl_end = if sl_lf > start_offset && b[sl_lf - 1] == b'\r' {
            sl_lf - 1
        } else {
            sl_lf
        };
        let start = parse_start_line(b, start_offset, sl_end)?;
        let headers_start = sl_lf + 1;

        // Header index.
        let mut headers: SmallVec<[HeaderEntry; 24]> = SmallVec::new();
        let mut pos = headers_start;
        let body_start = loop {
            if pos >= len {
                break len;
            }
            let lf = match memchr(b'\n', &b[pos..]) {
                Some(i) => pos + i,
                None => return Err(ParseError::BadHeader(pos)),
            };
            // pos <= lf < len
            let mut eol = lf;
            if eol > pos && b[eol - 1] == b'\r' {
                eol -= 1;
            }
            if eol == pos {
                break lf + 1;
            }
            let first = b[pos];
            if first == b' ' || first == b'\t' {
                // Continuation of the previous header.
                let Some(last) = headers.last_mut() else {
                    return Err(ParseError::BadHeader(pos));
                };
                last.line_end = u32_of(lf + 1);
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
                pos = lf + 1;
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
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders);
            }
            headers.push(HeaderEntry {
                name: HeaderName::from_bytes(name),
                line_start: u32_of(pos),
                line_end: u32_of(lf + 1),
                value_start: u32_of(vs),
                value_end: u32_of(ve),
            });
            pos = lf + 1;
        };
        if let Some(i) = memchr(0, &b[start_offset..body_start]) {
            return Err(ParseError::BadHeader(start_offset + i));
        }

        // Headers the proxy relies on.
        let mut via_first: Option<Range<usize>> = None;
        let mut via_count = 0usize;
        let mut from = None;
        let mut to = None;
        let mut call_id = None;
        let mut cseq_v = None;
        let mut max_forwards = None;
        let mut content_length: Option<usize> = None;
        for h in &headers {
            let vr = h.value_range();
            let v = &b[vr.clone()];
            match h.name {
                HeaderName::Via => {
                    let mut it = split_values(v);
                    while let Some(r) = it.next_range() {
                        if via_first.is_none() {
                            via_first = Some(vr.start + r.start..vr.start + r.end);
                        }
                        via_count += 1;
                        if via_count > limits.max_via {
                            return Err(ParseError::TooManyVias);
                        }
                    }
                    if via_first.is_none() {
                        return Err(ParseError::BadHeaderValue("Via"));
                    }
                }
                HeaderName::From if from.is_none() => from = Some(vr),
                HeaderName::To if to.is_none() => to = Some(vr),
                HeaderName::CallId if call_id.is_none() => call_id = Some(vr),
                HeaderName::CSeq if cseq_v.is_none() => cseq_v = Some(vr),
                HeaderName::MaxForwards if max_forwards.is_none() => {
                    max_forwards =
                        Some(parse_u32(v).ok_or(ParseError::BadHeaderValue("Max-Forwards"))?);
                }
                HeaderName::ContentLength => {
                    let n = parse_content_length(v)?;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(ParseError::BadContentLength);
                    }
                    content_length = Some(n);
                }
                _ => {}
            }
        }
        let top_via = via_first.ok_or(ParseError::MissingHeader("Via"))?;
        let from = from.ok_or(ParseError::MissingHeader("From"))?;
        let to = to.ok_or(ParseError::MissingHeader("To"))?;
        let call_id = call_id.ok_or(ParseError::MissingHeader("Call-ID"))?;
        let cseq_r = cseq_v.ok_or(ParseError::MissingHeader("CSeq"))?;

        let via = Via::parse(&b[top_via.clone()])?;
        let (via_transport, via_host, via_port, via_params) = (
            sub_range(b, via.transport),
            sub_range(b, via.host),
            via.port,
            sub_range(b, via.params),
        );
        let from_na = super::NameAddr::parse(&b[from.clone()])
            .map_err(|_| ParseError::BadHeaderValue("From"))?;
        let from_tag = from_na.tag().map(|t| sub_range(b, t));
        let to_na =
            super::NameAddr::parse(&b[to.clone()]).map_err(|_| ParseError::BadHeaderValue("To"))?;
        let to_tag = to_na.tag().map(|t| sub_range(b, t));
        if call_id.is_empty() || b[call_id.clone()].iter().any(|&c| is_lws(c)) {
            return Err(ParseError::BadHeaderValue("Call-ID"));
        }
        let (seq, cseq_method) =
            parse_cseq(&b[cseq_r.clone()]).ok_or(ParseError::BadHeaderValue("CSeq"))?;
        let cseq_method = cseq_r.start + cseq_method.start..cseq_r.start + cseq_method.end;
        let cseq_token = &b[cseq_method.clone()];
        if let StartLine::Request { method_token, .. } = &start {
            if b[method_token.clone()] != *cseq_token {
                return Err(ParseError::CSeqMismatch);
            }
        }

        let available = len - body_start;
        let body = match content_length {
            Some(n) if n > available => return Err(ParseError::BadContentLength),
            Some(n) => body_start..body_start + n,
            None => body_start..len,
        };

        Ok(SipMessage {
            cseq: (seq, Method::from_token(cseq_token)),
            buf,
            start,
            headers,
            start_offset,
            headers_start,
            body_start,
            body,
            cseq_method,
            call_id,
            from,
            to,
            top_via,
            via_transport,
            via_host,
            via_port,
            via_params,
            from_tag,
            to_tag,
            via_count,
            max_forwards,
            content_length,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }
    /// Offset of the start line (past leading CRLFs, usually 0).
    pub fn start_offset(&self) -> usize {
        self.start_offset
    }
    /// Offset of the first header line.
    pub fn headers_start(&self) -> usize {
        self.headers_start
    }
    /// Offset of the body (just past the blank line; equal to the buffer length when the
    /// head had no blank line).
    pub fn body_start(&self) -> usize {
        self.body_start
    }
    /// Length of the message proper: head plus body (shorter than the buffer when bytes
    /// followed Content-Length).
    pub fn message_len(&self) -> usize {
        self.body.end
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    pub fn method(&self) -> Option<Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(*method),
            StartLine::Response { .. } => None,
        }
    }
    /// The method token as written (useful for `Method::Other`).
    pub fn method_token(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Request { method_token, .. } => self.buf.get(method_token.clone()),
            StartLine::Response { .. } => None,
        }
    }
    pub fn request_uri(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Request { uri, .. } => self.buf.get(uri.clone()),
            StartLine::Response { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }
    /// The reason phrase of a response as written (may be empty).
    pub fn reason(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Response { reason, .. } => self.buf.get(reason.clone()),
            StartLine::Request { .. } => None,
        }
    }
    pub fn headers(&self) -> &[HeaderEntry] {
        &self.headers
    }
    /// The trimmed value of one index entry (empty for an entry not from this message).
    pub fn value(&self, entry: &HeaderEntry) -> &[u8] {
        self.buf.get(entry.value_range()).unwrap_or(&[])
    }
    /// The header name of one index entry as written (`v`, `VIA`, ...).
    pub fn name_of(&self, entry: &HeaderEntry) -> &[u8] {
        let line = self.buf.get(entry.line_range()).unwrap_or(&[]);
        let colon = memchr(b':', line).unwrap_or(0);
        let name = line.get(..colon).unwrap_or(&[]);
        let n = name
            .iter()
            .rev()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        name.get(..name.len() - n).unwrap_or(&[])
    }
    /// The whole raw line (name, value, folds and terminator) of one index entry.
    pub fn raw_line(&self, entry: &HeaderEntry) -> &[u8] {
        self.buf.get(entry.line_range()).unwrap_or(&[])
    }
    /// Value of the first header line with this name.
    pub fn first(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| self.value(h))
    }
    /// Value of the first header line with this name as text (case-insensitive; compact
    /// forms understood both ways: `b"Session-Expires"` finds `x:`). For headers outside
    /// [`HeaderName`].
    pub fn first_named<'s>(&'s self, name: &'s [u8]) -> Option<&'s [u8]> {
        self.all_named(name).next()
    }
    /// Values of every header line with this name (not comma-split).
    pub fn all_named<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        let known = HeaderName::from_bytes(name);
        self.headers
            .iter()
            .filter(move |h| {
                if known != HeaderName::Other {
                    h.name == known
                } else {
                    h.name == HeaderName::Other && names_equal(self.name_of(h), name)
                }
            })
            .map(|h| self.value(h))
    }
    /// Every comma-separated value of every line with this name, in order (commas inside
    /// quotes or `<...>` do not split). Meant for Via, Route, Record-Route, Contact.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(|h| -> SplitValues<'_> { split_values(self.value(h)) })
    }
    pub fn call_id(&self) -> &[u8] {
        self.buf.get(self.call_id.clone()).unwrap_or(&[])
    }
    pub fn cseq(&self) -> (u32, Method) {
        self.cseq
    }
    /// The method token of CSeq as written (for `Method::Other`).
    pub fn cseq_method_token(&self) -> &[u8] {
        self.buf.get(self.cseq_method.clone()).unwrap_or(&[])
    }
    /// The From value (validated as a name-addr at parse time).
    pub fn from_value(&self) -> &[u8] {
        self.buf.get(self.from.clone()).unwrap_or(&[])
    }
    /// The To value (validated as a name-addr at parse time).
    pub fn to_value(&self) -> &[u8] {
        self.buf.get(self.to.clone()).unwrap_or(&[])
    }
    pub fn from_tag(&self) -> Option<&[u8]> {
        self.buf.get(self.from_tag.clone()?)
    }
    pub fn to_tag(&self) -> Option<&[u8]> {
        self.buf.get(self.to_tag.clone()?)
    }
    /// `None` when absent (validated numeric at parse time).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }
    /// Content-Length as received, `None` when absent.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }
    /// The first Via value (validated at parse time, so this does not fail).
    pub fn top_via(&self) -> Via<'_> {
        let part = |r: &Range<usize>| self.buf.get(r.clone()).unwrap_or(&[]);
        Via {
            transport: part(&self.via_transport),
            host: part(&self.via_host),
            port: self.via_port,
            params: part(&self.via_params),
        }
    }
    /// The raw first Via value (what [`Self::top_via`] parses).
    pub fn top_via_raw(&self) -> &[u8] {
        self.buf.get(self.top_via.clone()).unwrap_or(&[])
    }
    pub fn via_count(&self) -> usize {
        self.via_count
    }
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body.clone()).unwrap_or(&[])
    }
    /// A zero-copy sub-slice of the buffer (`range` must come from this message; an
    /// out-of-bounds range gives an empty `Bytes` rather than a panic).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        if range.start <= range.end && range.end <= self.buf.len() {
            self.buf.slice(range)
        } else {
            Bytes::new()
        }
    }
}

fn parse_start_line(b: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
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
    if !is_token_str(method) || !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(ERR);
    }
    if !uri.iter().all(|&c| (0x21..=0x7e).contains(&c)) {
        return Err(ERR);
    }
    if !has_scheme(uri) {
        return Err(ParseError::BadUri);
    }
    let is_sip = uri.len() >= 4
        && (uri[..4].eq_ignore_ascii_case(b"sip:")
            || uri[..4].eq_ignore_ascii_case(b"tel:")
            || uri
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"sips:")));
    if is_sip {
        SipUri::parse(uri)?;
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        method_token: s..s + sp1,
        uri: s + sp1 + 1..s + sp2,
    })
}

/// `1*DIGIT LWS Method` → (number, method range relative to `v`).
fn parse_cseq(v: &[u8]) -> Option<(u32, Range<usize>)> {
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

fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
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
    let is_sip = start_line.len() >= 8
        && (start_line[..8].eq_ignore_ascii_case(b"SIP/2.0 ")
            || start_line[start_line.len() - 8..].eq_ignore_ascii_case(b" SIP/2.0"));
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
    use crate::message::NameAddr;

    pub(crate) const INVITE: &[u8] =
        b"INVITE sip:+15551234567@carrier-a.example:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-524287-1---77ba0c2b4d9d1a8f;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@10.0.0.5:5060;transport=udp>\r\n\
To: <sip:+15551234567@carrier-a.example>\r\n\
From: \"Alice 1001\" <sip:1001@pbx.example>;tag=8c4b1e2f\r\n\
Call-ID: 7f3e9a1c-2b4d-4e8f-9a0b-1c2d3e4f5a6b@10.0.0.5\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePBX 16.4.1\r\n\
Allow-Events: talk, hold, conference\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Record-Route: <sip:10.0.0.2;lr;ftag=8c4b1e2f>\r\n\
P-Asserted-Identity: \"Alice 1001\" <sip:+15550001001@pbx.example>\r\n\
Accept: application/sdp, application/dtmf-relay\r\n\
Content-Length: 304\r\n\
\r\n\
v=0\r\n\
o=- 3920181736 3920181736 IN IP4 10.0.0.5\r\n\
s=ExamplePBX\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
a=rtcp:16385\r\n\
a=label:1\r\n";

    fn p(s: &[u8]) -> Result<SipMessage, ParseError> {
        SipMessage::parse(Bytes::copy_from_slice(s), &Limits::default())
    }

    fn ok(s: &[u8]) -> SipMessage {
        match p(s) {
            Ok(m) => m,
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(s)),
        }
    }

    fn minimal(extra: &str) -> String {
        format!(
            "OPTIONS sip:b@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
             From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>\r\nCall-ID: c1\r\n\
             CSeq: 1 OPTIONS\r\n{extra}\r\n"
        )
    }

    #[test]
    fn canonical_invite_with_sdp() {
        let m = ok(INVITE);
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.method_token(), Some(&b"INVITE"[..]));
        assert_eq!(
            m.request_uri(),
            Some(&b"sip:+15551234567@carrier-a.example:5060;user=phone"[..])
        );
        assert_eq!(m.status(), None);
        assert_eq!(m.reason(), None);
        assert_eq!(m.headers().len(), 17);
        assert_eq!(
            m.call_id(),
            b"7f3e9a1c-2b4d-4e8f-9a0b-1c2d3e4f5a6b@10.0.0.5"
        );
        assert_eq!(m.cseq(), (2, Method::Invite));
        assert_eq!(m.cseq_method_token(), b"INVITE");
        assert_eq!(m.from_tag(), Some(&b"8c4b1e2f"[..]));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.max_forwards(), Some(70));
        assert_eq!(m.via_count(), 1);
        let v = m.top_via();
        assert_eq!(v.host, b"10.0.0.5");
        assert_eq!(
            v.branch(),
            Some(&b"z9hG4bK-524287-1---77ba0c2b4d9d1a8f"[..])
        );
        assert_eq!(m.body().len(), 304);
        assert!(m.body().starts_with(b"v=0\r\n"));
        assert!(m.body().ends_with(b"a=label:1\r\n"));
        assert_eq!(m.content_length(), Some(304));
        assert_eq!(m.message_len(), INVITE.len());
        assert_eq!(
            m.first(HeaderName::ContentType),
            Some(&b"application/sdp"[..])
        );
        assert_eq!(
            m.first_named(b"session-expires"),
            Some(&b"1800;refresher=uac"[..])
        );
        assert_eq!(m.first_named(b"x"), Some(&b"1800;refresher=uac"[..]));
        assert_eq!(m.first_named(b"u"), Some(&b"talk, hold, conference"[..]));
        assert_eq!(
            m.first_named(b"CONTENT-type"),
            Some(&b"application/sdp"[..])
        );
        assert_eq!(m.first_named(b"X-None"), None);
        let h = m.headers()[0];
        assert_eq!(m.name_of(&h), b"Via");
        assert!(m.raw_line(&h).ends_with(b"rport\r\n"));
        assert_eq!(
            m.headers_start(),
            INVITE.iter().position(|&c| c == b'\n').unwrap() + 1
        );
        assert_eq!(m.slice(0..6), Bytes::from_static(b"INVITE"));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..2;
        assert_eq!(m.slice(backwards), Bytes::new());
        assert_eq!(m.slice(0..usize::MAX), Bytes::new());
        let sp = StartLine::Request {
            method: Method::Invite,
            method_token: 0..6,
            uri: 7..57,
        };
        assert_eq!(m.start_line(), &sp);
    }

    #[test]
    fn compact_and_mixed_case_names() {
        let s = b"BYE sip:b@b.example SIP/2.0\r\nv: SIP/2.0/TCP a.example;branch=z9hG4bK2\r\n\
f: <sip:a@a.example>;tag=1\r\nt: <sip:b@b.example>;tag=2\r\ni: abc@a\r\ncseq: 5 BYE\r\n\
mAX-forwards: 9\r\nl: 0\r\nm: <sip:a@10.0.0.1>\r\nc: text/plain\r\nk: timer\r\n\r\n";
        let m = ok(s);
        assert_eq!(m.call_id(), b"abc@a");
        assert_eq!(m.cseq(), (5, Method::Bye));
        assert_eq!(m.to_tag(), Some(&b"2"[..]));
        assert_eq!(m.from_tag(), Some(&b"1"[..]));
        assert_eq!(m.max_forwards(), Some(9));
        assert_eq!(m.top_via().transport, b"TCP");
        assert_eq!(m.first(HeaderName::Contact), Some(&b"<sip:a@10.0.0.1>"[..]));
        assert_eq!(m.first(HeaderName::Supported), Some(&b"timer"[..]));
        assert_eq!(m.content_length(), Some(0));
        let s2 = b"bye sip:b@b SIP/2.0\r\nVIA: SIP/2.0/UDP a\r\nFROM: <sip:a@a>;TAG=x\r\nTo: <sip:b@b>\r\nCALL-ID: 1\r\nCSEQ: 1 bye\r\n\r\n";
        let m = ok(s2);
        assert_eq!(m.method(), Some(Method::Other));
        assert_eq!(m.method_token(), Some(&b"bye"[..]));
        assert_eq!(m.from_tag(), Some(&b"x"[..]));
        assert_eq!(m.cseq().1, Method::Other);
    }

    #[test]
    fn folding_and_space_before_colon() {
        let s = b"INVITE sip:b@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1,\r\n  SIP/2.0/UDP\r\n\tc.example;branch=z9hG4bK0\r\n\
From  : <sip:a@a.example>\r\n ;tag=1\r\n\
To\t: <sip:b@b.example>\r\nCall-ID:\r\n  folded-id\r\nCSeq  : 1 INVITE\r\nSubject: a\r\n b\r\n\r\n";
        let m = ok(s);
        assert_eq!(m.from_tag(), Some(&b"1"[..]));
        assert_eq!(m.call_id(), b"folded-id");
        assert_eq!(m.cseq(), (1, Method::Invite));
        let vias: Vec<_> = m.values(HeaderName::Via).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(m.via_count(), 2);
        assert_eq!(Via::parse(vias[1]).unwrap().host, b"c.example");
        assert_eq!(m.first_named(b"subject"), Some(&b"a\r\n b"[..]));
        assert_eq!(m.first_named(b"s"), Some(&b"a\r\n b"[..]));
        assert_eq!(m.name_of(&m.headers()[1]), b"From");
        assert_eq!(m.headers().len(), 6);
    }

    #[test]
    fn comma_joined_via_and_route() {
        let s = minimal(
            "Via: SIP/2.0/UDP p2.example;branch=z9hG4bK2, SIP/2.0/UDP p3.example;branch=z9hG4bK3\r\n\
             Route: <sip:p1.example;lr>, <sip:p2.example;lr;x=\"a,b\">\r\nRoute: <sip:p3.example;lr>\r\n\
             Record-Route: <sip:rr1;lr>,<sip:rr2;lr>\r\n\
             Contact: \"Doe, J\" <sip:j@h>;expires=60, <sip:k@h>\r\n",
        );
        let m = ok(s.as_bytes());
        assert_eq!(m.via_count(), 3);
        assert_eq!(m.top_via().host, b"a.example");
        let routes: Vec<_> = m.values(HeaderName::Route).collect();
        assert_eq!(
            routes,
            vec![
                &b"<sip:p1.example;lr>"[..],
                b"<sip:p2.example;lr;x=\"a,b\">",
                b"<sip:p3.example;lr>"
            ]
        );
        assert_eq!(m.values(HeaderName::RecordRoute).count(), 2);
        let contacts: Vec<_> = m.values(HeaderName::Contact).collect();
        assert_eq!(contacts.len(), 2);
        assert_eq!(
            NameAddr::parse(contacts[0]).unwrap().display,
            Some(&b"Doe, J"[..])
        );
        assert_eq!(m.values(HeaderName::ProxyRequire).count(), 0);
    }

    #[test]
    fn ipv6_everywhere() {
        let s = b"INVITE sip:bob@[2001:db8::1]:5080;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK1;received=[2001:db8::9];rport=5061\r\n\
From: <sip:a@[2001:db8::5]>;tag=1\r\nTo: <sip:bob@[2001:db8::1]>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        let m = ok(s);
        let u = SipUri::parse(m.request_uri().unwrap()).unwrap();
        assert_eq!(u.host, b"2001:db8::1");
        assert_eq!(u.port, Some(5080));
        let v = m.top_via();
        assert_eq!(v.host, b"2001:db8::5");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.received_host(), Some(&b"2001:db8::9"[..]));
        assert_eq!(v.rport(), Some(Some(5061)));
    }

    #[test]
    fn content_length_cases() {
        // Shorter than the data: the rest is ignored.
        let s = minimal("Content-Length: 4\r\n") + "abcdEXTRA";
        let m = ok(s.as_bytes());
        assert_eq!(m.body(), b"abcd");
        assert_eq!(m.message_len(), s.len() - 5);
        // Longer than the data.
        let s = minimal("Content-Length: 40\r\n") + "abcd";
        assert_eq!(p(s.as_bytes()).unwrap_err(), ParseError::BadContentLength);
        // Missing: to the end.
        let s = minimal("") + "whole body";
        assert_eq!(ok(s.as_bytes()).body(), b"whole body");
        assert_eq!(ok(s.as_bytes()).content_length(), None);
        // Two that agree, two that do not.
        let s = minimal("Content-Length: 2\r\nl: 2\r\n") + "ab";
        assert_eq!(ok(s.as_bytes()).body(), b"ab");
        let s = minimal("Content-Length: 2\r\nl: 3\r\n") + "abc";
        assert_eq!(p(s.as_bytes()).unwrap_err(), ParseError::BadContentLength);
        // Malformed and huge.
        for v in ["x", "-1", "1 2", "99999999999999999999999999", ""] {
            let s = minimal(&format!("Content-Length: {v}\r\n"));
            assert_eq!(
                p(s.as_bytes()).unwrap_err(),
                ParseError::BadHeaderValue("Content-Length"),
                "{v}"
            );
        }
    }

    #[test]
    fn bare_lf_and_leading_crlf_and_missing_blank_line() {
        let s = b"\r\n\r\nSIP/2.0 180 Ringing\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=1\nTo: <sip:b@b>;tag=2\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 3\n\nabc";
        let m = ok(s);
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some(&b"Ringing"[..]));
        assert_eq!(m.start_offset(), 4);
        assert_eq!(m.body(), b"abc");
        assert_eq!(m.to_tag(), Some(&b"2"[..]));
        let s = b"OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        let m = ok(s);
        assert_eq!(m.body(), b"");
        assert_eq!(m.body_start(), s.len());
    }

    #[test]
    fn responses() {
        let s =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
To: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\r\n";
        let m = ok(s);
        assert!(!m.is_request());
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.method(), None);
        assert_eq!(m.method_token(), None);
        assert_eq!(m.request_uri(), None);
        assert_eq!(m.cseq(), (7, Method::Invite));
        let s2 = b"SIP/2.0 699\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 7 FOO\r\n\r\n";
        let m = ok(s2);
        assert_eq!((m.status(), m.reason()), (Some(699), Some(&b""[..])));
        assert_eq!(m.cseq_method_token(), b"FOO");
        let s3 = b"SIP/2.0 404 Not \xc3\xa9 Found\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 7 BYE\r\n\r\n";
        assert_eq!(ok(s3).reason(), Some(&b"Not \xc3\xa9 Found"[..]));
    }

    #[test]
    fn every_error_variant() {
        use ParseError::*;
        let lim = Limits::default();
        let e = |s: &[u8]| p(s).unwrap_err();
        assert_eq!(e(b""), Empty);
        assert_eq!(e(b"\r\n\r\n"), Empty);
        let big = vec![b'a'; 70_000];
        assert_eq!(e(&big), TooLarge(70_000));
        for bad in [
            &b"INVITE\r\n\r\n"[..],
            b"INVITE sip:a@b\r\n\r\n",
            b"INVITE sip:a@b SIP/3.0\r\n\r\n",
            b"INV ITE sip:a@b SIP/2.0\r\n\r\n",
            b"INVITE  SIP/2.0\r\n\r\n",
            b"INV(ITE sip:a@b SIP/2.0\r\n\r\n",
            b"INVITE sip:\xffa@b SIP/2.0\r\n\r\n",
            b"SIP/2.0 99 Too low\r\n\r\n",
            b"SIP/2.0 700 Too high\r\n\r\n",
            b"SIP/2.0 2x0 OK\r\n\r\n",
            b"SIP/2.0 200OK\r\n\r\n",
            b"SIP/2.0 20\r\n\r\n",
            b"SIP/2.0 200 O\x00K\r\n\r\n",
            b"no line end",
        ] {
            assert_eq!(e(bad), BadStartLine, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(e(b"INVITE nocolon SIP/2.0\r\n\r\n"), BadUri);
        assert_eq!(e(b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n"), BadUri);
        let many = minimal(&"X-A: 1\r\n".repeat(200));
        assert_eq!(e(many.as_bytes()), TooManyHeaders);
        let vias = minimal(&"Via: SIP/2.0/UDP x, SIP/2.0/UDP y\r\n".repeat(20));
        assert_eq!(e(vias.as_bytes()), TooManyVias);
        let tight = Limits { max_via: 1, ..lim };
        let two = minimal("Via: SIP/2.0/UDP x\r\n");
        assert_eq!(
            SipMessage::parse(Bytes::from(two), &tight).unwrap_err(),
            TooManyVias
        );
        assert_eq!(e(minimal("no colon here\r\n").as_bytes()), BadHeader(161));
        assert!(matches!(
            e(minimal("Bad Name: x\r\n").as_bytes()),
            BadHeader(_)
        ));
        assert!(matches!(e(minimal(": x\r\n").as_bytes()), BadHeader(_)));
        assert!(matches!(
            e(minimal("X-A: a\x00b\r\n").as_bytes()),
            BadHeader(_)
        ));
        assert!(matches!(
            e(b"OPTIONS sip:a SIP/2.0\r\n folded-first: x\r\n\r\n"),
            BadHeader(_)
        ));
        assert!(matches!(
            e(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP a"),
            BadHeader(_)
        ));
        let drop = |name: &str| {
            minimal("")
                .lines()
                .filter(|l| !l.starts_with(name))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        };
        assert_eq!(e(drop("Via").as_bytes()), MissingHeader("Via"));
        assert_eq!(e(drop("From").as_bytes()), MissingHeader("From"));
        assert_eq!(e(drop("To").as_bytes()), MissingHeader("To"));
        assert_eq!(e(drop("Call-ID").as_bytes()), MissingHeader("Call-ID"));
        assert_eq!(e(drop("CSeq").as_bytes()), MissingHeader("CSeq"));
        let rep = |from: &str, to: &str| minimal("").replace(from, to);
        assert_eq!(
            e(rep("SIP/2.0/UDP a.example", "SIP/2.0/UDP").as_bytes()),
            BadHeaderValue("Via")
        );
        assert_eq!(
            e(rep("Via: SIP/2.0/UDP a.example;branch=z9hG4bK1", "Via: ,").as_bytes()),
            BadHeaderValue("Via")
        );
        assert_eq!(
            e(rep("<sip:a@a.example>", "<sip:a@a.example").as_bytes()),
            BadHeaderValue("From")
        );
        assert_eq!(
            e(rep("To: <sip:b@b.example>", "To: junk").as_bytes()),
            BadHeaderValue("To")
        );
        assert_eq!(
            e(rep("Call-ID: c1", "Call-ID: ").as_bytes()),
            BadHeaderValue("Call-ID")
        );
        assert_eq!(
            e(rep("Call-ID: c1", "Call-ID: c 1").as_bytes()),
            BadHeaderValue("Call-ID")
        );
        for cseq in [
            "x OPTIONS",
            "1",
            "1OPTIONS",
            "99999999999 OPTIONS",
            "1 OPTIONS extra",
            "-1 OPTIONS",
        ] {
            assert_eq!(
                e(rep("1 OPTIONS", cseq).as_bytes()),
                BadHeaderValue("CSeq"),
                "{cseq}"
            );
        }
        assert_eq!(
            e(rep("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").as_bytes()),
            CSeqMismatch
        );
        assert_eq!(
            e(rep("CSeq: 1 OPTIONS", "CSeq: 1 options").as_bytes()),
            CSeqMismatch
        );
        assert_eq!(
            e(minimal("Max-Forwards: ten\r\n").as_bytes()),
            BadHeaderValue("Max-Forwards")
        );
        assert_eq!(
            e(minimal("Max-Forwards: 4294967296\r\n").as_bytes()),
            BadHeaderValue("Max-Forwards")
        );
        assert_eq!(
            e((minimal("Content-Length: 10\r\n") + "x").as_bytes()),
            BadContentLength
        );
        // ACK and CANCEL carry their own method in CSeq.
        let ack = b"ACK sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(e(ack), CSeqMismatch);
        let ack = b"ACK sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@a>\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(ok(ack).cseq(), (1, Method::Ack));
    }

    #[test]
    fn other_request_uri_schemes_pass() {
        let s = minimal("").replace("OPTIONS sip:b@b.example", "OPTIONS urn:service:sos");
        assert_eq!(
            ok(s.as_bytes()).request_uri(),
            Some(&b"urn:service:sos"[..])
        );
        let s = minimal("").replace("OPTIONS sip:b@b.example", "OPTIONS tel:+15551234");
        assert!(p(s.as_bytes()).is_ok());
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

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn check(data: &[u8]) {
            let lim = Limits::default();
            let _ = frame_len(data, &lim);
            let _ = skip_keepalive(data);
            if let Ok(m) = SipMessage::parse(Bytes::copy_from_slice(data), &lim) {
                let _ = (
                    m.call_id(),
                    m.cseq(),
                    m.from_tag(),
                    m.to_tag(),
                    m.top_via(),
                    m.body(),
                );
                for h in m.headers() {
                    let _ = (m.value(h), m.name_of(h));
                }
                for v in m.values(HeaderName::Via) {
                    let _ = Via::parse(v);
                }
                for v in m.values(HeaderName::Route) {
                    if let Ok(n) = NameAddr::parse(v) {
                        let _ = n.sip_uri();
                    }
                }
                let mut out = bytes::BytesMut::new();
                crate::message::rewrite::rewrite(
                    &m,
                    &crate::message::rewrite::Edits {
                        prepend: &[b"Via: SIP/2.0/UDP x;branch=z9hG4bKp"],
                        pop_first_value: &[HeaderName::Via, HeaderName::Route],
                        max_forwards: Some(1),
                        ..Default::default()
                    },
                    &mut out,
                );
                let again = SipMessage::parse(out.freeze(), &lim);
                assert!(
                    again.is_ok() || m.via_count() == 1 || m.max_forwards().is_none(),
                    "{again:?}"
                );
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
                check(&data);
            }

            #[test]
            fn mutated_invite_never_panics(
                edits in proptest::collection::vec((0usize..2000, any::<u8>(), 0u8..4), 1..12),
                cut in 0usize..2000,
            ) {
                let mut data = INVITE.to_vec();
                for (pos, byte, op) in edits {
                    let pos = pos % (data.len() + 1);
                    match op {
                        0 => if pos < data.len() { data[pos] = byte },
                        1 => data.insert(pos, byte),
                        2 => if pos < data.len() { data.remove(pos); },
                        _ => data.insert(pos, [b'\r', b'\n', b' ', b':', b',', b';', b'<', b'"'][byte as usize % 8]),
                    }
                }
                check(&data);
                data.truncate(cut.min(data.len()));
                check(&data);
            }
        }
    }
}
