//! Parsers for the value syntaxes of the policy: durations, listeners, `host:port`, CIDRs
//! and names. Each returns a [`Problem`] that `validate` places at the value's location.

use crate::{Host, HostPort, ListenTransport, Listener};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What is wrong with a value, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The SIP port used when an address has none.
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// `"500ms"`, `"10s"`, `"5m"`, `"1h"`.
pub(crate) fn duration(text: &str) -> Result<Duration, Problem> {
    let unit_hint = "write a whole number and a unit: ms, s, m, h or d, e.g. \"10s\"";
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(Problem::new(format!("`{text}` is not a duration")).hint(unit_hint));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| Problem::new(format!("`{text}` is too large a duration")))?;
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(Problem::new(format!("`{text}` has no unit")).hint(unit_hint)),
        _ => {
            return Err(
                Problem::new(format!("`{text}` has an unknown unit `{unit}`")).hint(unit_hint),
            );
        }
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| Problem::new(format!("`{text}` is too large a duration")))
}

/// `"udp:IP:PORT"` / `"tcp:IP:PORT"` / `"tls:IP:PORT"`; IPv6 as `"udp:[::1]:5060"`.
pub(crate) fn listener(text: &str) -> Result<Listener, Problem> {
    let form =
        "write \"udp:IP:PORT\", \"tcp:IP:PORT\" or \"tls:IP:PORT\", IPv6 as \"udp:[::1]:5060\"";
    let Some((transport, address)) = text.split_once(':') else {
        return Err(Problem::new(format!("`{text}` is not a listener")).hint(form));
    };
    let transport = match transport {
        "udp" => ListenTransport::Udp,
        "tcp" => ListenTransport::Tcp,
        "tls" => ListenTransport::Tls,
        other => {
            return Err(
                Problem::new(format!("unsupported listener transport `{other}`"))
                    .hint("supported transports: udp, tcp, tls"),
            );
        }
    };
    let address: SocketAddr = address.parse().map_err(|_| {
        Problem::new(format!(
            "`{address}` in listener `{text}` is not an IP:PORT"
        ))
        .hint(form)
    })?;
    if address.port() == 0 {
        return Err(Problem::new(format!("listener `{text}` has port 0")).hint(form));
    }
    Ok(Listener { transport, address })
}

/// `"host:port"`: host an IPv4 address, `[IPv6]` or a DNS name; port default 5060.
pub(crate) fn host_port(text: &str) -> Result<HostPort, Problem> {
    let form =
        "write \"HOST:PORT\" with an IPv4 address, [IPv6] or DNS name; the port defaults to 5060";
    if let Some(rest) = text.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(Problem::new(format!("`{text}` has an unclosed `[`")).hint(form));
        };
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| Problem::new(format!("`{ip}` is not an IPv6 address")).hint(form))?;
        let port = match after {
            "" => DEFAULT_SIP_PORT,
            _ => match after.strip_prefix(':') {
                Some(p) => port(p, text, form)?,
                None => return Err(Problem::new(format!("`{text}` is not HOST:PORT")).hint(form)),
            },
        };
        return Ok(HostPort {
            host: Host::Ip(IpAddr::V6(ip)),
            port,
            port_given: true,
        });
    }
    if text.matches(':').count() > 1 {
        return Err(Problem::new(format!("`{text}` is not HOST:PORT"))
            .hint("write an IPv6 address in brackets, e.g. \"[2001:db8::5]:5060\""));
    }
    let (host, port, port_given) = match text.split_once(':') {
        Some((h, p)) => (h, port(p, text, form)?, true),
        None => (text, DEFAULT_SIP_PORT, false),
    };
    let host = self::host(host).map_err(|p| Problem {
        hint: p.hint.or(Some(form.into())),
        ..p
    })?;
    if let Host::Ip(IpAddr::V6(_)) = host {
        return Err(Problem::new(format!("`{text}` is not HOST:PORT")).hint(form));
    }
    Ok(HostPort {
        host,
        port,
        port_given,
    })
}

fn port(p: &str, whole: &str, form: &str) -> Result<u16, Problem> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => {
            Err(Problem::new(format!("`{p}` in `{whole}` is not a port (1-65535)")).hint(form))
        }
        Ok(n) => Ok(n),
    }
}

