//! Start line and header index, and the conformance checks a message must pass
//! (RFC 3261 §7, §8.2, §16.3, §20, §25; the RFC 4475 torture cases): one pass over the
//! header index, each header value read once. [`SipMessage::parse_answerable`] is the loose
//! reading used only to address the `4xx`/`5xx` for a request that failed them.

use super::check::{call_id_valid, media_type_valid, name_addr, name_addr_list, parse_cseq};
use super::frame::{parse_content_length, skip_keepalive};
use super::header::list_elements;
use super::index::{index_headers, parse_start_line, start_line_bounds};
use super::lex::{is_token_str, parse_u32, trim_lws};
use super::{HeaderEntry, HeaderName, Method, NameAddr, Via};
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
            max_headers: 512,
            max_via: 128,
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
    #[error("SIP version other than SIP/2.0")]
    BadVersion,
    #[error("more than the allowed number of headers")]
    TooManyHeaders,
    #[error("more than the allowed number of Via values")]
    TooManyVias,
    #[error("malformed header line at byte {0}")]
    BadHeader(usize),
    #[error("NUL byte at {0} in the start line or headers")]
    NulByte(usize),
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeaderValue(&'static str),
    #[error("more than one {0} header (it allows one value)")]
    DuplicateHeader(&'static str),
    #[error("Content-Length does not match the message")]
    BadContentLength,
    #[error("malformed Request-URI")]
    BadUri,
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
}

impl ParseError {
    /// The answer a proxy gives a request refused with this error (RFC 3261 §16.3 step 1,
    /// §8.2.2, §21.5.7): the status code and a reason phrase that names the problem, as
    /// `400 Duplicate Call-ID header` or `400 Malformed Via`. `None` for an empty datagram
    /// (nothing to answer). Whether the request can be answered at all is
    /// [`SipMessage::parse_answerable`]'s question.
    pub fn response(&self) -> Option<(u16, String)> {
        let fixed = |code: u16, reason: &str| Some((code, reason.to_owned()));
        match self {
            ParseError::Empty => None,
            ParseError::TooLarge(_) => fixed(513, "Message Too Large"),
            ParseError::BadStartLine => fixed(400, "Malformed Request-Line"),
            ParseError::BadVersion => fixed(505, "Version Not Supported"),
            ParseError::TooManyHeaders => fixed(400, "Too Many Headers"),
            ParseError::TooManyVias => fixed(400, "Too Many Via Headers"),
            ParseError::BadHeader(_) => fixed(400, "Malformed header line"),
            ParseError::NulByte(_) => fixed(400, "NUL byte in message"),
            ParseError::MissingHeader(name) => Some((400, format!("Missing {name} header"))),
            ParseError::BadHeaderValue(name) => Some((400, format!("Malformed {name}"))),
            ParseError::DuplicateHeader(name) => Some((400, format!("Duplicate {name} header"))),
            ParseError::BadContentLength => fixed(400, "Content-Length larger than message"),
            ParseError::BadUri => fixed(400, "Malformed Request-URI"),
            ParseError::CSeqMismatch => fixed(400, "CSeq method does not match request"),
        }
    }
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

impl SipMessage {
    /// Parse one whole message (a UDP datagram, or a stream frame cut by [`frame_len`]).
    ///
    /// Start line: `Method SP Request-URI SP SIP/2.0` (another `SIP/x.y` is
    /// [`ParseError::BadVersion`]; a sip/sips/tel Request-URI must parse, and a sip/sips one
    /// may not carry `?headers`, RFC 3261 §19.1.1) or `SIP/2.0 SP 3DIGIT SP reason`.
    ///
    /// Headers, in one pass over the index: Via, From, To, Call-ID, CSeq present; Call-ID,
    /// CSeq, From, To, Max-Forwards, Content-Length and Content-Type at most once
    /// ([`ParseError::DuplicateHeader`]); every Via value well-formed (not only the top
    /// one); From, To and every Contact, Route, Record-Route, Reply-To, Refer-To,
    /// Referred-By, P-Asserted-Identity and P-Preferred-Identity value a well-formed
    /// name-addr or addr-spec (balanced quotes and angle brackets, no empty parameters or
    /// list elements; a URI of the right shape); Call-ID a `word[@word]`; CSeq `number
    /// method` (u32) with the request's method; Max-Forwards 0–255; Content-Length a number
    /// no larger than the bytes present (bytes past it are ignored); Content-Type a media
    /// type; Proxy-Require option tags. Headers the proxy does not know are not looked at
    /// (RFC 3261 §16.3: components it does not use are forwarded as they are).
    ///
    /// Also: leading CRLFs before the start line are skipped (RFC 3261 §7.5; a datagram of
    /// only CRLFs is [`ParseError::Empty`]); a NUL byte anywhere in the head is refused;
    /// a datagram whose last header line ends the buffer without a blank line is accepted
    /// with an empty body.
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
        let (sl_end, headers_start) = start_line_bounds(b, start_offset)?;
        let start = parse_start_line(b, start_offset, sl_end)?;
        let (headers, body_start) = index_headers(b, headers_start, limits.max_headers, false)?;
        if let Some(i) = memchr(0, &b[start_offset..body_start]) {
            return Err(ParseError::NulByte(start_offset + i));
        }

        // One pass: what the proxy relies on, and the single-value rule.
        let mut via_first: Option<Range<usize>> = None;
        let mut via_parts = (0..0, 0..0, None, 0..0);
        let mut via_count = 0usize;
        let mut from = None;
        let mut to = None;
        let mut call_id = None;
        let mut cseq_v = None;
        let mut max_forwards_v = None;
        let mut content_length_v = None;
        let mut content_type_v = None;
        for h in &headers {
            let vr = h.value_range();
            let v = &b[vr.clone()];
            let slot = match h.name {
                HeaderName::Via => {
                    for r in list_elements(v) {
                        // An empty element (`a,,b`) fails here too.
                        let via = Via::parse(v.get(r.clone()).unwrap_or(&[]))?;
                        if via_first.is_none() {
                            via_first = Some(vr.start + r.start..vr.start + r.end);
                            via_parts = (
                                sub_range(b, via.transport),
                                sub_range(b, via.host),
                                via.port,
                                sub_range(b, via.params),
                            );
                        }
                        via_count += 1;
                        if via_count > limits.max_via {
                            return Err(ParseError::TooManyVias);
                        }
                    }
                    continue;
                }
                HeaderName::From => &mut from,
                HeaderName::To => &mut to,
                HeaderName::CallId => &mut call_id,
                HeaderName::CSeq => &mut cseq_v,
                HeaderName::MaxForwards => &mut max_forwards_v,
                HeaderName::ContentLength => &mut content_length_v,
                HeaderName::ContentType => &mut content_type_v,
                HeaderName::Contact => {
                    if trim_lws(v) != b"*" {
                        name_addr_list(v, h.name)?;
                    }
                    continue;
                }
                HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::ReplyTo
                | HeaderName::ReferTo
                | HeaderName::ReferredBy
                | HeaderName::PAssertedIdentity
                | HeaderName::PPreferredIdentity => {
                    name_addr_list(v, h.name)?;
                    continue;
                }
                HeaderName::ProxyRequire => {
                    if !list_elements(v).all(|r| v.get(r).is_some_and(is_token_str)) {
                        return Err(ParseError::BadHeaderValue("Proxy-Require"));
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(ParseError::DuplicateHeader(h.name.canonical()));
            }
            *slot = Some(vr);
        }
        let top_via = via_first.ok_or(ParseError::MissingHeader("Via"))?;
        let from = from.ok_or(ParseError::MissingHeader("From"))?;
        let to = to.ok_or(ParseError::MissingHeader("To"))?;
        let call_id = call_id.ok_or(ParseError::MissingHeader("Call-ID"))?;
        let cseq_r = cseq_v.ok_or(ParseError::MissingHeader("CSeq"))?;

        let (via_transport, via_host, via_port, via_params) = via_parts;
        let from_tag = name_addr(&b[from.clone()], HeaderName::From)?
            .tag()
            .map(|t| sub_range(b, t));
        let to_tag = name_addr(&b[to.clone()], HeaderName::To)?
            .tag()
            .map(|t| sub_range(b, t));
        if !call_id_valid(&b[call_id.clone()]) {
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
        let max_forwards = match max_forwards_v {
            Some(r) => Some(
                parse_u32(&b[r])
                    .filter(|&n| n <= 255)
                    .ok_or(ParseError::BadHeaderValue("Max-Forwards"))?,
            ),
            None => None,
        };
        let content_length = match content_length_v {
            Some(r) => Some(parse_content_length(&b[r])?),
            None => None,
        };
        if let Some(r) = content_type_v {
            if !media_type_valid(&b[r]) {
                return Err(ParseError::BadHeaderValue("Content-Type"));
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

    /// The loose reading of a request [`Self::parse`] refused, only to write its `4xx`/`5xx`
    /// (RFC 3261 §8.2.6: the answer copies Via, From, To, Call-ID and CSeq). Header lines
    /// that are not `name: value` are left out of the index instead of failing it; nothing
    /// is validated but what addressing the answer needs.
    ///
    /// `None` — stay silent — for a response, an ACK (by its method or its CSeq: responses
    /// to ACK are never sent), an empty buffer, or a request whose first Via cannot carry an
    /// answer back ([`Via::answerable`]: no Via, or not even `SIP/x.y/transport sent-by`).
    /// The returned view's Call-ID, tags and top-Via parts are filled in where they parse
    /// and empty otherwise; its CSeq is `(0, Method::Other)` unless the CSeq parsed.
    pub fn parse_answerable(buf: Bytes) -> Option<SipMessage> {
        const MAX_HEADERS: usize = 4096;
        let len = buf.len();
        if len > u32::MAX as usize {
            return None;
        }
        let b: &[u8] = &buf;
        let start_offset = skip_keepalive(b);
        if start_offset >= len {
            return None;
        }
        let (sl_end, headers_start) = start_line_bounds(b, start_offset).ok()?;
        let line = b.get(start_offset..sl_end)?;
        if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
            return None; // a response (or what is left of one): never answered
        }
        let method_len = memchr(b' ', line).unwrap_or(line.len());
        let method_token = start_offset..start_offset + method_len;
        let method = Method::from_token(&b[method_token.clone()]);
        if method == Method::Ack {
            return None;
        }
        let uri = match (memchr(b' ', line), memrchr(b' ', line)) {
            (Some(a), Some(z)) if z > a + 1 => start_offset + a + 1..start_offset + z,
            _ => sl_end..sl_end,
        };
        let (headers, body_start) = index_headers(b, headers_start, MAX_HEADERS, true).ok()?;
        let first = |name: HeaderName| {
            headers
                .iter()
                .find(|h| h.name == name)
                .map(HeaderEntry::value_range)
        };
        let top_via = first(HeaderName::Via).and_then(|vr| {
            let r = list_elements(b.get(vr.clone())?).next()?;
            Some(vr.start + r.start..vr.start + r.end)
        })?;
        if !Via::answerable(b.get(top_via.clone())?) {
            return None;
        }
        let mut cseq = (0, Method::Other);
        let mut cseq_method = 0..0;
        if let Some(r) = first(HeaderName::CSeq) {
            if let Some((seq, m)) = b.get(r.clone()).and_then(parse_cseq) {
                let token = b.get(r.start + m.start..r.start + m.end).unwrap_or(&[]);
                if Method::from_token(token) == Method::Ack {
                    return None;
                }
                cseq = (seq, Method::from_token(token));
                cseq_method = r.start + m.start..r.start + m.end;
            }
        }
        let (mut via_transport, mut via_host, mut via_port, mut via_params) =
            (0..0, 0..0, None, 0..0);
        if let Ok(via) = Via::parse(b.get(top_via.clone()).unwrap_or(&[])) {
            via_transport = sub_range(b, via.transport);
            via_host = sub_range(b, via.host);
            via_port = via.port;
            via_params = sub_range(b, via.params);
        }
        let tag_of = |r: &Option<Range<usize>>| {
            let v = b.get(r.clone()?)?;
            NameAddr::parse(v).ok()?.tag().map(|t| sub_range(b, t))
        };
        let from = first(HeaderName::From);
        let to = first(HeaderName::To);
        Some(SipMessage {
            from_tag: tag_of(&from),
            to_tag: tag_of(&to),
            from: from.unwrap_or(0..0),
            to: to.unwrap_or(0..0),
            call_id: first(HeaderName::CallId).unwrap_or(0..0),
            start: StartLine::Request {
                method,
                method_token,
                uri,
            },
            headers,
            start_offset,
            headers_start,
            body_start,
            body: body_start..body_start,
            cseq,
            cseq_method,
            top_via,
            via_transport,
            via_host,
            via_port,
            via_params,
            via_count: 1,
            max_forwards: None,
            content_length: None,
            buf,
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

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parse_tests_rfc5118.rs"]
mod tests_rfc5118;
