//! `[media]`, `listen.dscp` and a trunk's `media = { anchor = … }`.

use super::{Check, span_of};
use crate::raw::{Field, RawPolicy, RawTrunkMedia, Value};
use crate::values::Problem;
use crate::{Listen, Media, MediaAddress, MediaFastPath, MediaLatch};
use std::net::IpAddr;
use std::time::Duration;
use toml::Spanned;

pub(crate) mod defaults {
    pub const LISTEN_DSCP: u8 = 24;
    pub const MEDIA_DSCP: u8 = 46;
    pub const PORTS: (u16, u16) = (20000, 39999);
    pub const TIMEOUT: &str = "60s";
    pub const HOLD_TIMEOUT: &str = "1h";
    pub const THREADS: u32 = 1;
    pub const NICE: i8 = -10;
    pub const ONE_WAY_AFTER: &str = "5s";
    pub const QUALITY_INTERVAL: &str = "10s";
    pub const ASSUMED_DELAY: &str = "40ms";
}

impl Check<'_, '_> {
    /// `listen.dscp` (CS3 unless written).
    pub(super) fn listen_dscp(&mut self, raw: &RawPolicy) -> u8 {
        raw.listen
            .as_ref()
            .and_then(|t| t.get_ref().dscp.as_ref())
            .and_then(|f| self.dscp(f, "listen.dscp"))
            .unwrap_or(defaults::LISTEN_DSCP)
    }

