//! From the policy as written ([`RawPolicy`]) to a [`Policy`]: types, ranges, defaults,
//! cross-references and the rules that span tables (unique names, disjoint allow lists).
//! Every problem goes to the [`Report`]; nothing stops at the first.

use crate::error::{At, Report};
use crate::raw::{Field, RawPolicy, Value};
use crate::values::{self, Problem};
use crate::{Admin, DrillSettings, Listen, ListenTransport, Policy, SipSettings};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use toml::Spanned;

mod accounts;
mod admission;
mod credentials;
mod dns;
mod failover;
mod limits;
mod media;
mod peers;
mod records;
mod routes;
mod rules;
mod testcalls;
mod tls;

/// The defaults of the optional keys (see docs/policy.md).
pub(crate) mod defaults {
    pub const LISTEN_SIP: &[&str] = &["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"];
    pub const T1: &str = "500ms";
    pub const T2: &str = "4s";
    pub const T4: &str = "5s";
    pub const TIMER_C: &str = "180s";
    pub const MAX_MESSAGE_SIZE: i64 = 65535;
    pub const TCP_IDLE_TIMEOUT: &str = "300s";
    pub const TCP_HEADER_TIMEOUT: &str = "10s";
    pub const SHUTDOWN_GRACE: &str = "30s";
    pub const DIALOG_TIMEOUT: &str = "12h";
    /// The SIP core thread's nice value: unchanged by default (-5 measured: round trips
    /// -20 % under CPU contention, CPU per call +10 % on the SIPp bench).
    pub const SIP_NICE: i8 = 0;
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9091";
    pub const DRILL_MAX_DURATION: &str = "30m";
    pub const MAX_HEADERS: i64 = 512;
    pub const MAX_VIA: i64 = 128;
    pub const OVERFLOW_RETRY_AFTER: &str = "10s";
    pub const BLOCK_USER_AGENTS: &[&str] = &[
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "VaxSIPUserAgent",
        "pplsip",
        "sundayddr",
        "iWar",
        "sip-scan",
        "SIPScan",
        "smap",
        "Ozeki",
        "PortSIP VoIP SDK",
    ];
    pub const FLOOD_RATE: u32 = 50;
    pub const FLOOD_BURST: u32 = 100;
    pub const FLOOD_BAN: &str = "5m";
    pub const FLOOD_MAX_SOURCES: u32 = 100_000;
    pub const FLOOD_IPV6_PREFIX: u8 = 64;
    pub const REGISTER_MAX_RATE: u32 = 20;
    pub const REGISTER_BURST: u32 = 40;
    pub const REGISTER_RETRY_AFTER_MIN: &str = "30s";
    pub const REGISTER_RETRY_AFTER_MAX: &str = "120s";
}

/// Validate `raw`. The returned policy is meaningful only if `report` gained no errors.
pub(crate) fn policy(raw: RawPolicy, report: &mut Report<'_>) -> Policy {
    let mut c = Check {
        report,
        tls_listener: false,
    };
    let mut listen = c.listen(&raw);
    listen.dscp = c.listen_dscp(&raw);
    c.tls_listener = listen
        .sip
        .iter()
        .any(|l| l.transport == ListenTransport::Tls);
    let tls = c.tls(&raw, &listen);
    let media = c.media(&raw, &listen);
    let sip = c.sip(&raw);
    let admin = c.admin(&raw);
    let drill = c.drill(&raw);
    let pbx = c.pbx(raw.pbx.as_ref());
    let (trunks, trunk_names) = c.trunks(raw.trunk);
    let routes = c.routes(raw.route, &trunk_names);
    let accounts = c.accounts(raw.account, &trunk_names);
    let security = c.security(raw.security.as_ref());
    let flood = c.flood(raw.flood.as_ref());
    let register = c.register(raw.register.as_ref());
    let health = c.health(raw.health.as_ref());
    let limits = c.limits(raw.limits.as_ref());
    let dns = c.dns(raw.dns.as_ref());
    let records = c.records(raw.records.as_ref());
    let test_calls = c.test_calls(raw.test_call, &trunk_names);
    let validate = c.validate_settings(raw.validate.as_ref(), &test_calls);
    let policy = Policy {
        listen,
        sip,
        admin,
        pbx: pbx.0,
        trunks: trunks.iter().map(|t| t.0.clone()).collect(),
        routes,
        accounts,
        security,
        flood,
        register,
        media,
        health,
        limits,
        drill,
        dns,
        records,
        validate,
        test_calls,
        tls,
    };
    c.disjoint_sources(&policy, &pbx.1, &trunks);
    policy
}

