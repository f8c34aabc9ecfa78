//! The descriptor budget: the process's open-files limit split, at start, into a share for
//! media sockets (4 per anchored audio stream), a share for SIP connections (1 each; it is
//! the global connection cap) and a margin for everything else (listeners, the admin API,
//! logs, the runtime's epoll and eventfds, files). When a share is used up the refusal
//! happens in that share — a new connection is reset at accept, a call whose media cannot
//! be anchored gets `503` — so a connection flood never costs a call its media, and media
//! never costs the PBX its connection. The arithmetic is in docs/operations.md.
//!
//! [`BudgetView`] exports `trunkgate_fd_budget{share,kind}` and the open-descriptor count
//! in `/metrics` and `/health`.

use crate::shell::admit::Admit;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use trunkgate_config::Limits;
use trunkgate_media::Relay;

/// Descriptors per anchored audio stream: RTP and RTCP on each side.
pub const FDS_PER_CALL: u64 = 4;
/// `fd_margin = "auto"`: 5 % of the limit, within these bounds.
const AUTO_MARGIN: (u64, u64) = (128, 4096);
/// `sip_connections = "auto"`: a tenth of what the margin leaves, within these bounds.
const AUTO_SIP: (u64, u64) = (64, 4096);

/// How the descriptor limit is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// `RLIMIT_NOFILE` (soft, after raising it to the hard limit).
    pub limit: u64,
    pub margin: u64,
    /// SIP connections (accepted and outgoing) open at once.
    pub sip_connections: u64,
    /// Anchored audio streams at once (calls of one `m=` line).
    pub media_calls: u64,
}

/// The explicit shares do not fit the descriptor limit.
#[derive(Debug, PartialEq, Eq)]
pub struct BudgetError {
    margin: u64,
    sip: u64,
    media_calls: u64,
    needed: u64,
    limit: u64,
}

impl std::fmt::Display for BudgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the descriptor budget (fd_margin {} + sip_connections {} + media_calls {} × 4) \
             needs {} descriptors but the open-files limit is {}: lower [limits] or raise \
             LimitNOFILE (ulimit -n)",
            self.margin, self.sip, self.media_calls, self.needed, self.limit
        )
    }
}

impl std::error::Error for BudgetError {}

impl FdBudget {
    /// Split `limit` as `limits` says; `"auto"` shares take what the explicit ones leave.
    pub fn plan(limit: u64, limits: &Limits) -> Result<FdBudget, BudgetError> {
        let margin = limits
            .fd_margin
            .map_or((limit / 20).clamp(AUTO_MARGIN.0, AUTO_MARGIN.1), u64::from);
        let left = limit.saturating_sub(margin);
        let sip = limits
            .sip_connections
            .map_or((left / 10).clamp(AUTO_SIP.0, AUTO_SIP.1), u64::from);
        let media_calls = limits
            .media_calls
            .map_or_else(|| left.saturating_sub(sip) / FDS_PER_CALL, u64::from);
        let needed = margin + sip + media_calls * FDS_PER_CALL;
        if needed > limit {
            return Err(BudgetError {
                margin,
                sip,
                media_calls,
                needed,
                limit,
            });
        }
        Ok(FdBudget {
            limit,
            margin,
            sip_connections: sip,
            media_calls,
        })
    }

    pub fn media_sockets(&self) -> u64 {
        self.media_calls * FDS_PER_CALL
    }
}

/// Descriptors this process has open now (`/proc/self/fd`, less the one reading it).
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// The budget with live use of each share.
#[derive(Debug)]
pub struct BudgetView {
    pub budget: FdBudget,
    admit: Arc<Admit>,
    relay: Arc<Relay>,
    /// New media sessions refused because the media share was used up.
    pub media_refusals: AtomicU64,
}

/// (used, limit) of one share.
type Share = (u64, u64);

impl BudgetView {
    pub fn new(budget: FdBudget, admit: Arc<Admit>, relay: Arc<Relay>) -> BudgetView {
        BudgetView {
            budget,
            admit,
            relay,
            media_refusals: AtomicU64::new(0),
        }
    }

    fn media(&self) -> Share {
        (
            self.relay.sockets_in_use() as u64,
            self.budget.media_sockets(),
        )
    }

