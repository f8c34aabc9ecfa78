//! A trunk's header normalisation, `[trunk.outbound]` (requests sent to the trunk) and
//! `[trunk.inbound]` (requests from it to the PBX):
//!
//! ```toml
//! [trunk.outbound]
//! called = [["00", "+"], ["0", "+44"]]   # (prefix, replacement), first match wins
//! calling = [["0", "+44"]]
//! remove_headers = ["X-Internal-*"]      # a trailing * matches any rest
//! keep_headers = []                      # when set: only these (and what SIP needs)
//! add_headers = ["X-Account: 1234"]
//! user_agent = "Trunkgate"
//! ```

use super::Check;
use crate::HeaderRules;
use crate::raw::{Field, RawRules, Value};
use toml::Spanned;

/// Headers no rule may remove (the request would not be SIP without them).
const NEEDED: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "max-forwards",
    "contact",
    "route",
    "record-route",
    "content-length",
    "content-type",
    "v",
    "f",
    "t",
    "i",
    "m",
    "l",
    "c",
];

fn token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn number_part(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || b"+*#".contains(&b))
}

impl Check<'_, '_> {
    /// `[trunk.outbound]` / `[trunk.inbound]` of `owner` (`trunk "a" outbound`); `None` when
    /// absent or without a rule.
    pub(super) fn rules(
        &mut self,
        raw: Option<&Spanned<RawRules>>,
        owner: &str,
    ) -> Option<HeaderRules> {
        let t = raw?.get_ref();
        let rules = HeaderRules {
            called: self.number_rules(t.called.as_ref(), &format!("{owner}.called")),
            calling: self.number_rules(t.calling.as_ref(), &format!("{owner}.calling")),
            remove_headers: self.header_names(
                t.remove_headers.as_ref(),
                &format!("{owner}.remove_headers"),
                true,
            ),
            keep_headers: self.header_names(
                t.keep_headers.as_ref(),
                &format!("{owner}.keep_headers"),
                false,
            ),
            add_headers: self.header_lines(t.add_headers.as_ref(), &format!("{owner}.add_headers")),
            user_agent: t.user_agent.as_ref().and_then(|f| {
                let what = format!("{owner}.user_agent");
                let v = self.string(f, &what)?;
                if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
                    self.report.error(
                        &f.at,
                        format!("{what} must be printable text on one line"),
                        Some("write e.g. user_agent = \"Trunkgate\"".into()),
                    );
                    return None;
                }
                Some(v.to_owned())
            }),
        };
        (rules != HeaderRules::default()).then_some(rules)
    }

    /// `[["0", "+44"], …]`.
    fn number_rules(&mut self, f: Option<&Field>, what: &str) -> Vec<(String, String)> {
        let Some(f) = f else { return Vec::new() };
        let hint = "write pairs of (prefix, replacement), e.g. [[\"00\", \"+\"], [\"0\", \"+44\"]]";
        let Value::Array(items) = &f.value else {
            self.wrong_type(
                f,
                what,
                "an array of [prefix, replacement] pairs",
                Some(hint),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let pair = match &item.value {
                Value::Array(p) => match p.as_slice() {
                    [a, b] => match (&a.value, &b.value) {
                        (Value::Str(a), Value::Str(b)) => Some((a.clone(), b.clone())),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            let Some((prefix, replacement)) = pair else {
                self.report.error(
                    &item.at,
                    format!("each entry of {what} must be a [prefix, replacement] pair of strings"),
                    Some(hint.into()),
                );
                continue;
            };
            if prefix.is_empty() || !number_part(&prefix) || !number_part(&replacement) {
                self.report.error(
                    &item.at,
                    format!("[{prefix:?}, {replacement:?}] in {what} is not a number rule"),
                    Some(
                        "a prefix is one or more of 0-9 + * #, a replacement zero or more of them"
                            .into(),
                    ),
                );
                continue;
            }
            out.push((prefix, replacement));
        }
        out
    }

    /// Header names (a trailing `*` allowed when `wildcard`), lower-cased.
    fn header_names(&mut self, f: Option<&Field>, what: &str, removing: bool) -> Vec<String> {
        let Some(f) = f else { return Vec::new() };
        let mut out = Vec::new();
        for (name, at) in self.strings(f, what).unwrap_or_default() {
            let bare = name.strip_suffix('*').unwrap_or(name);
            if !token(bare) || (bare.is_empty() && name != "*") || bare.contains('*') {
                self.report.error(
                    at,
                    format!("`{name}` in {what} is not a header name"),
                    Some("write a name such as \"X-Internal-Id\", or a prefix with a trailing *: \"X-Internal-*\"".into()),
                );
                continue;
            }
            let lower = name.to_ascii_lowercase();
            if removing
                && NEEDED.iter().any(|n| {
                    *n == lower
                        || (lower.ends_with('*')
                            && n.starts_with(bare.to_ascii_lowercase().as_str()))
                })
            {
                self.report.error(
                    at,
                    format!("`{name}` in {what} would remove a header SIP needs"),
                    Some("Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route, Record-Route, Content-Length and Content-Type always pass".into()),
                );
                continue;
            }
            out.push(lower);
        }
        out
    }

    /// `["Name: value", …]`.
    fn header_lines(&mut self, f: Option<&Field>, what: &str) -> Vec<String> {
        let Some(f) = f else { return Vec::new() };
        let mut out = Vec::new();
        for (line, at) in self.strings(f, what).unwrap_or_default() {
            let ok = line.split_once(':').is_some_and(|(name, value)| {
                token(name.trim_end())
                    && !value.trim().is_empty()
                    && !NEEDED.contains(&name.trim_end().to_ascii_lowercase().as_str())
            }) && !line.bytes().any(|b| b.is_ascii_control());
            if !ok {
                self.report.error(
                    at,
                    format!("`{line}` in {what} is not a header line Trunkgate may add"),
                    Some("write \"Name: value\" on one line, e.g. \"X-Account: 1234\" (not a header SIP itself manages)".into()),
                );
                continue;
            }
            out.push(line.to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::Policy;
    use crate::tests::{BASE, assert_refused};

    #[test]
    fn rules_parse_and_refuse_what_they_must() {
        let src = format!(
            "{BASE}\n[trunk.outbound]\ncalled = [[\"00\", \"+\"], [\"0\", \"+44\"]]\ncalling = [[\"0\", \"+44\"]]\nremove_headers = [\"X-Internal-*\"]\nadd_headers = [\"X-Account: 1234\"]\nuser_agent = \"Trunkgate\"\n\n[trunk.inbound]\ncalled = [[\"+44\", \"0\"]]\n"
        );
        let p = Policy::from_toml(&src, "t.toml").unwrap();
        let out = p.trunks[0].outbound.as_ref().unwrap();
        assert_eq!(
            out.called,
            [("00".into(), "+".into()), ("0".into(), "+44".into())]
        );
        assert_eq!(out.remove_headers, ["x-internal-*"]);
        assert_eq!(out.user_agent.as_deref(), Some("Trunkgate"));
        assert_eq!(
            p.trunks[0].inbound.as_ref().unwrap().called,
            [("+44".into(), "0".into())]
        );
        // BASE is 10 lines; a blank line, the table header on 12, keys from 13.
        let bad = format!("{BASE}\n[trunk.outbound]\ncalled = [[\"0\", \"+44x\"]]\n");
        assert_refused(&bad, 13, 11, "is not a number rule");
        let needed = format!("{BASE}\n[trunk.outbound]\nremove_headers = [\"Via\"]\n");
        assert_refused(&needed, 13, 19, "would remove a header SIP needs");
        let line = format!("{BASE}\n[trunk.outbound]\nadd_headers = [\"X-Bad\"]\n");
        assert_refused(&line, 13, 16, "is not a header line");
        let typo = format!("{BASE}\n[trunk.outbound]\ncaled = []\n");
        let e = assert_refused(&typo, 13, 1, "unknown key `caled`");
        assert!(e.to_string().contains("did you mean `called`"), "{e}");
    }
}
