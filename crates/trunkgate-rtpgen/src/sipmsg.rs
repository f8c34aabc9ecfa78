//! Just enough SIP message parsing for a test UA: the start line, headers (compact forms
//! expanded, repeated headers kept in order, comma lists split for Via/Record-Route) and the
//! body.

pub struct Msg<'a> {
    pub first: &'a str,
    headers: Vec<(&'static str, &'a str)>,
    pub body: &'a str,
}

fn canonical(name: &str) -> &'static str {
    let n = name.trim();
    let lower = |s: &str| n.eq_ignore_ascii_case(s);
    if lower("via") || lower("v") {
        "via"
    } else if lower("from") || lower("f") {
        "from"
    } else if lower("to") || lower("t") {
        "to"
    } else if lower("call-id") || lower("i") {
        "call-id"
    } else if lower("cseq") {
        "cseq"
    } else if lower("contact") || lower("m") {
        "contact"
    } else if lower("record-route") {
        "record-route"
    } else if lower("content-length") || lower("l") {
        "content-length"
    } else if lower("content-type") || lower("c") {
        "content-type"
    } else {
        "other"
    }
}

/// Splits a header value at commas that are outside <> and quotes.
fn split_commas(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, ch) in v.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

impl<'a> Msg<'a> {
    pub fn parse(buf: &'a [u8]) -> Option<Msg<'a>> {
        let text = std::str::from_utf8(buf).ok()?;
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => (text.trim_end(), ""),
        };
        let mut lines = head.split("\r\n");
        let first = lines.next()?.trim();
        if first.is_empty() {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':')?;
            let c = canonical(name);
            let value = value.trim();
            if c == "via" || c == "record-route" {
                for part in split_commas(value) {
                    headers.push((c, part));
                }
            } else if c != "other" {
                headers.push((c, value));
            }
        }
        let body = match headers
            .iter()
            .find(|(n, _)| *n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
        {
            Some(n) => body.get(..n).unwrap_or(body),
            None => body,
        };
        Some(Msg {
            first,
            headers,
            body,
        })
    }

    pub fn is_response(&self) -> bool {
        self.first.starts_with("SIP/2.0 ")
    }

    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.first.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn method(&self) -> Option<&'a str> {
        if self.is_response() {
            None
        } else {
            self.first.split_whitespace().next()
        }
    }

    pub fn ruri(&self) -> Option<&'a str> {
        if self.is_response() {
            None
        } else {
            self.first.split_whitespace().nth(1)
        }
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn all(&self, name: &str) -> Vec<&'a str> {
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .collect()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?))
    }
}

/// The `tag` parameter of a From/To value (outside the <>).
pub fn tag_of(v: &str) -> Option<&str> {
    let params = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| val.trim())
    })
}

/// The URI of a name-addr (`"x" <sip:a@b>;p`) or addr-spec (`sip:a@b;p`).
pub fn uri_of(v: &str) -> &str {
    if let (Some(s), Some(e)) = (v.find('<'), v.find('>')) {
        if s < e {
            return &v[s + 1..e];
        }
    }
    v.split(';').next().unwrap_or(v).trim()
}

/// The user part of a SIP URI.
pub fn user_of(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let m = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nRecord-Route: <sip:1.2.3.4;lr>,<sip:5.6.7.8;lr>\r\nf: <sip:x@y>;tag=abc\r\nTo: \"B, c\" <sip:n@h;user=phone>;tag=t1\r\ni: cid\r\nCSeq: 1 INVITE\r\nm: <sip:trunk@127.0.0.3:5060>\r\nl: 4\r\n\r\nv=0\r\nextra";
        let Some(m) = Msg::parse(m) else {
            unreachable!("parse failed")
        };
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.all("via").len(), 2);
        assert_eq!(
            m.all("record-route"),
            vec!["<sip:1.2.3.4;lr>", "<sip:5.6.7.8;lr>"]
        );
        assert_eq!(m.header("to").and_then(tag_of), Some("t1"));
        assert_eq!(m.header("from").and_then(tag_of), Some("abc"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(
            m.header("contact").map(uri_of),
            Some("sip:trunk@127.0.0.3:5060")
        );
        assert_eq!(m.body, "v=0\r");
        assert_eq!(user_of("sip:4930@127.0.0.1:5060"), Some("4930"));
    }
}