    pub(super) fn media(&mut self, raw: &RawPolicy, listen: &Listen) -> Media {
        let table = raw.media.as_ref().map(|t| (t.get_ref(), span_of(t)));
        let t = table.as_ref().map(|(t, _)| *t);
        let field =
            |pick: fn(&crate::raw::RawMedia) -> &Option<Field>| t.and_then(|t| pick(t).as_ref());
        let (address, alternate) = self.media_addresses(field(|t| &t.address), listen);
        let advertised_list =
            field(|t| &t.advertised).map(|f| (self.ip_list(f, "media.advertised"), f));
        // The advertised entry of `family` (v6?), or the only one where a single address and a
        // single advertised address are written (any family, as before dual-stack).
        let pick = |v6: bool, single: bool| {
            advertised_list
                .as_ref()
                .and_then(|(list, _)| match list.as_slice() {
                    [only] if single => Some(*only),
                    list => list.iter().copied().find(|ip| ip.is_ipv6() == v6),
                })
        };
        let listen_ip = |v6: bool| {
            std::iter::once(listen.advertised.as_str())
                .chain(listen.advertised_alternate.as_deref())
                .filter_map(|h| h.parse::<IpAddr>().ok())
                .find(|ip| ip.is_ipv6() == v6 && !ip.is_unspecified())
        };
        let advertised = match pick(address.is_ipv6(), alternate.is_none()) {
            Some(ip) => Some(ip),
            None if !address.is_unspecified() => Some(address),
            None => match listen_ip(address.is_ipv6()).or_else(|| listen.advertised.parse::<IpAddr>().ok()) {
                Some(ip) if !ip.is_unspecified() => Some(ip),
                // listen.advertised itself was refused (already reported).
                _ if listen.advertised.is_empty() => None,
                _ => {
                    let at = field(|t| &t.address).map(|f| f.at.clone()).or_else(|| table.as_ref().map(|(_, at)| at.clone())).unwrap_or(crate::error::At::Nowhere);
                    self.report.error(
                        &at,
                        format!("media.advertised is not set, media.address {address} is unspecified and listen.advertised `{}` is no IP address", listen.advertised),
                        Some("set media.advertised to the IP address peers send RTP to, e.g. \"203.0.113.10\"".into()),
                    );
                    None
                }
            },
        }
        .unwrap_or(address);
        let alternate = alternate.map(|other| {
            let advertised = pick(other.is_ipv6(), false)
                .or_else(|| (!other.is_unspecified()).then_some(other))
                .or_else(|| listen_ip(other.is_ipv6()));
            let advertised = advertised.unwrap_or_else(|| {
                let at = field(|t| &t.address).map(|f| f.at.clone()).or_else(|| table.as_ref().map(|(_, at)| at.clone())).unwrap_or(crate::error::At::Nowhere);
                let family = if other.is_ipv6() { "IPv6" } else { "IPv4" };
                self.report.error(
                    &at,
                    format!("media.address {other} is unspecified and neither media.advertised nor listen.advertised names an {family} address"),
                    Some("list the address peers of that family send RTP to, e.g. media.advertised = [\"203.0.113.10\", \"2001:db8::10\"]".into()),
                );
                other
            });
            MediaAddress { address: other, advertised }
        });
        if let Some((list, f)) = &advertised_list {
            for ip in list {
                if ip.is_unspecified() {
                    self.report.error(
                        &f.at,
                        format!("media.advertised {ip} is unspecified"),
                        Some(
                            "peers send RTP to this address: write the relay's reachable IP".into(),
                        ),
                    );
                }
            }
            let families = [Some(address), alternate.map(|a| a.address)];
            if list.len() > 1 || alternate.is_some() {
                for ip in list {
                    if !families
                        .iter()
                        .flatten()
                        .any(|a| a.is_ipv6() == ip.is_ipv6())
                    {
                        let family = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
                        self.report.error(
                            &f.at,
                            format!("media.advertised {ip} is {family} but media.address has no {family} address"),
                            Some("list one bind address per family, e.g. media.address = [\"0.0.0.0\", \"::\"]".into()),
                        );
                    }
                }
            }
        }
        let (port_min, port_max) = field(|t| &t.ports)
            .and_then(|f| self.parsed(f, "media.ports", port_range))
            .unwrap_or(defaults::PORTS);
        let dscp = field(|t| &t.dscp)
            .and_then(|f| self.dscp(f, "media.dscp"))
            .unwrap_or(defaults::MEDIA_DSCP);
        let latch = field(|t| &t.latch)
            .and_then(|f| {
                self.parsed(f, "media.latch", |s| match s {
                    "auto" => Ok(MediaLatch::Auto),
                    "any" => Ok(MediaLatch::Any),
                    "sdp-ip" => Ok(MediaLatch::SdpIp),
                    "off" => Ok(MediaLatch::Off),
                    _ => Err(Problem::new(format!("`{s}` is not a latching mode"))
                        .hint("write \"auto\" (default), \"any\", \"sdp-ip\" or \"off\"")),
                })
            })
            .unwrap_or_default();
        let fastpath = field(|t| &t.fastpath)
            .and_then(|f| {
                self.parsed(f, "media.fastpath", |s| match s {
                    "auto" => Ok(MediaFastPath::Auto),
                    "kernel" => Ok(MediaFastPath::Kernel),
                    "userspace" => Ok(MediaFastPath::Userspace),
                    _ => Err(Problem::new(format!("`{s}` is not a media fast path"))
                        .hint("write \"auto\" (default), \"kernel\" or \"userspace\"")),
                })
            })
            .unwrap_or_default();
        let (timeout, timeout_at) =
            self.duration(field(|t| &t.timeout), "media.timeout", defaults::TIMEOUT);
        if let (true, Some(at)) = (timeout < Duration::from_secs(1), &timeout_at) {
            self.report.error(
                at,
                format!("media.timeout ({timeout:?}) is shorter than a second"),
                Some("a call is torn down after this much silence in both directions: write e.g. \"60s\"".into()),
            );
        }
        let (hold_timeout, hold_at) = self.duration(
            field(|t| &t.hold_timeout),
            "media.hold_timeout",
            defaults::HOLD_TIMEOUT,
        );
        if let (true, Some(at)) = (
            hold_timeout < timeout,
            hold_at.as_ref().or(timeout_at.as_ref()),
        ) {
            self.report.error(
                at,
                format!("media.hold_timeout ({hold_timeout:?}) is shorter than media.timeout ({timeout:?})"),
                Some("a held call sends less media than an active one: make hold_timeout at least timeout (default 1h)".into()),
            );
        }
        let threads = self.count(
            field(|t| &t.threads),
            "media.threads",
            1..=64,
            defaults::THREADS,
        );
        let nice = field(|t| &t.nice)
            .and_then(|f| self.integer(f, "media.nice", -20..=19))
            .and_then(|n| i8::try_from(n).ok())
            .unwrap_or(defaults::NICE);
        let (one_way_after, quality_interval, assumed_delay) = self.media_quality(t, timeout);
        Media {
            nice,
            one_way_after,
            quality_interval,
            assumed_delay,
            address,
            advertised,
            alternate,
            port_min,
            port_max,
            dscp,
            latch,
            fastpath,
            timeout,
            hold_timeout,
            threads,
        }
    }

