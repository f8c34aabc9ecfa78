//! Start line and header index.

use super::{HeaderEntry, HeaderName, Method, Via};
use bytes::Bytes;
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
        Limits { max_message_size: 65_535, max_headers: 128, max_via: 32 }
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
    Request { method: Method, method_token: Range<usize>, uri: Range<usize> },
    Response { code: u16, reason: Range<usize> },
}

/// A parsed SIP message: the buffer plus an index into it. Cheap to clone (the buffer is
/// reference-counted).
#[derive(Debug, Clone)]
pub struct SipMessage {
    buf: Bytes,
    start: StartLine,
    headers: SmallVec<[HeaderEntry; 24]>,
    /// Offset of the first header line (just past the start line's CRLF).
    headers_start: usize,
    body: Range<usize>,
    cseq: (u32, Method),
}

impl SipMessage {
    /// Parse one whole message (a UDP datagram, or a stream frame cut by [`frame_len`]).
    /// Checks: start line; header syntax; mandatory Via, From, To, Call-ID, CSeq present and
    /// well-formed (the top Via parses, CSeq is `number method` and for requests the method
    /// matches); Max-Forwards numeric if present; Content-Length numeric and not larger than
    /// the bytes present (bytes past it are ignored); the limits.
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<SipMessage, ParseError> {
        todo!("{buf:?} {limits:?}")
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
    /// Offset of the first header line.
    pub fn headers_start(&self) -> usize {
        self.headers_start
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    pub fn method(&self) -> Option<Method> {
        todo!()
    }
    /// The method token as written (useful for `Method::Other`).
    pub fn method_token(&self) -> Option<&[u8]> {
        todo!()
    }
    pub fn request_uri(&self) -> Option<&[u8]> {
        todo!()
    }
    pub fn status(&self) -> Option<u16> {
        todo!()
    }
    pub fn headers(&self) -> &[HeaderEntry] {
        &self.headers
    }
    /// The trimmed value of one index entry.
    pub fn value(&self, entry: &HeaderEntry) -> &[u8] {
        todo!("{entry:?}")
    }
    /// Value of the first header line with this name.
    pub fn first(&self, name: HeaderName) -> Option<&[u8]> {
        todo!("{name:?}")
    }
    /// Every comma-separated value of every line with this name, in order (commas inside
    /// quotes or `<...>` do not split). Meant for Via, Route, Record-Route, Contact.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        let _ = name;
        #[allow(unreachable_code)]
        {
            todo!();
            std::iter::empty::<&[u8]>()
        }
    }
    pub fn call_id(&self) -> &[u8] {
        todo!()
    }
    pub fn cseq(&self) -> (u32, Method) {
        self.cseq
    }
    /// The method token of CSeq as written (for `Method::Other`).
    pub fn cseq_method_token(&self) -> &[u8] {
        todo!()
    }
    pub fn from_tag(&self) -> Option<&[u8]> {
        todo!()
    }
    pub fn to_tag(&self) -> Option<&[u8]> {
        todo!()
    }
    /// `None` when absent (validated numeric at parse time).
    pub fn max_forwards(&self) -> Option<u32> {
        todo!()
    }
    /// The first Via value (validated at parse time, so this does not fail).
    pub fn top_via(&self) -> Via<'_> {
        todo!()
    }
    pub fn via_count(&self) -> usize {
        todo!()
    }
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }
    /// A zero-copy sub-slice of the buffer (`range` must come from this message).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        self.buf.slice(range)
    }
}

/// Stream framing (TCP/TLS, RFC 3261 §18.3): given the bytes received so far on a
/// connection, return `Ok(Some(n))` when the first `n` bytes are one whole message
/// (headers up to the blank line plus Content-Length body bytes; a missing Content-Length
/// on a stream counts as 0), `Ok(None)` when more bytes are needed, or an error when the
/// head is already over `limits.max_message_size` or Content-Length is malformed.
/// Leading CRLFs (RFC 5626 keepalives) must be removed first with [`skip_keepalive`].
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    todo!("{buf:?} {limits:?}")
}

/// Number of leading CR/LF bytes (keepalive pings `\r\n\r\n`, pongs `\r\n`).
pub fn skip_keepalive(buf: &[u8]) -> usize {
    todo!("{buf:?}")
}
