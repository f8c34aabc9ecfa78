//! Zero-copy SIP message view (RFC 3261 §7, §20, §25).
//!
//! A [`SipMessage`] owns one received datagram or stream frame as a [`Bytes`] and indexes its
//! start line and header lines once (memchr over the buffer, offsets only, no per-header
//! allocation). Everything else (Via parameters, tags, CSeq, URIs) is parsed lazily, only when
//! the proxy asks. It accepts every form RFC 3261 allows: compact header names (`v`, `i`, `f`,
//! `t`, `m`, `l`, `c`, `k`, `s`, `e`, `o`, `r`, `u`, `x`...), any header-name case, folded
//! (continuation) lines, whitespace before the colon, comma-joined multi-value headers
//! (Via, Route, Record-Route, Contact), bracketed IPv6 references, and `Content-Length`
//! (bytes past it are ignored on datagrams; a missing one on a datagram means "to the end").
//!
//! Why not `rsip`: 0.4.0 (2022, unmaintained) mis-parses compact names, folding, space before
//! the colon and IPv6, and ignores Content-Length (measured, see docs/design/sip.md).
//!
//! Editing (for forwarding) is done by splicing: see [`rewrite`]; the original buffer is
//! never modified.

mod check;
mod frame;
pub mod header;
mod index;
mod lex;
pub mod parse;
pub mod rewrite;
pub mod uri;
pub mod via;

pub use frame::{frame_len, skip_keepalive};
pub use header::{HeaderEntry, HeaderName, SplitValues, expand_compact, names_equal, split_values};
pub use parse::{Limits, ParseError, SipMessage, StartLine};
pub use uri::{NameAddr, SipUri};
pub use via::Via;

/// A SIP method. `Other` keeps the token's byte range inside the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Refer,
    Subscribe,
    Notify,
    Message,
    Publish,
    Other,
}

impl Method {
    /// Recognise a method token (case-sensitive, as RFC 3261 §7.1 requires).
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The canonical token, or `"OTHER"` for methods we do not know by name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "OTHER",
        }
    }

    /// Index for per-method metric arrays (`0..Method::COUNT`).
    pub fn index(self) -> usize {
        self as usize
    }

    pub const COUNT: usize = 15;
    pub const ALL: [Method; 15] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Prack,
        Method::Update,
        Method::Info,
        Method::Refer,
        Method::Subscribe,
        Method::Notify,
        Method::Message,
        Method::Publish,
        Method::Other,
    ];
}
