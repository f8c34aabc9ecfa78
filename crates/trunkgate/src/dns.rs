//! Trunk and PBX names, resolved as RFC 3263 §4 says for a SIP URI's host, with
//! `hickory-resolver` (the field's resolver: TTLs, TCP fallback, name-server rotation):
//!
//! - an IP literal is used as written;
//! - a name **with** a port: its A/AAAA records, at that port;
//! - a name **without** a port: its SRV records for the trunk's transport
//!   (`_sip._udp.NAME`, `_sip._tcp.NAME`, `_sips._tcp.NAME` for TLS; `auto` looks up
//!   `_sip._udp`), lowest priority
//!   first, equal priorities in RFC 2782 weighted-random order, each target's A/AAAA
//!   records at the SRV port; no SRV records: A/AAAA at 5060.
//!
//! NAPTR is not looked up: the policy names each trunk's transport, which is what NAPTR
//! would choose. Answers are cached for their TTL (1 s – 1 h); a thread re-resolves each
//! name when its answer expires and, when the addresses changed, has the policy rebuilt
//! (health, limits and drills carry over as on reload). A failed refresh keeps the last
//! addresses and tries again after [`RETRY`].
//!
//! Lookups run on this module's own single-thread runtime, so they can be made from any
//! thread that is not a runtime worker: at start, from the reload's blocking task, from the
//! refresh thread.

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ProtocolConfig, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use trunkgate_config::{DnsSettings, Host, HostPort, PeerTransport, Policy};

/// A failed refresh is tried again this much later (the last addresses stay in use).
pub const RETRY: Duration = Duration::from_secs(10);
/// Answers are kept at least this long (a TTL of 0 would mean a lookup per call) …
const MIN_TTL: Duration = Duration::from_secs(1);
/// … and at most this long (a name that moves is followed within the hour).
const MAX_TTL: Duration = Duration::from_secs(3600);
/// SIP's port when neither the policy nor SRV gives one (RFC 3261 §19.1.2).
const SIP_PORT: u16 = 5060;

/// What a name is looked up as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    /// The port written in the policy (`None`: SRV first).
    port: Option<u16>,
    transport: PeerTransport,
}

/// A resolved name: its addresses in the order to try them, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addresses: Vec<SocketAddr>,
    pub expires: Instant,
    /// From SRV records (else A/AAAA).
    pub srv: bool,
}