    fn sip(&self) -> Share {
        (self.admit.open() as u64, self.budget.sip_connections)
    }

    /// The margin's use is what is open beyond the two shares (`None`: unknown).
    fn shares(&self, open: Option<u64>) -> [(&'static str, Share); 3] {
        let media = self.media();
        let sip = self.sip();
        let margin = open.map_or(0, |o| o.saturating_sub(media.0 + sip.0));
        [
            ("media", media),
            ("sip", sip),
            ("margin", (margin, self.budget.margin)),
        ]
    }

    /// The `/health` view: `{"limit", "open", "media": {"used","limit"}, "sip": …, "margin": …}`.
    pub fn json(&self) -> serde_json::Value {
        let open = open_fds();
        let mut out = serde_json::Map::new();
        out.insert("limit".into(), self.budget.limit.into());
        out.insert("open".into(), open.into());
        for (name, (used, limit)) in self.shares(open) {
            out.insert(
                name.into(),
                serde_json::json!({ "used": used, "limit": limit }),
            );
        }
        serde_json::Value::Object(out)
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Scrape-time export of a [`BudgetView`].
#[derive(Debug)]
pub struct BudgetCollector(pub Arc<BudgetView>);

impl Collector for BudgetCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = &*self.0;
        let open = open_fds();
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_fd_budget",
                "The descriptor budget: used and limit of each share (media sockets, SIP connections, the margin)",
                None,
                MetricType::Gauge,
            )?;
            for (share, (used, limit)) in view.shares(open) {
                for (kind, v) in [("used", used), ("limit", limit)] {
                    m.encode_family(&[("share", share), ("kind", kind)])?
                        .encode_gauge(&i(v))?;
                }
            }
        }
        for (name, help, v) in [
            (
                "trunkgate_open_fds",
                "Descriptors the process has open",
                open.unwrap_or(0),
            ),
            (
                "trunkgate_fd_limit",
                "The open-files limit the budget was split from",
                view.budget.limit,
            ),
        ] {
            let g = ConstGauge::new(i(v));
            let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        let c = prometheus_client::metrics::counter::ConstCounter::new(
            view.media_refusals.load(Ordering::Relaxed),
        );
        let m = enc.encode_descriptor(
            "trunkgate_fd_budget_media_refusals",
            "New media sessions refused (503) because the media share of the descriptor budget was used up",
            None,
            c.metric_type(),
        )?;
        c.encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sip: Option<u32>, media: Option<u32>, margin: Option<u32>) -> Limits {
        Limits {
            connections_per_source: 64,
            sip_connections: sip,
            media_calls: media,
            fd_margin: margin,
        }
    }

    #[test]
    fn auto_splits_twenty_thousand() {
        let b = FdBudget::plan(20_000, &limits(None, None, None)).unwrap();
        assert_eq!(b.margin, 1_000);
        assert_eq!(b.sip_connections, 1_900);
        assert_eq!(b.media_calls, 4_275);
        assert!(b.margin + b.sip_connections + b.media_sockets() <= 20_000);
    }

    #[test]
    fn auto_bounds_hold_at_both_ends() {
        let big = FdBudget::plan(1_048_576, &limits(None, None, None)).unwrap();
        assert_eq!((big.margin, big.sip_connections), (4096, 4096));
        let small = FdBudget::plan(1024, &limits(None, None, None)).unwrap();
        assert_eq!((small.margin, small.sip_connections), (128, 89));
        assert_eq!(small.media_calls, (1024 - 128 - 89) / 4);
    }

    #[test]
    fn explicit_shares_are_kept_and_must_fit() {
        let b = FdBudget::plan(20_000, &limits(Some(500), Some(50), None)).unwrap();
        assert_eq!(
            (b.sip_connections, b.media_calls, b.media_sockets()),
            (500, 50, 200)
        );
        let e =
            FdBudget::plan(20_000, &limits(Some(10_000), Some(3_000), Some(1_000))).unwrap_err();
        assert!(e.to_string().contains("needs 23000 descriptors"), "{e}");
        assert!(e.to_string().contains("limit is 20000"), "{e}");
    }

    #[test]
    fn counts_open_descriptors() {
        let _f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(
            open_fds().unwrap() >= 4,
            "stdin, stdout, stderr and the file"
        );
    }
}
