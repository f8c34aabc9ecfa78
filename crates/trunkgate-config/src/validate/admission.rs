//! The admission tables: `[security]` (unknown sources, scanner User-Agents), `[flood]`
//! (per-source rate limit and bans) and `[register]` (registration storms). Every key is
//! optional; a missing table means all defaults.

use super::{Check, defaults};
use crate::raw::{Field, RawFlood, RawRegister, RawSecurity};
use crate::values::Problem;
use crate::{Flood, Register, Security, UnknownSource};
use toml::Spanned;

impl Check<'_, '_> {
    pub(super) fn security(&mut self, raw: Option<&Spanned<RawSecurity>>) -> Security {
        let empty = RawSecurity::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let unknown_source = t
            .unknown_source
            .as_ref()
            .and_then(|f| {
                self.parsed(f, "security.unknown_source", |s| match s {
                    "drop" => Ok(UnknownSource::Drop),
                    "reject" => Ok(UnknownSource::Reject),
                    _ => Err(Problem::new(format!("unknown policy `{s}`")).hint(
                        "one of: \"drop\" (no answer, the default) or \"reject\" (403 Forbidden)",
                    )),
                })
            })
            .unwrap_or_default();
        let block_user_agents = match &t.block_user_agents {
            None => defaults::BLOCK_USER_AGENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            Some(f) => self.user_agents(f),
        };
        Security {
            unknown_source,
            block_user_agents,
        }
    }

    fn user_agents(&mut self, f: &Field) -> Vec<String> {
        let what = "security.block_user_agents";
        let mut out = Vec::new();
        for (text, at) in self.strings(f, what).unwrap_or_default() {
            if text.trim().is_empty() {
                let hint = "an empty pattern would match every User-Agent; write [] to block none";
                self.report
                    .error(at, format!("{what} has an empty entry"), Some(hint.into()));
                continue;
            }
            out.push(text.to_owned());
        }
        out
    }

    pub(super) fn flood(&mut self, raw: Option<&Spanned<RawFlood>>) -> Flood {
        let empty = RawFlood::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let rate = self.count(
            t.rate.as_ref(),
            "flood.rate",
            1..=u32::MAX,
            defaults::FLOOD_RATE,
        );
        let burst = self.count(
            t.burst.as_ref(),
            "flood.burst",
            1..=u32::MAX,
            defaults::FLOOD_BURST,
        );
        let (ban, ban_at) = self.duration(t.ban.as_ref(), "flood.ban", defaults::FLOOD_BAN);
        if let (true, Some(at)) = (ban.is_zero(), ban_at) {
            let hint = "a source over the limit is dropped for this long; e.g. \"5m\"";
            self.report.error(
                &at,
                "flood.ban must be greater than zero",
                Some(hint.into()),
            );
        }
        let exempt_peers = t
            .exempt_peers
            .as_ref()
            .and_then(|f| self.boolean(f, "flood.exempt_peers"))
            .unwrap_or(true);
        let (exempt, _) = self.allow(t.exempt.as_ref(), "flood.exempt");
        let max_sources = self.count(
            t.max_sources.as_ref(),
            "flood.max_sources",
            1..=10_000_000,
            defaults::FLOOD_MAX_SOURCES,
        );
        let ipv6_prefix = self
            .count(
                t.ipv6_prefix.as_ref(),
                "flood.ipv6_prefix",
                32..=128,
                u32::from(defaults::FLOOD_IPV6_PREFIX),
            )
            .try_into()
            .unwrap_or(defaults::FLOOD_IPV6_PREFIX);
        Flood {
            rate,
            burst,
            ban,
            exempt_peers,
            exempt,
            max_sources,
            ipv6_prefix,
        }
    }

