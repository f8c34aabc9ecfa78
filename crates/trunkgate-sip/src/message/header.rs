//! Header names (full and compact forms) and the per-line index entry.

/// Header names the proxy cares about; everything else is `Other` and passes through intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Route,
    RecordRoute,
    Contact,
    ContentLength,
    ContentType,
    UserAgent,
    Supported,
    Require,
    ProxyRequire,
    Other,
}

impl HeaderName {
    /// Case-insensitive; understands the compact forms of RFC 3261 §7.3.3 and later RFCs
    /// (`v` Via, `f` From, `t` To, `i` Call-ID, `m` Contact, `l` Content-Length,
    /// `c` Content-Type, `k` Supported, ...).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        todo!("{name:?}")
    }

    /// Canonical full name, as we write it when we add a header.
    pub fn canonical(self) -> &'static str {
        todo!()
    }
}

/// One header line in the index. Offsets are into the message buffer. For a folded header,
/// `line_end` is past the last continuation line, and the value range spans the folds
/// (value parsers treat CR, LF, SP and HTAB alike as linear whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEntry {
    pub name: HeaderName,
    /// Start of the header line (first byte of the name).
    pub line_start: u32,
    /// One past the line's terminating CRLF (or LF).
    pub line_end: u32,
    /// The value with leading and trailing whitespace trimmed.
    pub value_start: u32,
    pub value_end: u32,
}
