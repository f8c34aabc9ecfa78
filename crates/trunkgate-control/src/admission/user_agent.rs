//! `security.block_user_agents`: scanner signatures matched as ASCII-case-insensitive
//! substrings of the User-Agent value, without allocating.

use memchr::memchr2_iter;

#[derive(Debug, Clone, Default)]
pub(crate) struct UserAgents {
    /// Lower-cased, non-empty.
    patterns: Vec<Box<[u8]>>,
}

impl UserAgents {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        UserAgents {
            patterns: patterns
                .iter()
                .map(|p| {
                    p.as_ref()
                        .as_bytes()
                        .to_ascii_lowercase()
                        .into_boxed_slice()
                })
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Does `user_agent` contain any pattern, ignoring ASCII case?
    pub fn matches(&self, user_agent: &[u8]) -> bool {
        self.patterns.iter().any(|p| contains(user_agent, p))
    }
}

/// `needle` (lower case, non-empty) in `haystack`, ignoring ASCII case.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let last_start = match haystack.len().checked_sub(needle.len()) {
        Some(n) => n,
        None => return false,
    };
    memchr2_iter(first, first.to_ascii_uppercase(), &haystack[..=last_start]).any(|i| {
        haystack
            .get(i + 1..i + needle.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_ignoring_case() {
        assert!(contains(b"abc friendly-SCANNER x", b"friendly-scanner"));
        assert!(contains(b"X", b"x"));
        assert!(!contains(b"", b"x"));
        assert!(!contains(b"sipviciou", b"sipvicious"));
        assert!(contains(b"sipvicious", b"sipvicious"));
        assert!(!contains(b"friendly scanner", b"friendly-scanner"));
        let ua = UserAgents::new(&["PortSIP VoIP SDK", "Smap"]);
        assert!(ua.matches(b"portsip voip sdk 11.2"));
        assert!(ua.matches(b"smap 0.6.0"));
        assert!(!ua.matches(b"Yealink SIP-T46S"));
        assert!(!UserAgents::new::<&str>(&[]).matches(b"sipvicious"));
    }
}