    /// `media.address` (one IP, or one IPv4 and one IPv6 address), or its default: the
    /// first SIP listener's IP (`0.0.0.0` without listeners), plus the first specific
    /// listener IP of the other family. Returns the first and the other family's address.
    fn media_addresses(&mut self, f: Option<&Field>, listen: &Listen) -> (IpAddr, Option<IpAddr>) {
        let Some(f) = f else {
            let first = listen
                .sip
                .first()
                .map_or(IpAddr::from([0, 0, 0, 0]), |l| l.address.ip());
            let other = listen
                .sip
                .iter()
                .map(|l| l.address.ip())
                .find(|ip| ip.is_ipv6() != first.is_ipv6() && !ip.is_unspecified());
            return (first, other);
        };
        let list = self.ip_list(f, "media.address");
        match list.as_slice() {
            [] => (IpAddr::from([0, 0, 0, 0]), None),
            [one] => (*one, None),
            [first, other, ..] => (*first, Some(*other)),
        }
    }

    /// One IP address, or a list of one IPv4 and one IPv6 address (errors reported).
    fn ip_list(&mut self, f: &Field, what: &str) -> Vec<IpAddr> {
        let hint = "write one address, or one IPv4 and one IPv6 address: [\"192.0.2.10\", \"2001:db8::10\"]";
        let Value::Array(items) = &f.value else {
            return self.parsed(f, what, ip).into_iter().collect();
        };
        let list: Vec<IpAddr> = items
            .iter()
            .filter_map(|item| self.parsed(item, what, ip))
            .collect();
        if items.is_empty() {
            self.report
                .error(&f.at, format!("{what} is empty"), Some(hint.into()));
        } else if items.len() > 2 {
            self.report.error(
                &f.at,
                format!("{what} lists {} addresses", items.len()),
                Some(hint.into()),
            );
        } else if let [a, b] = list.as_slice() {
            if a.is_ipv6() == b.is_ipv6() {
                self.report.error(
                    &f.at,
                    format!("{what} lists {a} and {b}: both are of the same address family"),
                    Some(hint.into()),
                );
            }
        }
        list.into_iter().take(2).collect()
    }

    /// `media.one_way_after` (1 s up to `timeout`), `media.quality_interval` (1 s – 5 min),
    /// `media.assumed_delay` (at most 1 s).
    fn media_quality(
        &mut self,
        t: Option<&crate::raw::RawMedia>,
        timeout: Duration,
    ) -> (Duration, Duration, Duration) {
        let field =
            |pick: fn(&crate::raw::RawMedia) -> &Option<Field>| t.and_then(|t| pick(t).as_ref());
        let (one_way_after, at) = self.duration(
            field(|t| &t.one_way_after),
            "media.one_way_after",
            defaults::ONE_WAY_AFTER,
        );
        if let Some(at) = &at {
            if one_way_after < Duration::from_secs(1) {
                self.report.error(
                    at,
                    format!("media.one_way_after ({one_way_after:?}) is shorter than a second"),
                    Some("a call is flagged one-way after this long with audio from one side only: write e.g. \"5s\"".into()),
                );
            } else if one_way_after >= timeout {
                self.report.error(
                    at,
                    format!("media.one_way_after ({one_way_after:?}) is not shorter than media.timeout ({timeout:?})"),
                    Some("a call without media is ended at media.timeout: flag it before, e.g. one_way_after = \"5s\"".into()),
                );
            }
        }
        let (quality_interval, at) = self.duration(
            field(|t| &t.quality_interval),
            "media.quality_interval",
            defaults::QUALITY_INTERVAL,
        );
        if let (false, Some(at)) = (
            (Duration::from_secs(1)..=Duration::from_secs(300)).contains(&quality_interval),
            &at,
        ) {
            self.report.error(
                at,
                format!("media.quality_interval ({quality_interval:?}) is out of range"),
                Some(
                    "the MOS is estimated over intervals of 1 s to 5 min: write e.g. \"10s\""
                        .into(),
                ),
            );
        }
        let (assumed_delay, at) = self.duration(
            field(|t| &t.assumed_delay),
            "media.assumed_delay",
            defaults::ASSUMED_DELAY,
        );
        if let (true, Some(at)) = (assumed_delay > Duration::from_secs(1), &at) {
            self.report.error(
                at,
                format!("media.assumed_delay ({assumed_delay:?}) is longer than a second"),
                Some("this is the one-way network delay of a call without RTCP: write e.g. \"40ms\" (150ms for a satellite hop)".into()),
            );
        }
        (one_way_after, quality_interval, assumed_delay)
    }

    /// A trunk's `media = { anchor = BOOL }` (true unless written).
    pub(super) fn trunk_anchor(
        &mut self,
        raw: Option<&Spanned<RawTrunkMedia>>,
        name: &str,
    ) -> bool {
        raw.and_then(|m| m.get_ref().anchor.as_ref())
            .and_then(|f| self.boolean(f, &format!("trunk \"{name}\" media.anchor")))
            .unwrap_or(true)
    }