/// Locations of a peer's allow entries and address, for overlap errors.
struct PeerSpots {
    allow: Vec<At>,
    address: At,
}

struct Check<'r, 'a> {
    report: &'r mut Report<'a>,
    /// `listen.sip` has a `tls:` listener (peers may use `transport = "tls"`).
    tls_listener: bool,
}

fn span_of<T>(t: &Spanned<T>) -> At {
    At::Span(t.span())
}

impl Check<'_, '_> {
    fn problem(&mut self, at: &At, what: &str, p: Problem) {
        self.report
            .error(at, format!("{what}: {}", p.message), p.hint);
    }

    fn wrong_type(&mut self, f: &Field, what: &str, expected: &str, hint: Option<&str>) {
        let msg = format!("{what} must be {expected}, found {}", f.value.kind());
        self.report.error(&f.at, msg, hint.map(str::to_owned));
    }

    fn string<'f>(&mut self, f: &'f Field, what: &str) -> Option<&'f str> {
        match &f.value {
            Value::Str(s) => Some(s),
            _ => {
                self.wrong_type(f, what, "a string", None);
                None
            }
        }
    }

    /// A string value run through `parse`.
    fn parsed<T>(
        &mut self,
        f: &Field,
        what: &str,
        parse: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        let s = self.string(f, what)?;
        parse(s).map_err(|p| self.problem(&f.at, what, p)).ok()
    }

    /// An array of strings; reports each bad element and returns the good ones.
    fn strings<'f>(&mut self, f: &'f Field, what: &str) -> Option<Vec<(&'f str, &'f At)>> {
        let Value::Array(items) = &f.value else {
            self.wrong_type(
                f,
                what,
                "an array of strings",
                Some("write e.g. [\"a\", \"b\"]"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, &format!("each entry of {what}")) {
                out.push((s, &item.at));
            }
        }
        Some(out)
    }

    fn duration(&mut self, f: Option<&Field>, what: &str, default: &str) -> (Duration, Option<At>) {
        let fallback = values::duration(default).unwrap_or_default();
        let Some(f) = f else { return (fallback, None) };
        if let Value::Int(n) = f.value {
            let msg = format!("{what} must be a duration string, found the bare number {n}");
            self.report
                .error(&f.at, msg, Some("write a unit, e.g. \"10s\"".into()));
            return (fallback, None);
        }
        match self.parsed(f, what, values::duration) {
            Some(d) => (d, Some(f.at.clone())),
            None => (fallback, None),
        }
    }

    fn integer(
        &mut self,
        f: &Field,
        what: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let Value::Int(n) = f.value else {
            self.wrong_type(f, what, "an integer", None);
            return None;
        };
        if !range.contains(&n) {
            let msg = format!("{what} = {n} is out of range");
            let hint = format!(
                "{what} must be between {} and {}",
                range.start(),
                range.end()
            );
            self.report.error(&f.at, msg, Some(hint));
            return None;
        }
        Some(n)
    }

    fn boolean(&mut self, f: &Field, what: &str) -> Option<bool> {
        match f.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(f, what, "a boolean", Some("write true or false"));
                None
            }
        }
    }

    /// An optional integer key in `range`, as a `u32`; `default` when absent or refused.
    fn count(
        &mut self,
        f: Option<&Field>,
        what: &str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> u32 {
        let range = i64::from(*range.start())..=i64::from(*range.end());
        f.and_then(|f| self.integer(f, what, range))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    }

    /// A duration that is sent as whole seconds (`Retry-After`): at least one second.
    fn retry_after(
        &mut self,
        f: Option<&Field>,
        what: &str,
        default: &str,
    ) -> (Duration, Option<At>) {
        let (d, at) = self.duration(f, what, default);
        if let (true, Some(at)) = (d < Duration::from_secs(1), at.as_ref()) {
            let hint = "Retry-After is whole seconds: write at least \"1s\"";
            self.report.error(
                at,
                format!("{what} ({d:?}) is shorter than one second"),
                Some(hint.into()),
            );
        }
        (d, at)
    }

    fn listen(&mut self, raw: &RawPolicy) -> Listen {
        let table = raw.listen.as_ref().map(|t| (t.get_ref(), span_of(t)));
        let sip_field = table.as_ref().and_then(|(t, _)| t.sip.as_ref());
        let mut sip = Vec::new();
        match sip_field {
            None => sip.extend(
                defaults::LISTEN_SIP
                    .iter()
                    .filter_map(|l| values::listener(l).ok()),
            ),
            Some(f) => {
                let mut seen: HashMap<(ListenTransport, SocketAddr), &At> = HashMap::new();
                for (text, at) in self.strings(f, "listen.sip").unwrap_or_default() {
                    let Some(l) = values::listener(text)
                        .map_err(|p| self.problem(at, "listen.sip", p))
                        .ok()
                    else {
                        continue;
                    };
                    if let Some(first) = seen.get(&(l.transport, l.address)) {
                        let hint = format!(
                            "each listener may appear once; the first is at {}",
                            self.report.describe(first)
                        );
                        self.report.error(
                            at,
                            format!("listener `{text}` is listed twice"),
                            Some(hint),
                        );
                        continue;
                    }
                    seen.insert((l.transport, l.address), at);
                    sip.push(l);
                }
                if matches!(&f.value, Value::Array(a) if a.is_empty()) {
                    self.report.error(
                        &f.at,
                        "listen.sip is empty",
                        Some("name at least one listener, e.g. \"udp:0.0.0.0:5060\"".into()),
                    );
                }
            }
        }
        let (advertised, advertised_alternate) = match table
            .as_ref()
            .and_then(|(t, _)| t.advertised.as_ref())
        {
            Some(f) => self.listen_advertised(f),
            None => match sip.first().map(|l| l.address.ip()) {
                Some(ip) if ip.is_unspecified() => {
                    let at = match (sip_field, &table) {
                        (Some(f), _) => f.at.clone(),
                        (None, Some((_, at))) => at.clone(),
                        (None, None) => At::Nowhere,
                    };
                    let msg = format!(
                        "listen.advertised is not set and the first listener's address {ip} is unspecified"
                    );
                    self.report.error(
                        &at,
                        msg,
                        Some("set listen.advertised to the address peers reach".into()),
                    );
                    (String::new(), None)
                }
                Some(ip) => (ip.to_string(), None),
                None => (String::new(), None),
            },
        };
        Listen {
            sip,
            advertised,
            advertised_alternate,
            dscp: media::defaults::LISTEN_DSCP,
        }
    }

    /// `listen.advertised`: one host (IP literal, `[IPv6]` or DNS name), or a list of two
    /// for a dual-stack listener set: one IPv6 literal and one IPv4 literal or name
    /// (`["203.0.113.10", "2001:db8::10"]`). Returns the first entry and the second.
    fn listen_advertised(&mut self, f: &Field) -> (String, Option<String>) {
        const WHAT: &str = "listen.advertised";
        let one = |s: &str| {
            let bare = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            values::host(bare).map(|_| bare.to_owned())
        };
        let entries: Vec<(String, At)> = match &f.value {
            Value::Array(items) => items
                .iter()
                .filter_map(|item| Some((self.parsed(item, WHAT, one)?, item.at.clone())))
                .collect(),
            _ => match self.parsed(f, WHAT, one) {
                Some(host) => vec![(host, f.at.clone())],
                None => return (String::new(), None),
            },
        };
        let hint = "write one host, or one IPv4 address (or name) and one IPv6 address: \
                    [\"203.0.113.10\", \"2001:db8::10\"]";
        if matches!(&f.value, Value::Array(items) if items.is_empty()) {
            self.report
                .error(&f.at, "listen.advertised is empty", Some(hint.into()));
        }
        let is_v6 = |h: &str| h.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6());
        match entries.as_slice() {
            [] => (String::new(), None),
            [(a, _)] => (a.clone(), None),
            [(a, _), (b, at)] => {
                if is_v6(a) == is_v6(b) {
                    self.report.error(
                        at,
                        format!("listen.advertised lists `{a}` and `{b}`: both are for the same address family"),
                        Some(hint.into()),
                    );
                }
                (a.clone(), Some(b.clone()))
            }
            [(a, _), (b, _), (_, at), ..] => {
                self.report.error(
                    at,
                    "listen.advertised lists more than two hosts",
                    Some(hint.into()),
                );
                (a.clone(), Some(b.clone()))
            }
        }
    }

    fn sip(&mut self, raw: &RawPolicy) -> SipSettings {
        let t = raw.sip.as_ref().map(|t| t.get_ref());
        let field =
            |pick: fn(&crate::raw::RawSip) -> &Option<Field>| t.and_then(|t| pick(t).as_ref());
        let (t1, t1_at) = self.duration(field(|t| &t.t1), "sip.t1", defaults::T1);
        let (t2, t2_at) = self.duration(field(|t| &t.t2), "sip.t2", defaults::T2);
        let (t4, t4_at) = self.duration(field(|t| &t.t4), "sip.t4", defaults::T4);
        let (timer_c, c_at) =
            self.duration(field(|t| &t.timer_c), "sip.timer_c", defaults::TIMER_C);
        let (tcp_idle_timeout, idle_at) = self.duration(
            field(|t| &t.tcp_idle_timeout),
            "sip.tcp_idle_timeout",
            defaults::TCP_IDLE_TIMEOUT,
        );
        let (tcp_header_timeout, header_at) = self.duration(
            field(|t| &t.tcp_header_timeout),
            "sip.tcp_header_timeout",
            defaults::TCP_HEADER_TIMEOUT,
        );
        let (shutdown_grace, _) = self.duration(
            field(|t| &t.shutdown_grace),
            "sip.shutdown_grace",
            defaults::SHUTDOWN_GRACE,
        );
        for (d, at, what) in [
            (t1, &t1_at, "sip.t1"),
            (t4, &t4_at, "sip.t4"),
            (tcp_idle_timeout, &idle_at, "sip.tcp_idle_timeout"),
            (tcp_header_timeout, &header_at, "sip.tcp_header_timeout"),
        ] {
            if let (true, Some(at)) = (d.is_zero(), at) {
                self.report
                    .error(at, format!("{what} must be greater than zero"), None);
            }
        }
        if let (true, Some(at)) = (t2 < t1, t2_at.as_ref().or(t1_at.as_ref())) {
            let hint = "RFC 3261: T2 caps the retransmission interval and is at least T1 (defaults 500ms and 4s)";
            self.report.error(
                at,
                format!("sip.t2 ({t2:?}) is shorter than sip.t1 ({t1:?})"),
                Some(hint.into()),
            );
        }
        if let (true, Some(at)) = (timer_c < Duration::from_secs(180), c_at) {
            let hint = "RFC 3261 §16.6 requires Timer C to be at least 3 minutes: \"180s\" or more";
            self.report.error(
                &at,
                format!("sip.timer_c ({timer_c:?}) is shorter than 3 minutes"),
                Some(hint.into()),
            );
        }
        let max_message_size = field(|t| &t.max_message_size)
            .and_then(|f| self.integer(f, "sip.max_message_size", 1024..=65535))
            .unwrap_or(defaults::MAX_MESSAGE_SIZE);
        let max_headers = field(|t| &t.max_headers)
            .and_then(|f| self.integer(f, "sip.max_headers", 16..=1024))
            .unwrap_or(defaults::MAX_HEADERS);
        let max_via = field(|t| &t.max_via)
            .and_then(|f| self.integer(f, "sip.max_via", 2..=256))
            .unwrap_or(defaults::MAX_VIA);
        let (overflow_retry_after, _) = self.retry_after(
            field(|t| &t.overflow_retry_after),
            "sip.overflow_retry_after",
            defaults::OVERFLOW_RETRY_AFTER,
        );
        let (dialog_timeout, dialog_timeout_at) = self.duration(
            field(|t| &t.dialog_timeout),
            "sip.dialog_timeout",
            defaults::DIALOG_TIMEOUT,
        );
        if let (true, Some(at)) = (dialog_timeout < Duration::from_secs(60), dialog_timeout_at) {
            self.report.error(
                &at,
                format!("sip.dialog_timeout ({dialog_timeout:?}) is shorter than a minute"),
                Some(
                    "calls are forgotten after this much in-dialog silence: write e.g. \"12h\""
                        .into(),
                ),
            );
        }
        let nice = field(|t| &t.nice)
            .and_then(|f| self.integer(f, "sip.nice", -20..=19))
            .and_then(|n| i8::try_from(n).ok())
            .unwrap_or(defaults::SIP_NICE);
        SipSettings {
            nice,
            t1,
            t2,
            t4,
            timer_c,
            max_message_size: usize::try_from(max_message_size).unwrap_or(65535),
            tcp_idle_timeout,
            tcp_header_timeout,
            shutdown_grace,
            max_headers: u32::try_from(max_headers).unwrap_or(512),
            max_via: u32::try_from(max_via).unwrap_or(128),
            overflow_retry_after,
            dialog_timeout,
        }
    }

    fn admin(&mut self, raw: &RawPolicy) -> Admin {
        let fallback = SocketAddr::from((Ipv4Addr::LOCALHOST, 9091));
        let listen = raw
            .admin
            .as_ref()
            .and_then(|t| t.get_ref().listen.as_ref())
            .and_then(|f| {
                self.parsed(f, "admin.listen", |s| {
                    s.parse::<SocketAddr>().map_err(|_| {
                        Problem::new(format!("`{s}` is not an IP:PORT")).hint(format!(
                            "write e.g. \"{}\"; IPv6 as \"[::1]:9091\"",
                            defaults::ADMIN_LISTEN
                        ))
                    })
                })
            })
            .unwrap_or(fallback);
        let token_file = raw
            .admin
            .as_ref()
            .and_then(|t| t.get_ref().token_file.as_ref())
            .and_then(|f| {
                self.parsed(f, "admin.token_file", |s| {
                    if s.trim().is_empty() {
                        Err(Problem::new("the path is empty".to_owned()).hint(
                            "write the path of a file holding the token, e.g. \"/etc/trunkgate/admin.token\"".to_owned(),
                        ))
                    } else {
                        Ok(std::path::PathBuf::from(s))
                    }
                })
            });
        Admin { listen, token_file }
    }

    fn drill(&mut self, raw: &RawPolicy) -> DrillSettings {
        let field = raw
            .drill
            .as_ref()
            .and_then(|t| t.get_ref().max_duration.as_ref());
        let (max_duration, at) =
            self.duration(field, "drill.max_duration", defaults::DRILL_MAX_DURATION);
        if let (true, Some(at)) = (max_duration < Duration::from_secs(1), at) {
            self.report.error(
                &at,
                format!("drill.max_duration ({max_duration:?}) is shorter than a second"),
                Some(format!("write e.g. \"{}\"", defaults::DRILL_MAX_DURATION)),
            );
        }
        DrillSettings { max_duration }
    }
}