    pub(super) fn register(&mut self, raw: Option<&Spanned<RawRegister>>) -> Register {
        let empty = RawRegister::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let max_rate = self.count(
            t.max_rate.as_ref(),
            "register.max_rate",
            1..=u32::MAX,
            defaults::REGISTER_MAX_RATE,
        );
        let burst = self.count(
            t.burst.as_ref(),
            "register.burst",
            1..=u32::MAX,
            defaults::REGISTER_BURST,
        );
        let (retry_after_min, min_at) = self.retry_after(
            t.retry_after_min.as_ref(),
            "register.retry_after_min",
            defaults::REGISTER_RETRY_AFTER_MIN,
        );
        let (retry_after_max, max_at) = self.retry_after(
            t.retry_after_max.as_ref(),
            "register.retry_after_max",
            defaults::REGISTER_RETRY_AFTER_MAX,
        );
        if let (true, Some(at)) = (
            retry_after_max < retry_after_min,
            max_at.as_ref().or(min_at.as_ref()),
        ) {
            let hint = "the Retry-After of a refused REGISTER is drawn from [retry_after_min, retry_after_max]; defaults \"30s\" and \"120s\"";
            self.report.error(
                at,
                format!(
                    "register.retry_after_max ({retry_after_max:?}) is shorter than register.retry_after_min ({retry_after_min:?})"
                ),
                Some(hint.into()),
            );
        }
        Register {
            max_rate,
            burst,
            retry_after_min,
            retry_after_max,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use crate::tests::{BASE, assert_refused, env};
    use crate::{Policy, UnknownSource};
    use ipnet::IpNet;
    use std::time::Duration;

    fn ok(src: &str) -> Policy {
        Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// BASE with `lines` added to the trunk (after line 10).
    fn trunk(lines: &str) -> String {
        BASE.replace(
            "address = \"127.0.0.3:5060\"\n",
            &format!("address = \"127.0.0.3:5060\"\n{lines}\n"),
        )
    }

    #[test]
    fn defaults_when_tables_are_absent() {
        let p = ok(BASE);
        assert_eq!(p.security.unknown_source, UnknownSource::Drop);
        assert_eq!(p.security.block_user_agents.len(), 12);
        assert!(
            p.security
                .block_user_agents
                .iter()
                .any(|u| u == "friendly-scanner")
        );
        assert!(
            p.security
                .block_user_agents
                .iter()
                .any(|u| u == "PortSIP VoIP SDK")
        );
        let f = &p.flood;
        assert_eq!((f.rate, f.burst), (50, 100));
        assert_eq!(f.ban, Duration::from_secs(300));
        assert!(f.exempt_peers);
        assert!(f.exempt.is_empty());
        assert_eq!((f.max_sources, f.ipv6_prefix), (100_000, 64));
        let r = &p.register;
        assert_eq!((r.max_rate, r.burst), (20, 40));
        assert_eq!(
            (r.retry_after_min, r.retry_after_max),
            (Duration::from_secs(30), Duration::from_secs(120))
        );
        assert_eq!((p.sip.max_headers, p.sip.max_via), (512, 128));
        assert_eq!(p.sip.overflow_retry_after, Duration::from_secs(10));
        let t = &p.trunks[0];
        assert_eq!(
            (t.max_inbound, t.max_outbound, t.cps_burst),
            (None, None, None)
        );
    }

    #[test]
    fn every_admission_key_parses() {
        let src = trunk(
            "max_sessions = 30\nmax_inbound = 10\nmax_outbound = 30\nmax_cps = 5\ncps_burst = 12",
        ) + r#"
[sip]
max_headers = 64
max_via = 8
overflow_retry_after = "1m"
[security]
unknown_source = "reject"
block_user_agents = ["evil-dialer", "SIPVicious"]
[flood]
rate = 10
burst = 20
ban = "30s"
exempt_peers = false
exempt = ["192.0.2.0/24", "2001:db8::1"]
max_sources = 5000
ipv6_prefix = 56
[register]
max_rate = 5
burst = 10
retry_after_min = "10s"
retry_after_max = "10s"
"#;
        let p = ok(&src);
        let t = &p.trunks[0];
        assert_eq!(t.max_sessions, Some(30));
        assert_eq!(
            (t.max_inbound, t.max_outbound, t.max_cps, t.cps_burst),
            (Some(10), Some(30), Some(5), Some(12))
        );
        assert_eq!((p.sip.max_headers, p.sip.max_via), (64, 8));
        assert_eq!(p.sip.overflow_retry_after, Duration::from_secs(60));
        assert_eq!(p.security.unknown_source, UnknownSource::Reject);
        assert_eq!(p.security.block_user_agents, ["evil-dialer", "SIPVicious"]);
        let f = &p.flood;
        assert_eq!((f.rate, f.burst, f.ban), (10, 20, Duration::from_secs(30)));
        assert!(!f.exempt_peers);
        assert_eq!(
            f.exempt,
            vec![
                "192.0.2.0/24".parse::<IpNet>().unwrap(),
                "2001:db8::1/128".parse().unwrap()
            ]
        );
        assert_eq!((f.max_sources, f.ipv6_prefix), (5000, 56));
        assert_eq!((p.register.max_rate, p.register.burst), (5, 10));
        assert_eq!(p.register.retry_after_min, p.register.retry_after_max);
    }

    #[test]
    fn cps_burst_defaults_to_max_cps_and_needs_it() {
        let p = ok(&trunk("max_cps = 7"));
        assert_eq!(p.trunks[0].cps_burst, Some(7));
        let e = assert_refused(
            &trunk("cps_burst = 5"),
            11,
            13,
            "trunk \"carrier-a\" has cps_burst but no max_cps",
        );
        assert!(e.0[0].hint.as_deref().unwrap().contains("set max_cps too"));
        assert_refused(
            &trunk("max_cps = 5\ncps_burst = 0"),
            12,
            13,
            "trunk \"carrier-a\" cps_burst = 0 is out of range",
        );
    }

    #[test]
    fn direction_limits_stay_within_max_sessions() {
        let p = ok(&trunk("max_inbound = 500"));
        assert_eq!(p.trunks[0].max_inbound, Some(500), "no max_sessions: any");
        let e = assert_refused(
            &trunk("max_sessions = 10\nmax_inbound = 4\nmax_outbound = 11"),
            13,
            16,
            "trunk \"carrier-a\" max_outbound = 11 is more than max_sessions = 10",
        );
        assert_eq!(e.len(), 1, "{e}");
        assert!(e.0[0].hint.as_deref().unwrap().contains("at most 10"));
        assert_refused(
            &trunk("max_inbound = 0"),
            11,
            15,
            "trunk \"carrier-a\" max_inbound = 0 is out of range",
        );
    }

    #[test]
    fn security_refusals() {
        let src = format!("{BASE}[security]\nunknown_source = \"ignore\"\n");
        let e = assert_refused(
            &src,
            12,
            18,
            "security.unknown_source: unknown policy `ignore`",
        );
        assert!(e.0[0].hint.as_deref().unwrap().contains("\"reject\""));
        let src = format!("{BASE}[security]\nblock_user_agents = [\"sipvicious\", \" \"]\n");
        let e = assert_refused(
            &src,
            12,
            36,
            "security.block_user_agents has an empty entry",
        );
        assert!(e.0[0].hint.as_deref().unwrap().contains("write []"));
        let src = format!("{BASE}[security]\nblock_user_agents = \"sipvicious\"\n");
        assert_refused(
            &src,
            12,
            21,
            "security.block_user_agents must be an array of strings, found a string",
        );
        let none = ok(&format!("{BASE}[security]\nblock_user_agents = []\n"));
        assert!(none.security.block_user_agents.is_empty());
    }

    #[test]
    fn flood_refusals() {
        let src = format!(
            "{BASE}[flood]\nrate = 0\nban = \"0s\"\nexempt_peers = \"yes\"\nexempt = [\"10.0.0.1/24\"]\nmax_sources = 0\nipv6_prefix = 16\nburst = -1\n"
        );
        let e = assert_refused(&src, 12, 8, "flood.rate = 0 is out of range");
        assert_refused(&src, 13, 7, "flood.ban must be greater than zero");
        assert_refused(
            &src,
            14,
            16,
            "flood.exempt_peers must be a boolean, found a string",
        );
        assert_refused(&src, 15, 11, "flood.exempt: `10.0.0.1/24` has bits set");
        assert_refused(&src, 16, 15, "flood.max_sources = 0 is out of range");
        let prefix = assert_refused(&src, 17, 15, "flood.ipv6_prefix = 16 is out of range");
        assert!(
            prefix
                .iter()
                .any(|e| e.hint.as_deref() == Some("flood.ipv6_prefix must be between 32 and 128"))
        );
        assert_refused(&src, 18, 9, "flood.burst = -1 is out of range");
        assert_eq!(e.len(), 7, "{e}");
    }

    #[test]
    fn register_and_sip_refusals() {
        let src = format!(
            "{BASE}[register]\nmax_rate = 0\nretry_after_min = \"60s\"\nretry_after_max = \"30s\"\n"
        );
        assert_refused(&src, 12, 12, "register.max_rate = 0 is out of range");
        let e = assert_refused(
            &src,
            14,
            19,
            "register.retry_after_max (30s) is shorter than register.retry_after_min (60s)",
        );
        assert_eq!(e.len(), 2, "{e}");
        // Only the minimum written: the default maximum (120s) is below it.
        let src = format!("{BASE}[register]\nretry_after_min = \"5m\"\n");
        assert_refused(&src, 12, 19, "register.retry_after_max (120s)");
        let src = format!("{BASE}[register]\nretry_after_min = \"500ms\"\n");
        assert_refused(
            &src,
            12,
            19,
            "register.retry_after_min (500ms) is shorter than one second",
        );
        let src =
            format!("{BASE}[sip]\nmax_headers = 8\nmax_via = 1\noverflow_retry_after = \"0s\"\n");
        assert_refused(&src, 12, 15, "sip.max_headers = 8 is out of range");
        assert_refused(&src, 13, 11, "sip.max_via = 1 is out of range");
        let e = assert_refused(
            &src,
            14,
            24,
            "sip.overflow_retry_after (0ns) is shorter than one second",
        );
        assert_eq!(e.len(), 3, "{e}");
    }

    #[test]
    fn dialog_timeout_defaults_to_12h_and_refuses_under_a_minute() {
        let p = Policy::from_toml(BASE, "p.toml").unwrap();
        assert_eq!(p.sip.dialog_timeout, Duration::from_secs(12 * 3600));
        let src = format!("{BASE}[sip]\ndialog_timeout = \"4h\"\n");
        let p = Policy::from_toml(&src, "p.toml").unwrap();
        assert_eq!(p.sip.dialog_timeout, Duration::from_secs(4 * 3600));
        let src = format!("{BASE}[sip]\ndialog_timeout = \"30s\"\n");
        assert_refused(
            &src,
            12,
            18,
            "sip.dialog_timeout (30s) is shorter than a minute",
        );
    }

    #[test]
    fn sip_nice_defaults_to_0_and_is_a_nice_value() {
        let p = Policy::from_toml(BASE, "p.toml").unwrap();
        assert_eq!(p.sip.nice, 0);
        let src = format!("{BASE}[sip]\nnice = -5\n");
        assert_eq!(Policy::from_toml(&src, "p.toml").unwrap().sip.nice, -5);
        let src = format!("{BASE}[sip]\nnice = -30\n");
        let e = Policy::from_toml(&src, "p.toml").unwrap_err().to_string();
        assert!(e.contains("sip.nice") && e.contains(":12:"), "{e}");
    }

    #[test]
    fn unknown_key_in_new_tables_lists_its_keys() {
        let src = format!("{BASE}[flood]\nrat = 10\n");
        let e = assert_refused(&src, 12, 1, "unknown key `rat` in [flood]");
        let hint = e.0[0].hint.as_deref().unwrap();
        assert!(hint.starts_with("did you mean `rate`?"), "{hint}");
        assert!(hint.contains("ipv6_prefix"), "{hint}");
        let src = trunk("cps_bust = 3");
        let e = assert_refused(&src, 11, 1, "unknown key `cps_bust` in [[trunk]]");
        assert!(
            e.0[0]
                .hint
                .as_deref()
                .unwrap()
                .starts_with("did you mean `cps_burst`?")
        );
        assert_refused(
            &format!("{BASE}[register]\nmax_rte = 1\n"),
            12,
            1,
            "unknown key `max_rte` in [register]",
        );
        assert_refused(
            &format!("{BASE}[security]\nunknown = 1\n"),
            12,
            1,
            "unknown key `unknown` in [security]",
        );
    }

    #[test]
    fn env_overrides_reach_the_admission_tables() {
        let vars = env(&[
            ("TRUNKGATE_SECURITY__UNKNOWN_SOURCE", "reject"),
            ("TRUNKGATE_SECURITY__BLOCK_USER_AGENTS", "[]"),
            ("TRUNKGATE_FLOOD__RATE", "10"),
            ("TRUNKGATE_FLOOD__BAN", "1m"),
            ("TRUNKGATE_FLOOD__EXEMPT_PEERS", "false"),
            ("TRUNKGATE_FLOOD__EXEMPT", r#"["192.0.2.0/24"]"#),
            ("TRUNKGATE_REGISTER__MAX_RATE", "5"),
            ("TRUNKGATE_REGISTER__RETRY_AFTER_MAX", "45s"),
            ("TRUNKGATE_SIP__OVERFLOW_RETRY_AFTER", "20s"),
            ("TRUNKGATE_SIP__MAX_VIA", "16"),
        ]);
        let p = Policy::from_toml_with_env(BASE, "t.toml", &vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.security.unknown_source, UnknownSource::Reject);
        assert!(p.security.block_user_agents.is_empty());
        assert_eq!((p.flood.rate, p.flood.ban), (10, Duration::from_secs(60)));
        assert!(!p.flood.exempt_peers);
        assert_eq!(
            p.flood.exempt,
            vec!["192.0.2.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(p.register.max_rate, 5);
        assert_eq!(p.register.retry_after_max, Duration::from_secs(45));
        assert_eq!(p.sip.overflow_retry_after, Duration::from_secs(20));
        assert_eq!(p.sip.max_via, 16);

        let vars = env(&[
            ("TRUNKGATE_FLOOD__RAET", "10"),
            ("TRUNKGATE_FLOD__RATE", "10"),
            ("TRUNKGATE_REGISTER__BURST", "0"),
        ]);
        let e = Policy::from_toml_with_env(BASE, "t.toml", &vars).unwrap_err();
        let by = |var: &str| {
            e.iter()
                .find(|e| e.origin == var)
                .unwrap_or_else(|| panic!("{e}"))
        };
        assert!(
            by("TRUNKGATE_FLOOD__RAET")
                .hint
                .as_deref()
                .unwrap()
                .starts_with("did you mean `TRUNKGATE_FLOOD__RATE`?")
        );
        assert!(
            by("TRUNKGATE_FLOD__RATE")
                .hint
                .as_deref()
                .unwrap()
                .starts_with("did you mean `TRUNKGATE_FLOOD__RATE`?")
        );
        assert!(
            by("TRUNKGATE_REGISTER__BURST")
                .message
                .contains("register.burst = 0 is out of range")
        );
    }
}
