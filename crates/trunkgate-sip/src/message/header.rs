//! Header names (full and compact forms) and the per-line index entry.

use super::lex::is_lws;

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
    ReplyTo,
    ReferTo,
    ReferredBy,
    PAssertedIdentity,
    PPreferredIdentity,
    Other,
}

impl HeaderName {
    /// Case-insensitive; understands the compact forms of RFC 3261 §7.3.3 and later RFCs
    /// (`v` Via, `f` From, `t` To, `i` Call-ID, `m` Contact, `l` Content-Length,
    /// `c` Content-Type, `k` Supported, ...).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
        let Some(&first) = name.first() else {
            return Other;
        };
        match (name.len(), first | 0x20) {
            (1, b'v') => Via,
            (1, b'f') => From,
            (1, b't') => To,
            (1, b'i') => CallId,
            (1, b'm') => Contact,
            (1, b'l') => ContentLength,
            (1, b'c') => ContentType,
            (1, b'k') => Supported,
            (1, b'r') => ReferTo,
            (1, b'b') => ReferredBy,
            (2, b't') if eq(b"to") => To,
            (3, b'v') if eq(b"via") => Via,
            (4, b'f') if eq(b"from") => From,
            (4, b'c') if eq(b"cseq") => CSeq,
            (5, b'r') if eq(b"route") => Route,
            (7, b'c') if eq(b"call-id") => CallId,
            (7, b'c') if eq(b"contact") => Contact,
            (7, b'r') if eq(b"require") => Require,
            (9, b's') if eq(b"supported") => Supported,
            (10, b'u') if eq(b"user-agent") => UserAgent,
            (12, b'm') if eq(b"max-forwards") => MaxForwards,
            (12, b'r') if eq(b"record-route") => RecordRoute,
            (12, b'c') if eq(b"content-type") => ContentType,
            (13, b'p') if eq(b"proxy-require") => ProxyRequire,
            (8, b'r') if eq(b"reply-to") => ReplyTo,
            (8, b'r') if eq(b"refer-to") => ReferTo,
            (11, b'r') if eq(b"referred-by") => ReferredBy,
            (19, b'p') if eq(b"p-asserted-identity") => PAssertedIdentity,
            (20, b'p') if eq(b"p-preferred-identity") => PPreferredIdentity,
            (14, b'c') if eq(b"content-length") => ContentLength,
            _ => Other,
        }
    }

    /// Canonical full name, as we write it when we add a header. `Other` has no name and
    /// gives `""`.
    pub fn canonical(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Contact => "Contact",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::ReplyTo => "Reply-To",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::PPreferredIdentity => "P-Preferred-Identity",
            HeaderName::Other => "",
        }
    }

    /// The compact form, when the header has one.
    pub fn compact(self) -> Option<&'static str> {
        Some(match self {
            HeaderName::Via => "v",
            HeaderName::From => "f",
            HeaderName::To => "t",
            HeaderName::CallId => "i",
            HeaderName::Contact => "m",
            HeaderName::ContentLength => "l",
            HeaderName::ContentType => "c",
            HeaderName::Supported => "k",
            HeaderName::ReferTo => "r",
            HeaderName::ReferredBy => "b",
            _ => return None,
        })
    }
}

/// Full name of a one-letter compact header name (RFC 3261 §7.3.3, RFC 3515, RFC 3892,
/// RFC 4028, RFC 6665, RFC 3841, RFC 8224), or `None`.
pub fn expand_compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Whether two header names denote the same header: case-insensitive, compact forms
/// expanded (`l` == `Content-Length`, `x` == `session-expires`).
pub fn names_equal(a: &[u8], b: &[u8]) -> bool {
    fn norm(n: &[u8]) -> &[u8] {
        match n {
            [c] => expand_compact(*c).map_or(n, str::as_bytes),
            _ => n,
        }
    }
    norm(a).eq_ignore_ascii_case(norm(b))
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

impl HeaderEntry {
    pub fn line_range(&self) -> std::ops::Range<usize> {
        self.line_start as usize..self.line_end as usize
    }
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.value_start as usize..self.value_end as usize
    }
}

/// Split a header value on commas that are outside `"quoted strings"` and `<...>`; each
/// piece is trimmed of linear whitespace; empty pieces are skipped.
pub fn split_values(value: &[u8]) -> SplitValues<'_> {
    SplitValues { s: value, pos: 0 }
}

/// Every comma-separated element of a list header, empty ones included, each trimmed
/// (commas inside quotes or `<...>` do not split). RFC 3261 lists (`x *(COMMA x)`) have no
/// empty elements, so `a,,b`, a leading or trailing comma and an empty value each yield an
/// empty element the caller refuses; [`split_values`] skips them instead.
pub(crate) fn list_elements(value: &[u8]) -> ListElements<'_> {
    ListElements {
        inner: SplitValues { s: value, pos: 0 },
        done: false,
        // No comma at all (nearly every real value): one element, the (trimmed) value.
        single: memchr::memchr(b',', value).is_none(),
    }
}

/// Iterator returned by [`list_elements`].
#[derive(Debug, Clone)]
pub(crate) struct ListElements<'a> {
    inner: SplitValues<'a>,
    done: bool,
    single: bool,
}

