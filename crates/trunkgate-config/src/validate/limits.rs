//! `[limits]`: the per-source connection cap and the descriptor budget's shares. A share is
//! an integer or `"auto"`; whether the shares fit the process's descriptor limit can only be
//! known at start (the binary checks it then), so here only types and ranges are checked.

use super::Check;
use crate::Limits;
use crate::raw::{Field, RawLimits, Value};
use toml::Spanned;

pub(crate) mod defaults {
    pub const CONNECTIONS_PER_SOURCE: u32 = 64;
}

/// The smallest margin accepted: listeners, the admin API, the log, epoll and eventfds of
/// the runtime and the relay threads need a few dozen descriptors before any call.
pub const MIN_FD_MARGIN: u32 = 64;

impl Check<'_, '_> {
    pub(super) fn limits(&mut self, raw: Option<&Spanned<RawLimits>>) -> Limits {
        let empty = RawLimits::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        Limits {
            connections_per_source: self.count(
                t.connections_per_source.as_ref(),
                "limits.connections_per_source",
                1..=1_000_000,
                defaults::CONNECTIONS_PER_SOURCE,
            ),
            sip_connections: self.share(
                t.sip_connections.as_ref(),
                "limits.sip_connections",
                1..=10_000_000,
            ),
            media_calls: self.share(t.media_calls.as_ref(), "limits.media_calls", 0..=10_000_000),
            fd_margin: self.share(
                t.fd_margin.as_ref(),
                "limits.fd_margin",
                MIN_FD_MARGIN..=10_000_000,
            ),
        }
    }

    /// An integer in `range`, or `"auto"` (also when absent): `None`.
    fn share(
        &mut self,
        f: Option<&Field>,
        what: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        let f = f?;
        match &f.value {
            Value::Str(s) if s == "auto" => None,
            Value::Int(_) => {
                let range = i64::from(*range.start())..=i64::from(*range.end());
                self.integer(f, what, range)
                    .and_then(|n| u32::try_from(n).ok())
            }
            _ => {
                self.wrong_type(
                    f,
                    what,
                    "an integer or \"auto\"",
                    Some("write e.g. 4096, or \"auto\" to size it from the descriptor limit"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::Policy;
    use crate::tests::{BASE, assert_refused, env};

    #[test]
    fn defaults_are_auto_and_64_per_source() {
        let p = Policy::from_toml(BASE, "t.toml").unwrap();
        assert_eq!(p.limits.connections_per_source, 64);
        assert_eq!(p.limits.sip_connections, None);
        assert_eq!(p.limits.media_calls, None);
        assert_eq!(p.limits.fd_margin, None);
        assert_eq!(p.sip.tcp_header_timeout, std::time::Duration::from_secs(10));
    }

    #[test]
    fn shares_are_integers_or_auto() {
        let src = format!(
            "{BASE}[limits]\nconnections_per_source = 8\nsip_connections = 500\nmedia_calls = \"auto\"\nfd_margin = 300\n"
        );
        let p = Policy::from_toml(&src, "t.toml").unwrap();
        assert_eq!(p.limits.connections_per_source, 8);
        assert_eq!(p.limits.sip_connections, Some(500));
        assert_eq!(p.limits.media_calls, None);
        assert_eq!(p.limits.fd_margin, Some(300));
    }

    #[test]
    fn refusals_name_the_key() {
        let src = format!(
            "{BASE}[limits]\nconnections_per_source = 0\nsip_connections = \"lots\"\nmedia_calls = -1\nfd_margin = 10\n"
        );
        assert_refused(
            &src,
            12,
            26,
            "limits.connections_per_source = 0 is out of range",
        );
        assert_refused(
            &src,
            13,
            19,
            "limits.sip_connections must be an integer or \"auto\"",
        );
        assert_refused(&src, 14, 15, "limits.media_calls = -1 is out of range");
        assert_refused(&src, 15, 13, "limits.fd_margin = 10 is out of range");
        let header = format!("{BASE}[sip]\ntcp_header_timeout = \"0s\"\n");
        assert_refused(
            &header,
            12,
            22,
            "sip.tcp_header_timeout must be greater than zero",
        );
    }

    #[test]
    fn environment_overrides_reach_limits() {
        let vars = env(&[("TRUNKGATE_LIMITS__MEDIA_CALLS", "50")]);
        let p = Policy::from_toml_with_env(BASE, "t.toml", &vars).unwrap();
        assert_eq!(p.limits.media_calls, Some(50));
    }
}
