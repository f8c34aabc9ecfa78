//! Prometheus export. The core's counters ([`ProxyMetrics`]) and the shell's own
//! ([`ShellMetrics`]) are plain atomics; [`SipCollector`] reads them at scrape time through
//! prometheus-client's `Collector` API, so the hot path never touches a registry, a map or a
//! lock. [`CoreStatus`] is the small snapshot the core task publishes for `/health`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use trunkgate_control::admission::AdmissionControl;
use trunkgate_sip::message::Method;
use trunkgate_sip::{Direction, ProxyMetrics, RejectReason};

pub use crate::shell::close::CloseReason;

/// Counters of the socket shell (UDP/TCP), updated by the core task and connection tasks.
#[derive(Debug, Default)]
pub struct ShellMetrics {
    /// UDP datagrams the core wanted sent that the socket refused (buffer full, no socket).
    pub udp_send_drops: AtomicU64,
    /// TCP connections open (accepted or outgoing, connecting included).
    pub tcp_connections_active: AtomicI64,
    /// TCP connections ever opened (accepted or outgoing).
    pub tcp_connections_total: AtomicU64,
    /// TCP connections refused because the concurrent-connection cap was reached.
    pub tcp_connections_rejected: AtomicU64,
    /// TCP connections closed because their byte stream could not be framed.
    pub tcp_framing_errors: AtomicU64,
    /// Messages for a TCP connection that was closed, gone or whose queue was full.
    pub tcp_send_drops: AtomicU64,
    /// Outgoing TCP connections that failed or timed out.
    pub tcp_connect_failures: AtomicU64,
    /// TCP connections closed, by [`CloseReason`] (index).
    pub tcp_closed: [AtomicU64; CloseReason::COUNT],
    /// TLS sessions established (handshake done), both directions; each is also counted
    /// as a TCP connection.
    pub tls_connections_total: AtomicU64,
    /// TLS sessions up now.
    pub tls_connections_active: AtomicI64,
    /// Accepted connections on `tls:` listeners whose handshake failed.
    pub tls_handshake_failures_accept: AtomicU64,
    /// Outgoing TLS connections whose handshake failed (certificate not trusted, wrong
    /// name, expired, no common protocol): the call failed over.
    pub tls_handshake_failures_connect: AtomicU64,
    /// Accepted TLS sessions whose client presented a (verified) certificate.
    pub tls_client_certificates: AtomicU64,
}

impl ShellMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one connection closed for `reason`.
    pub fn closed(&self, reason: CloseReason) {
        if let Some(c) = self.tcp_closed.get(reason as usize) {
            Self::inc(c);
        }
    }
}

/// What `/health` reports, published by the core task after every wakeup.
#[derive(Debug, Default)]
pub struct CoreStatus {
    pub dialogs: AtomicU64,
    pub transactions: AtomicU64,
    pub shutting_down: AtomicBool,
}

impl CoreStatus {
    pub fn publish(&self, dialogs: usize, transactions: usize) {
        self.dialogs.store(dialogs as u64, Ordering::Relaxed);
        self.transactions
            .store(transactions as u64, Ordering::Relaxed);
    }
}

/// What the collector labels per-peer slots with; swapped whole on a policy reload, so an
/// added trunk is exported from then on and a removed one disappears once drained.
#[derive(Debug, Default)]
pub struct PeerView {
    /// Label per peer slot: `trunkgate`, `pbx`, then trunk names by id (`""`: no trunk
    /// of the policy in force has that id; the slot is not exported).
    pub peer_names: Vec<String>,
    /// `max_sessions` by trunk id.
    pub session_limits: Vec<Option<u32>>,
    /// Flood-limiter gauges (banned and tracked sources).
    pub admission: Option<Arc<AdmissionControl>>,
}