impl<'a> Iterator for ListElements<'a> {
    type Item = std::ops::Range<usize>;
    fn next(&mut self) -> Option<std::ops::Range<usize>> {
        if self.done {
            return None;
        }
        let s = self.inner.s;
        if self.single {
            self.done = true;
            let (mut a, mut z) = (0, s.len());
            while a < z && s.get(a).is_some_and(|&b| is_lws(b)) {
                a += 1;
            }
            while z > a && s.get(z - 1).is_some_and(|&b| is_lws(b)) {
                z -= 1;
            }
            return Some(a..z);
        }
        let (range, end) = self.inner.element_at(self.inner.pos);
        // `end` is the comma that ended the element, or the end of the value.
        if end >= s.len() {
            self.done = true;
        }
        self.inner.pos = end + 1;
        Some(range)
    }
}

/// Iterator returned by [`split_values`].
#[derive(Debug, Clone)]
pub struct SplitValues<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> SplitValues<'a> {
    /// Next value as a range relative to the input (trimmed), or `None` at the end.
    pub fn next_range(&mut self) -> Option<std::ops::Range<usize>> {
        loop {
            if self.pos >= self.s.len() {
                return None;
            }
            let (range, end) = self.element_at(self.pos);
            self.pos = end + 1;
            if !range.is_empty() {
                return Some(range);
            }
        }
    }

    /// The element starting at `start`: its trimmed range (possibly empty) and the index of
    /// the comma that ends it (or the input length).
    fn element_at(&self, start: usize) -> (std::ops::Range<usize>, usize) {
        let mut i = start;
        let mut in_quote = false;
        let mut in_angle = false;
        while let Some(&b) = self.s.get(i) {
            match b {
                b'"' if !in_angle => in_quote = !in_quote,
                b'\\' if in_quote => i += 1,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(self.s.len());
        let mut a = start.min(end);
        let mut z = end;
        while a < z && self.s.get(a).is_some_and(|&b| is_lws(b)) {
            a += 1;
        }
        while z > a && self.s.get(z - 1).is_some_and(|&b| is_lws(b)) {
            z -= 1;
        }
        (a..z, end)
    }
}

impl<'a> Iterator for SplitValues<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let r = self.next_range()?;
        self.s.get(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_full_compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"vIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"CALL-ID"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(
            HeaderName::from_bytes(b"content-LENGTH"),
            HeaderName::ContentLength
        );
        assert_eq!(HeaderName::from_bytes(b"m"), HeaderName::Contact);
        assert_eq!(HeaderName::from_bytes(b"k"), HeaderName::Supported);
        assert_eq!(HeaderName::from_bytes(b"s"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"Record-route"),
            HeaderName::RecordRoute
        );
        assert_eq!(
            HeaderName::from_bytes(b"max-forwards"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"X-Foo"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        for n in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::Contact,
            HeaderName::ContentLength,
            HeaderName::ContentType,
            HeaderName::UserAgent,
            HeaderName::Supported,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::ReplyTo,
            HeaderName::ReferTo,
            HeaderName::ReferredBy,
            HeaderName::PAssertedIdentity,
            HeaderName::PPreferredIdentity,
        ] {
            assert_eq!(HeaderName::from_bytes(n.canonical().as_bytes()), n);
            if let Some(c) = n.compact() {
                assert_eq!(HeaderName::from_bytes(c.as_bytes()), n);
            }
        }
        assert!(names_equal(b"x", b"Session-Expires"));
        assert!(names_equal(b"r", b"REFER-TO"));
        assert!(names_equal(b"o", b"event"));
        assert!(!names_equal(b"o", b"to"));
    }

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = b"\"Doe, John\" <sip:a@b;x=1,2>;q=1 ,<sip:c@d>,, sip:e@f\r\n\t";
        let parts: Vec<_> = split_values(v).collect();
        assert_eq!(
            parts,
            vec![
                &b"\"Doe, John\" <sip:a@b;x=1,2>;q=1"[..],
                &b"<sip:c@d>"[..],
                &b"sip:e@f"[..]
            ]
        );
        assert_eq!(split_values(b"").count(), 0);
        assert_eq!(split_values(b" , ,").count(), 0);
        assert_eq!(split_values(b"\"unterminated, x").count(), 1);
    }

    #[test]
    fn list_elements_keep_empty_ones() {
        let v = b"a, <b,c> ,,d,";
        let parts: Vec<&[u8]> = list_elements(v).map(|r| &v[r]).collect();
        assert_eq!(parts, vec![&b"a"[..], b"<b,c>", b"", b"d", b""]);
        assert_eq!(list_elements(b"").count(), 1);
        assert_eq!(list_elements(b"x").count(), 1);
        let v = b",x";
        let parts: Vec<&[u8]> = list_elements(v).map(|r| &v[r]).collect();
        assert_eq!(parts, vec![&b""[..], b"x"]);
        let v = b" <sip:a@b;x=\"q\"> ";
        let parts: Vec<&[u8]> = list_elements(v).map(|r| &v[r]).collect();
        assert_eq!(parts, vec![&b"<sip:a@b;x=\"q\">"[..]]);
    }
}