pub struct Dns {
    /// Always `Some` until drop (taken there to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    resolver: Mutex<(DnsSettings, TokioResolver)>,
    cache: Mutex<HashMap<Key, Answer>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("names", &lock(&self.cache).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dns {
    pub fn new(settings: &DnsSettings) -> io::Result<Dns> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("trunkgate-dns")
            .build()?;
        let resolver = {
            let _inside = runtime.enter();
            build_resolver(settings)?
        };
        Ok(Dns {
            runtime: Some(runtime),
            resolver: Mutex::new((settings.clone(), resolver)),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Take a reloaded policy's `[dns]`: a changed one gets a new resolver and forgets
    /// every cached answer (the names are looked up again on the new servers).
    pub fn configure(&self, settings: &DnsSettings) -> io::Result<()> {
        let mut current = lock(&self.resolver);
        if current.0 == *settings {
            return Ok(());
        }
        let resolver = {
            let _inside = self.runtime.as_ref().map(tokio::runtime::Runtime::enter);
            build_resolver(settings)?
        };
        *current = (settings.clone(), resolver);
        lock(&self.cache).clear();
        Ok(())
    }

    /// The addresses of `host` for a peer reached over `transport`, in the order to try
    /// them: an IP literal as is, a name from the cache (even past its TTL: the refresh
    /// thread renews it) or looked up now.
    pub fn resolve(
        &self,
        host: &HostPort,
        transport: PeerTransport,
    ) -> io::Result<Vec<SocketAddr>> {
        let Some(key) = key(host, transport) else {
            return Ok(host.to_socket_addr().into_iter().collect());
        };
        if let Some(answer) = lock(&self.cache).get(&key) {
            return Ok(answer.addresses.clone());
        }
        let answer = self.lookup(&key)?;
        let addresses = answer.addresses.clone();
        lock(&self.cache).insert(key, answer);
        Ok(addresses)
    }

    /// Re-resolve every cached name whose answer expired by `now`. `true`: some name's
    /// addresses changed (the routing table must be rebuilt).
    pub fn refresh(&self, now: Instant) -> bool {
        let due: Vec<Key> = lock(&self.cache)
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for key in due {
            let fresh = self.lookup(&key);
            let mut cache = lock(&self.cache);
            let Some(old) = cache.get_mut(&key) else {
                continue;
            };
            match fresh {
                Ok(answer) => {
                    if answer.addresses != old.addresses {
                        tracing::info!(
                            name = %key.name,
                            from = ?old.addresses,
                            to = ?answer.addresses,
                            "DNS answer changed: the routing table follows"
                        );
                        changed = true;
                    }
                    *old = answer;
                }
                Err(error) => {
                    tracing::warn!(name = %key.name, %error, retry = ?RETRY, "DNS refresh failed: keeping the last addresses");
                    old.expires = now + RETRY;
                }
            }
        }
        changed
    }

    /// When the first cached answer expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        lock(&self.cache).values().map(|a| a.expires).min()
    }

    /// Forget names `policy` no longer has (after a reload).
    pub fn retain(&self, policy: &Policy) {
        let mut wanted: Vec<Key> = Vec::new();
        wanted.extend(key(&policy.pbx.address, policy.pbx.transport));
        for n in &policy.pbx.nodes {
            wanted.extend(key(&n.address, n.transport));
        }
        for t in &policy.trunks {
            wanted.extend(key(&t.address, t.transport));
        }
        lock(&self.cache).retain(|k, _| wanted.contains(k));
    }

    fn lookup(&self, key: &Key) -> io::Result<Answer> {
        let resolver = lock(&self.resolver).1.clone();
        match &self.runtime {
            Some(runtime) => runtime.block_on(lookup(&resolver, key, Instant::now())),
            None => Err(io::Error::other("the DNS runtime is shut down")),
        }
    }
}

impl Drop for Dns {
    /// The last holder may be a task of the main runtime, dropped while that runtime shuts
    /// down: a plain drop of a runtime there panics ("Cannot drop a runtime in a context
    /// where blocking is not allowed") and the process hangs instead of exiting.
    /// `shutdown_background` never blocks.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn key(host: &HostPort, transport: PeerTransport) -> Option<Key> {
    match &host.host {
        Host::Ip(_) => None,
        Host::Name(name) => Some(Key {
            name: name.clone(),
            port: host.port_given.then_some(host.port),
            transport,
        }),
    }
}

fn build_resolver(settings: &DnsSettings) -> io::Result<TokioResolver> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if settings.servers.is_empty() {
        Resolver::builder(provider)
            .map_err(|e| io::Error::other(format!("reading the system's DNS configuration: {e}")))?
    } else {
        let servers = settings
            .servers
            .iter()
            .map(|s| {
                let connection = |protocol| {
                    let mut c = ConnectionConfig::new(protocol);
                    c.port = s.port();
                    c
                };
                NameServerConfig::new(
                    s.ip(),
                    true,
                    vec![
                        connection(ProtocolConfig::Udp),
                        connection(ProtocolConfig::Tcp),
                    ],
                )
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
            .with_options(ResolverOpts::default())
    };
    let options = builder.options_mut();
    // IPv4 when a name has it (listeners are IPv4 more often than not), else IPv6.
    options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    options.timeout = settings.timeout;
    options.attempts = 2;
    // Names in the policy are taken as written: no search domains appended.
    options.ndots = 0;
    options.positive_max_ttl = Some(MAX_TTL);
    options.negative_max_ttl = Some(Duration::from_secs(30));
    builder
        .build()
        .map_err(|e| io::Error::other(format!("starting the DNS resolver: {e}")))
}

/// RFC 3263 §4.2 for `key` (see the module's description).
async fn lookup(resolver: &TokioResolver, key: &Key, now: Instant) -> io::Result<Answer> {
    let fqdn = fqdn(&key.name);
    if let Some(port) = key.port {
        let (ips, expires) = ips(resolver, &fqdn).await?;
        return Ok(answer(
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            expires,
            now,
            false,
        ));
    }
    let service = match key.transport {
        PeerTransport::Tcp => "_sip._tcp",
        // RFC 3263 §4.1 / RFC 5630: SIP over TLS is `_sips._tcp`.
        PeerTransport::Tls => "_sips._tcp",
        PeerTransport::Udp | PeerTransport::Auto => "_sip._udp",
    };
    let srv_name = format!("{service}.{fqdn}");
    match resolver.srv_lookup(srv_name.as_str()).await {
        Ok(lookup) => {
            let mut records: Vec<Srv> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_ascii(),
                    }),
                    _ => None,
                })
                // "." : the service is decidedly not available there (RFC 2782).
                .filter(|s| s.target != "." && !s.target.is_empty())
                .collect();
            if records.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{srv_name}: SRV says no SIP service"),
                ));
            }
            order(&mut records, random_u64());
            let mut expires = lookup.valid_until();
            let mut addresses = Vec::new();
            let mut last_error = None;
            for s in &records {
                match ips(resolver, &s.target).await {
                    Ok((ips, until)) => {
                        expires = expires.min(until);
                        for ip in ips {
                            let a = SocketAddr::new(ip, s.port);
                            if !addresses.contains(&a) {
                                addresses.push(a);
                            }
                        }
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match (addresses.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                _ => Ok(answer(addresses, expires, now, true)),
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
            let (ips, expires) = ips(resolver, &fqdn).await?;
            Ok(answer(
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip, SIP_PORT))
                    .collect(),
                expires,
                now,
                false,
            ))
        }
        Err(e) => Err(io::Error::other(format!("{srv_name} SRV: {e}"))),
    }
}