    /// A trunk's `topology_hiding = BOOL` (false unless written). Refused with
    /// `media = { anchor = false }`: the SDP's `c=`/`o=` lines would name the PBX's media
    /// address, which only the relay replaces.
    pub(super) fn topology_hiding(&mut self, f: Option<&Field>, name: &str, anchor: bool) -> bool {
        let Some(f) = f else {
            return false;
        };
        let hiding = self
            .boolean(f, &format!("trunk \"{name}\" topology_hiding"))
            .unwrap_or(false);
        if hiding && !anchor {
            self.report.error(
                &f.at,
                format!("trunk \"{name}\" has topology_hiding = true but media = {{ anchor = false }}"),
                Some("unanchored media sends the PBX's own address in the SDP c= and o= lines: anchor this trunk's media (remove media.anchor = false) or turn topology_hiding off".into()),
            );
        }
        hiding
    }

    /// A DSCP: an integer 0–63 or a name (`EF`, `CS0`–`CS7`, `AF11`–`AF43`, `BE`).
    fn dscp(&mut self, f: &Field, what: &str) -> Option<u8> {
        match &f.value {
            Value::Int(_) => self
                .integer(f, what, 0..=63)
                .and_then(|n| u8::try_from(n).ok()),
            Value::Str(_) => self.parsed(f, what, dscp_name),
            _ => {
                self.wrong_type(
                    f,
                    what,
                    "a DSCP name or number",
                    Some("write e.g. \"EF\", \"CS3\" or 46"),
                );
                None
            }
        }
    }
}

fn ip(s: &str) -> Result<IpAddr, Problem> {
    s.parse::<IpAddr>().map_err(|_| {
        Problem::new(format!("`{s}` is not an IP address"))
            .hint("write e.g. \"203.0.113.10\" or \"0.0.0.0\"")
    })
}

/// `"20000-39999"`: at least one even/odd pair, no privileged ports.
fn port_range(s: &str) -> Result<(u16, u16), Problem> {
    let hint =
        "write \"FIRST-LAST\", e.g. \"20000-39999\" (RTP on even ports, RTCP on the odd one above)";
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| Problem::new(format!("`{s}` is not a port range")).hint(hint))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| Problem::new(format!("`{p}` in `{s}` is not a port number")).hint(hint))
    };
    let (first, last) = (parse(a)?, parse(b)?);
    if first < 1024 {
        return Err(Problem::new(format!("{first} is a privileged port"))
            .hint("start at 1024 or above, e.g. \"20000-39999\""));
    }
    if last < first {
        return Err(Problem::new(format!("{first}-{last} ends before it starts")).hint(hint));
    }
    let first_even = first + (first % 2);
    if first_even >= last {
        return Err(Problem::new(format!("{first}-{last} holds no even/odd port pair")).hint(hint));
    }
    Ok((first, last))
}

fn dscp_name(s: &str) -> Result<u8, Problem> {
    let upper = s.to_ascii_uppercase();
    let value = match upper.as_str() {
        "EF" => Some(46),
        "BE" | "DEFAULT" => Some(0),
        "VOICE-ADMIT" => Some(44),
        _ => {
            if let Some(n) = upper.strip_prefix("CS") {
                n.parse::<u8>().ok().filter(|n| *n <= 7).map(|n| n << 3)
            } else if let Some(n) = upper.strip_prefix("AF") {
                let d = n.as_bytes();
                match d {
                    [c @ b'1'..=b'4', p @ b'1'..=b'3'] => {
                        Some(((c - b'0') << 3) | ((p - b'0') << 1))
                    }
                    _ => None,
                }
            } else {
                upper.parse::<u8>().ok().filter(|n| *n <= 63)
            }
        }
    };
    value.ok_or_else(|| {
        Problem::new(format!("`{s}` is not a DSCP name")).hint(
            "write EF (46, voice), CS3 (24, signaling), CS0–CS7, AF11–AF43, BE, or a number 0–63",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_names() {
        assert_eq!(dscp_name("EF").ok(), Some(46));
        assert_eq!(dscp_name("cs3").ok(), Some(24));
        assert_eq!(dscp_name("AF41").ok(), Some(34));
        assert_eq!(dscp_name("BE").ok(), Some(0));
        assert!(dscp_name("AF51").is_err());
        assert!(dscp_name("CS8").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("20000-39999").ok(), Some((20000, 39999)));
        assert_eq!(port_range("20001-20003").ok(), Some((20001, 20003)));
        assert!(port_range("20001-20002").is_err());
        assert!(port_range("80-100").is_err());
        assert!(port_range("30000-20000").is_err());
        assert!(port_range("x").is_err());
    }
}
