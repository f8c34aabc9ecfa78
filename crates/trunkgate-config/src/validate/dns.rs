//! `[dns]`: the name servers trunk names are looked up on (RFC 3263: SRV, then A/AAAA) and
//! how long a lookup may take. Without `servers` the system's `/etc/resolv.conf` is used.

use super::Check;
use crate::DnsSettings;
use crate::raw::RawDns;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use toml::Spanned;

pub(crate) mod defaults {
    pub const TIMEOUT: &str = "2s";
}

impl Check<'_, '_> {
    pub(super) fn dns(&mut self, raw: Option<&Spanned<RawDns>>) -> DnsSettings {
        let empty = RawDns::default();
        let t = raw.map_or(&empty, Spanned::get_ref);
        let mut servers = Vec::new();
        if let Some(f) = &t.servers {
            for (text, at) in self.strings(f, "dns.servers").unwrap_or_default() {
                match name_server(text) {
                    Some(server) if !servers.contains(&server) => servers.push(server),
                    Some(_) => {}
                    None => self.report.error(
                        at,
                        format!(
                            "`{text}` in dns.servers is not an IP address with an optional port"
                        ),
                        Some("write e.g. \"127.0.0.53\", \"10.0.0.2:5353\" or \"[::1]:53\"".into()),
                    ),
                }
            }
        }
        let (timeout, at) = self.duration(t.timeout.as_ref(), "dns.timeout", defaults::TIMEOUT);
        if let (true, Some(at)) = (
            timeout < Duration::from_millis(100) || timeout > Duration::from_secs(30),
            at,
        ) {
            self.report.error(
                &at,
                format!("dns.timeout ({timeout:?}) is outside 100ms–30s"),
                Some(format!("write e.g. \"{}\"", defaults::TIMEOUT)),
            );
        }
        DnsSettings { servers, timeout }
    }
}

/// `10.0.0.2`, `10.0.0.2:5353`, `::1`, `[::1]:5353`; port 53 unless given.
fn name_server(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::name_server;

    #[test]
    fn name_server_forms() {
        assert_eq!(
            name_server("10.0.0.2"),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            name_server("10.0.0.2:5353"),
            Some("10.0.0.2:5353".parse().unwrap())
        );
        assert_eq!(name_server("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(
            name_server("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(name_server("dns.example"), None);
        assert_eq!(name_server("10.0.0.2:0"), None);
    }
}