/// Addresses kept per name: a route tries at most 16 candidates (`max_attempts`), and a
/// hostile or broken zone must not grow the table without bound.
const MAX_ADDRESSES: usize = 16;

fn answer(mut addresses: Vec<SocketAddr>, valid_until: Instant, now: Instant, srv: bool) -> Answer {
    addresses.truncate(MAX_ADDRESSES);
    let ttl = valid_until
        .saturating_duration_since(now)
        .clamp(MIN_TTL, MAX_TTL);
    Answer {
        addresses,
        expires: now + ttl,
        srv,
    }
}

/// A name as written, made absolute (no search domain is ever appended).
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

async fn ips(resolver: &TokioResolver, name: &str) -> io::Result<(Vec<std::net::IpAddr>, Instant)> {
    let lookup = resolver
        .lookup_ip(name)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{name}: {e}")))?;
    let ips: Vec<std::net::IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name}: no address"),
        ));
    }
    Ok((ips, lookup.valid_until()))
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// RFC 2782's order: by priority; within one priority, repeatedly pick a record with
/// probability weight / (sum of the remaining weights), zero-weight records having a small
/// chance (they sort first within their priority before the draw, as the RFC says).
fn order(records: &mut Vec<Srv>, mut seed: u64) {
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.weight.cmp(&b.weight)));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = std::mem::take(records);
    while let Some(first) = rest.first() {
        let priority = first.priority;
        let mut group: Vec<Srv> = Vec::new();
        rest.retain(|s| {
            if s.priority == priority {
                group.push(s.clone());
                false
            } else {
                true
            }
        });
        while !group.is_empty() {
            let total: u64 = group.iter().map(|s| u64::from(s.weight)).sum();
            // xorshift64: enough to spread picks; not for secrets.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let draw = if total == 0 { 0 } else { seed % (total + 1) };
            let mut running = 0u64;
            let pick = group
                .iter()
                .position(|s| {
                    running += u64::from(s.weight);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(group.remove(pick));
        }
    }
    *records = out;
}

fn random_u64() -> u64 {
    // A fresh RandomState is seeded from the OS: a different order per lookup.
    std::collections::hash_map::RandomState::new().hash_one(Instant::now()) | 1
}

/// The refresh thread: re-resolves names as their answers expire; when addresses changed,
/// `rebuild` (the policy's routing table is built again from the cache).
pub fn spawn_refresher(
    dns: std::sync::Arc<Dns>,
    rebuild: Box<dyn Fn() + Send>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("trunkgate-dns-refresh".to_owned())
        .spawn(move || {
            use std::sync::atomic::Ordering;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if dns.refresh(now) {
                    rebuild();
                }
                // Wake at the next expiry, but at least every second (to see `stop`).
                let wait = dns
                    .next_expiry()
                    .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
                    .clamp(Duration::from_millis(50), Duration::from_secs(1));
                std::thread::sleep(wait);
            }
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.to_owned(),
        }
    }

    #[test]
    fn srv_order_is_by_priority_then_weighted() {
        let mut firsts = HashMap::new();
        for seed in 1..2000u64 {
            let mut r = vec![
                srv(20, 0, "c"),
                srv(10, 90, "a"),
                srv(10, 10, "b"),
                srv(30, 5, "d"),
            ];
            order(&mut r, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let names: Vec<&str> = r.iter().map(|s| s.target.as_str()).collect();
            assert_eq!(&names[2..], ["c", "d"], "priorities in order");
            *firsts.entry(names[0].to_owned()).or_insert(0u32) += 1;
        }
        // Weight 90 against 10: "a" first about 9 times in 10.
        let a = f64::from(firsts["a"]) / 1999.0;
        assert!((0.8..0.97).contains(&a), "a first {a}");
    }

    #[test]
    fn literal_and_name_keys() {
        let literal = HostPort {
            host: Host::Ip("10.0.0.1".parse().unwrap()),
            port: 5060,
            port_given: true,
        };
        assert_eq!(key(&literal, PeerTransport::Udp), None);
        let name = HostPort {
            host: Host::Name("sip.example".into()),
            port: 5060,
            port_given: false,
        };
        assert_eq!(key(&name, PeerTransport::Tcp).unwrap().port, None);
        assert_eq!(fqdn("sip.example"), "sip.example.");
        assert_eq!(fqdn("sip.example."), "sip.example.");
    }
}