impl PeerView {
    /// Slots for `trunks` (id, name, max_sessions).
    pub fn new<'a>(
        trunks: impl IntoIterator<Item = (u16, &'a str, Option<u32>)>,
        admission: Option<Arc<AdmissionControl>>,
    ) -> PeerView {
        let mut view = PeerView {
            peer_names: vec!["trunkgate".to_owned(), "pbx".to_owned()],
            session_limits: Vec::new(),
            admission,
        };
        for (id, name, limit) in trunks {
            let id = usize::from(id);
            if view.peer_names.len() < id + 3 {
                view.peer_names.resize(id + 3, String::new());
                view.session_limits.resize(id + 1, None);
            }
            view.peer_names[id + 2] = name.to_owned();
            view.session_limits[id] = limit;
        }
        view
    }
}

/// The peer labels in force, swapped by reloads.
pub type PeerViews = Arc<arc_swap::ArcSwap<PeerView>>;

/// Reads every Trunkgate metric at scrape time.
#[derive(Debug)]
pub struct SipCollector {
    proxy: Arc<ProxyMetrics>,
    shell: Arc<ShellMetrics>,
    view: PeerViews,
    version: &'static str,
}

impl SipCollector {
    /// Trunks named in policy order (ids 0, 1, …), no admission gauges.
    #[cfg(test)]
    pub fn new(
        proxy: Arc<ProxyMetrics>,
        shell: Arc<ShellMetrics>,
        trunk_names: impl IntoIterator<Item = String>,
    ) -> SipCollector {
        let names: Vec<String> = trunk_names.into_iter().collect();
        let view = PeerView::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (u16::try_from(i).unwrap_or(u16::MAX), n.as_str(), None)),
            None,
        );
        SipCollector::with_view(
            proxy,
            shell,
            Arc::new(arc_swap::ArcSwap::from_pointee(view)),
        )
    }

    /// Labels from `view` (swapped by reloads).
    pub fn with_view(
        proxy: Arc<ProxyMetrics>,
        shell: Arc<ShellMetrics>,
        view: PeerViews,
    ) -> SipCollector {
        SipCollector {
            proxy,
            shell,
            view,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The per-peer counters labelled by trunk: slot 0 (not tied to a trunk) as `"none"`,
/// then each trunk of the policy in force by name; the PBX slot is left out.
fn trunk_slots<'a>(
    proxy: &'a ProxyMetrics,
    names: &'a [String],
) -> impl Iterator<Item = (&'a str, &'a trunkgate_sip::metrics::PeerCounters)> {
    proxy
        .peers
        .iter()
        .enumerate()
        .filter(|(slot, _)| *slot != 1)
        .filter_map(|(slot, counters)| match slot {
            0 => Some(("none", counters)),
            _ => names
                .get(slot)
                .filter(|n| !n.is_empty())
                .map(|n| (n.as_str(), counters)),
        })
}

/// The trunk slots only (no `none`).
fn named_trunks<'a>(
    proxy: &'a ProxyMetrics,
    names: &'a [String],
) -> impl Iterator<Item = (&'a String, &'a trunkgate_sip::metrics::PeerCounters)> {
    names
        .iter()
        .zip(proxy.peers.iter())
        .skip(2)
        .filter(|(n, _)| !n.is_empty())
}

impl SipCollector {
    /// A registry holding only this collector.
    pub fn into_registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }
}

/// Render a registry in the Prometheus text format (0.0.4).
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
const DIRECTIONS: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