/// An IP literal (IPv6 without brackets) or a DNS name.
pub(crate) fn host(text: &str) -> Result<Host, Problem> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if text.is_empty() {
        return Err(Problem::new("the host is empty"));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err(Problem::new(format!(
            "`{text}` is neither an IP address nor a DNS name"
        )));
    }
    // "10.0.0.300" is a broken IPv4 address, not a name: a DNS top label is never numeric.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Problem::new(format!(
            "`{text}` is not a valid IPv4 address"
        )));
    }
    Ok(Host::Name(text.to_owned()))
}

/// `"10.0.0.0/24"`, `"2001:db8::/32"`; a bare IP means /32 or /128.
pub(crate) fn cidr(text: &str) -> Result<IpNet, Problem> {
    let form = "write a network as \"10.0.0.0/24\" or a single address as \"10.0.0.5\"";
    if !text.contains('/') {
        return text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            Problem::new(format!("`{text}` is not an IP address or CIDR")).hint(form)
        });
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| Problem::new(format!("`{text}` is not a CIDR")).hint(form))?;
    if net.trunc() != net {
        return Err(Problem::new(format!(
            "`{text}` has bits set past the /{} prefix",
            net.prefix_len()
        ))
        .hint(format!("did you mean \"{}\"?", net.trunc())));
    }
    Ok(net)
}

/// Trunk and route names: `[a-z0-9_-]{1,64}`.
pub(crate) fn name(text: &str) -> Result<(), Problem> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!("`{text}` is not a valid name"))
            .hint("names are 1-64 characters of a-z, 0-9, `_` and `-`"))
    }
}

/// `match.to_prefix` entries: digits, `+`, `*`, `#`, or `""` for everything.
pub(crate) fn to_prefix(text: &str) -> Result<(), Problem> {
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'*' | b'#'))
    {
        Ok(())
    } else {
        Err(
            Problem::new(format!("`{text}` is not a dialled-number prefix"))
                .hint("a prefix holds digits, `+`, `*` and `#`; \"\" matches every number"),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(duration("10").unwrap_err().message.contains("no unit"));
        assert!(duration("1.5s").is_err());
        assert!(duration("s").is_err());
        assert!(duration("10 s").is_err());
    }

    #[test]
    fn listeners() {
        let l = listener("udp:[::1]:5060").unwrap();
        assert_eq!(l.transport, ListenTransport::Udp);
        assert_eq!(l.address, "[::1]:5060".parse().unwrap());
        let l = listener("tls:0.0.0.0:5061").unwrap();
        assert_eq!(l.transport, ListenTransport::Tls);
        assert!(
            listener("sctp:0.0.0.0:5061")
                .unwrap_err()
                .hint
                .unwrap()
                .contains("udp, tcp, tls")
        );
        assert!(listener("udp:0.0.0.0").is_err());
        assert!(listener("udp:1.2.3.4:0").is_err());
    }

    #[test]
    fn host_ports() {
        let hp = host_port("sip.carrier.example").unwrap();
        assert_eq!(hp.host, Host::Name("sip.carrier.example".into()));
        assert_eq!(hp.port, 5060);
        assert_eq!(host_port("[::1]:5070").unwrap().to_string(), "[::1]:5070");
        assert_eq!(host_port("[::1]").unwrap().port, 5060);
        assert_eq!(
            host_port("10.0.0.5:5080").unwrap().to_string(),
            "10.0.0.5:5080"
        );
        assert!(host_port("::1").is_err());
        assert!(host_port("10.0.0.300:5060").is_err());
        assert!(host_port("a..b:5060").is_err());
        assert!(host_port("host:99999").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            cidr("10.0.0.5").unwrap(),
            "10.0.0.5/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(cidr("::1").unwrap(), "::1/128".parse::<IpNet>().unwrap());
        assert!(cidr("10.0.0.0/33").is_err());
        assert_eq!(
            cidr("10.0.0.1/24").unwrap_err().hint.unwrap(),
            "did you mean \"10.0.0.0/24\"?"
        );
    }
}