fn load(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

fn load_i(v: &AtomicI64) -> i64 {
    v.load(Ordering::Relaxed)
}

/// One unlabelled counter (`name` gets `_total` from the encoder).
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for SipCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &*self.proxy;
        let s = &*self.shell;
        let view = self.view.load();
        let names = view.peer_names.as_slice();

        {
            let mut m = enc.encode_descriptor(
                "trunkgate_build",
                "Build information",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[("version", self.version)])?;
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_sip_requests",
                "SIP requests received, by method",
                None,
                MetricType::Counter,
            )?;
            for method in Method::ALL {
                let v = p.requests.get(method.index()).map_or(0, load);
                let labels = [("method", method.as_str())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_sip_responses",
                "SIP responses by the peer that sent them (trunkgate: generated here) and class",
                None,
                MetricType::Counter,
            )?;
            for (peer, counters) in names
                .iter()
                .zip(p.peers.iter())
                .filter(|(n, _)| !n.is_empty())
            {
                for (class, v) in CLASSES.iter().zip(counters.responses.iter()) {
                    let labels = [("peer", peer.as_str()), ("class", class)];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&load(v), None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_dialogs_active",
                "Dialogs in progress (early or confirmed), by trunk and direction",
                None,
                MetricType::Gauge,
            )?;
            for (trunk, counters) in named_trunks(p, names) {
                for direction in DIRECTIONS {
                    let v = counters.dialogs.get(direction.index()).map_or(0, load_i);
                    let labels = [("trunk", trunk.as_str()), ("direction", direction.as_str())];
                    m.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_rejects",
                "Requests refused or dropped, by trunk (none: not tied to a trunk) and reason",
                None,
                MetricType::Counter,
            )?;
            for (trunk, counters) in trunk_slots(p, names) {
                for reason in RejectReason::ALL {
                    let v = counters.rejects.get(reason.index()).map_or(0, load);
                    let labels = [("trunk", trunk), ("reason", reason.as_str())];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_media_timeouts",
                "Calls ended with BYE to both sides because their media stopped for media.timeout, by trunk",
                None,
                MetricType::Counter,
            )?;
            for (trunk, counters) in trunk_slots(p, names) {
                m.encode_family(&[("trunk", trunk)])?
                    .encode_counter::<NoLabelSet, _, u64>(&load(&counters.media_timeouts), None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_digest_challenges",
                "A trunk's 401/407 challenges on the PBX's behalf, by trunk and result (answered: re-sent with credentials; refused: the credentials were refused or the challenge could not be answered, so it was relayed or failed over)",
                None,
                MetricType::Counter,
            )?;
            // Slot 0 (Trunkgate itself) never challenges.
            for (trunk, counters) in trunk_slots(p, names).skip(1) {
                for (result, v) in [
                    ("answered", &counters.auth_answered),
                    ("refused", &counters.auth_refused),
                ] {
                    m.encode_family(&[("trunk", trunk), ("result", result)])?
                        .encode_counter::<NoLabelSet, _, u64>(&load(v), None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_trunk_sessions",
                "Sessions (calls) in progress per trunk, both directions",
                None,
                MetricType::Gauge,
            )?;
            for (trunk, counters) in named_trunks(p, names) {
                let v: i64 = counters.dialogs.iter().map(load_i).sum();
                m.encode_family(&[("trunk", trunk.as_str())])?
                    .encode_gauge(&v)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_trunk_sessions_limit",
                "max_sessions per trunk (trunks without a limit are not listed)",
                None,
                MetricType::Gauge,
            )?;
            let trunks = names.iter().skip(2).zip(view.session_limits.iter());
            for (trunk, limit) in trunks.filter(|(n, _)| !n.is_empty()) {
                if let Some(limit) = limit {
                    m.encode_family(&[("trunk", trunk.as_str())])?
                        .encode_gauge(&i64::from(*limit))?;
                }
            }
        }
        if let Some(admission) = &view.admission {
            gauge(
                &mut enc,
                "trunkgate_banned_sources",
                "Source addresses (IPv6: prefixes) banned for flooding",
                i64::try_from(admission.banned_sources()).unwrap_or(i64::MAX),
            )?;
            gauge(
                &mut enc,
                "trunkgate_flood_tracked_sources",
                "Source addresses the flood limiter currently tracks (bounded by flood.max_sources)",
                i64::try_from(admission.tracked_sources()).unwrap_or(i64::MAX),
            )?;
        }
        gauge(
            &mut enc,
            "trunkgate_sip_transactions_active",
            "SIP transactions in flight",
            load_i(&p.transactions),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_tcp_connections_closed",
                "TCP connections closed, by reason (the first four are refusals at accept)",
                None,
                MetricType::Counter,
            )?;
            for reason in CloseReason::ALL {
                let v = s.tcp_closed.get(reason as usize).map_or(0, load);
                m.encode_family(&[("reason", reason.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
            }
        }
        let counters: [(&str, &str, &AtomicU64); 22] = [
            (
                "trunkgate_sip_parse_errors",
                "Messages that could not be parsed",
                &p.parse_errors,
            ),
            (
                "trunkgate_sip_unknown_source",
                "Messages from sources in no allow list",
                &p.unknown_source,
            ),
            (
                "trunkgate_sip_retransmissions",
                "Retransmissions sent",
                &p.retransmissions,
            ),
            (
                "trunkgate_sip_timeouts",
                "Transactions that timed out",
                &p.timeouts,
            ),
            (
                "trunkgate_sip_loops",
                "Requests rejected as loops",
                &p.loops,
            ),
            (
                "trunkgate_sip_too_many_hops",
                "Requests rejected for Max-Forwards 0",
                &p.too_many_hops,
            ),
            (
                "trunkgate_sip_no_route",
                "Requests with no route",
                &p.no_route,
            ),
            (
                "trunkgate_dialogs_expired",
                "Confirmed calls forgotten after sip.dialog_timeout without an in-dialog request",
                &p.dialogs_expired,
            ),
            (
                "trunkgate_sip_shutdown_rejects",
                "New INVITEs answered 503 during shutdown",
                &p.shutdown_rejects,
            ),
            (
                "trunkgate_sip_late_answers",
                "2xx on a branch already given up (failover, CANCEL), ACKed and ended with BYE",
                &p.late_answers,
            ),
            (
                "trunkgate_sip_transport_failures",
                "Branches ended at once because no connection to the destination could be made",
                &p.transport_failures,
            ),
            (
                "trunkgate_sip_media_failures",
                "SDP bodies the media relay could not anchor (488 for bad SDP, 503 without ports)",
                &p.media_failures,
            ),
            (
                "trunkgate_udp_send_drops",
                "UDP datagrams dropped on send (socket buffer full or no socket)",
                &s.udp_send_drops,
            ),
            (
                "trunkgate_tcp_connections",
                "TCP connections opened (accepted or outgoing)",
                &s.tcp_connections_total,
            ),
            (
                "trunkgate_tcp_connections_rejected",
                "TCP connections refused at the concurrent-connection cap",
                &s.tcp_connections_rejected,
            ),
            (
                "trunkgate_tcp_framing_errors",
                "TCP connections closed for a byte stream that could not be framed",
                &s.tcp_framing_errors,
            ),
            (
                "trunkgate_tcp_send_drops",
                "Messages dropped for a closed, missing or congested TCP connection",
                &s.tcp_send_drops,
            ),
            (
                "trunkgate_tcp_connect_failures",
                "Outgoing TCP connections that failed or timed out (TLS handshakes included)",
                &s.tcp_connect_failures,
            ),
            (
                "trunkgate_tls_connections",
                "TLS sessions established (handshake done), accepted or outgoing",
                &s.tls_connections_total,
            ),
            (
                "trunkgate_tls_handshake_failures_accept",
                "Connections on tls: listeners whose TLS handshake failed",
                &s.tls_handshake_failures_accept,
            ),
            (
                "trunkgate_tls_handshake_failures_connect",
                "Outgoing TLS connections whose handshake failed (the call failed over)",
                &s.tls_handshake_failures_connect,
            ),
            (
                "trunkgate_tls_client_certificates",
                "Accepted TLS sessions whose client presented a verified certificate",
                &s.tls_client_certificates,
            ),
        ];
        for (name, help, v) in counters {
            counter(&mut enc, name, help, load(v))?;
        }
        gauge(
            &mut enc,
            "trunkgate_tcp_connections_active",
            "TCP connections open",
            load_i(&s.tcp_connections_active),
        )?;
        gauge(
            &mut enc,
            "trunkgate_tls_connections_active",
            "TLS sessions up",
            load_i(&s.tls_connections_active),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Arc<ProxyMetrics>, Arc<ShellMetrics>, Registry) {
        let proxy = Arc::new(ProxyMetrics::new(2));
        let shell = Arc::new(ShellMetrics::default());
        let registry = SipCollector::new(
            proxy.clone(),
            shell.clone(),
            ["carrier-a".to_owned(), "carrier-b".to_owned()],
        )
        .into_registry();
        (proxy, shell, registry)
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
    }

    #[test]
    fn exports_every_family_with_current_values() {
        let (proxy, shell, registry) = sample();
        proxy.requests[Method::Invite.index()].fetch_add(3, Ordering::Relaxed);
        proxy.peers[3].responses[4].fetch_add(2, Ordering::Relaxed);
        proxy.peers[0].responses[1].fetch_add(1, Ordering::Relaxed);
        proxy.peers[2].dialogs[Direction::Inbound.index()].fetch_add(5, Ordering::Relaxed);
        proxy.transactions.store(7, Ordering::Relaxed);
        proxy.no_route.store(9, Ordering::Relaxed);
        shell.udp_send_drops.store(4, Ordering::Relaxed);
        shell.tcp_connections_active.store(2, Ordering::Relaxed);
        shell.closed(CloseReason::HeaderTimeout);
        shell.closed(CloseReason::UnknownSource);
        shell.closed(CloseReason::UnknownSource);

        let text = render(&registry).unwrap();
        assert_eq!(
            line(
                &text,
                "trunkgate_tcp_connections_closed_total{reason=\"unknown_source\"}"
            ),
            "trunkgate_tcp_connections_closed_total{reason=\"unknown_source\"} 2"
        );
        assert_eq!(
            line(
                &text,
                "trunkgate_tcp_connections_closed_total{reason=\"header_timeout\"}"
            ),
            "trunkgate_tcp_connections_closed_total{reason=\"header_timeout\"} 1"
        );
        for reason in CloseReason::ALL {
            let series = format!(
                "trunkgate_tcp_connections_closed_total{{reason=\"{}\"}}",
                reason.as_str()
            );
            assert!(text.contains(&series), "{series}");
        }
        assert_eq!(
            line(&text, "trunkgate_sip_requests_total{method=\"INVITE\"}"),
            "trunkgate_sip_requests_total{method=\"INVITE\"} 3"
        );
        assert_eq!(
            line(
                &text,
                "trunkgate_sip_responses_total{peer=\"carrier-b\",class=\"5xx\"}"
            ),
            "trunkgate_sip_responses_total{peer=\"carrier-b\",class=\"5xx\"} 2"
        );
        assert_eq!(
            line(
                &text,
                "trunkgate_sip_responses_total{peer=\"trunkgate\",class=\"2xx\"}"
            ),
            "trunkgate_sip_responses_total{peer=\"trunkgate\",class=\"2xx\"} 1"
        );
        assert_eq!(
            line(
                &text,
                "trunkgate_dialogs_active{trunk=\"carrier-a\",direction=\"inbound\"}"
            ),
            "trunkgate_dialogs_active{trunk=\"carrier-a\",direction=\"inbound\"} 5"
        );
        assert!(!text.contains("trunkgate_dialogs_active{trunk=\"pbx\""));
        assert_eq!(
            line(&text, "trunkgate_sip_transactions_active "),
            "trunkgate_sip_transactions_active 7"
        );
        assert_eq!(
            line(&text, "trunkgate_sip_no_route_total "),
            "trunkgate_sip_no_route_total 9"
        );
        assert_eq!(
            line(&text, "trunkgate_udp_send_drops_total "),
            "trunkgate_udp_send_drops_total 4"
        );
        assert_eq!(
            line(&text, "trunkgate_tcp_connections_active "),
            "trunkgate_tcp_connections_active 2"
        );
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            line(&text, "trunkgate_build_info"),
            format!("trunkgate_build_info{{version=\"{version}\"}} 1")
        );
        for name in [
            "trunkgate_sip_parse_errors_total",
            "trunkgate_sip_unknown_source_total",
            "trunkgate_sip_retransmissions_total",
            "trunkgate_sip_timeouts_total",
            "trunkgate_sip_loops_total",
            "trunkgate_sip_too_many_hops_total",
            "trunkgate_sip_shutdown_rejects_total",
            "trunkgate_tcp_connections_total",
            "trunkgate_tcp_framing_errors_total",
        ] {
            assert_eq!(line(&text, &format!("{name} ")), format!("{name} 0"));
            assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
        }
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let (_, _, registry) = sample();
        let text = render(&registry).unwrap();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(series.starts_with("trunkgate_"), "{l}");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {l}"));
        }
    }
}
