//! Prometheus export of the media relay's figures, per trunk (never per call: label
//! cardinality stays bounded by the policy). Read at scrape time from
//! [`MediaMetrics::snapshot`], which takes the relay's control lock briefly and never
//! touches the packet path. (`trunkgate_media_timeouts_total` is counted by the SIP core
//! when it actually ends a call, and exported by `SipCollector`.)

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use trunkgate_media::{Histogram, MediaMetrics, Missing};

#[derive(Debug)]
pub struct MediaCollector {
    metrics: Arc<MediaMetrics>,
}

impl MediaCollector {
    pub fn new(metrics: Arc<MediaMetrics>) -> MediaCollector {
        MediaCollector { metrics }
    }
}

const SIDES: [&str; 2] = ["pbx", "trunk"];

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// Cumulative `(le, count)` pairs → per-bucket counts ending with `+Inf`, as the encoder wants.
fn buckets(h: &Histogram) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(h.buckets.len() + 1);
    let mut below = 0;
    for &(le, cumulative) in &h.buckets {
        out.push((le, cumulative.saturating_sub(below)));
        below = cumulative;
    }
    out.push((f64::INFINITY, h.count.saturating_sub(below)));
    out
}

impl Collector for MediaCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.metrics.snapshot();
        let name =
            |t: &trunkgate_media::TrunkMedia| t.trunk.clone().unwrap_or_else(|| "none".into());
        type Pick = fn(&trunkgate_media::TrunkMedia) -> [u64; 2];
        let by_side: [(&str, &str, Pick); 3] = [
            (
                "trunkgate_media_packets",
                "RTP/RTCP datagrams relayed, by trunk and the side they came from",
                |t| t.packets,
            ),
            (
                "trunkgate_media_bytes",
                "Bytes (UDP payload) relayed, by trunk and the side they came from",
                |t| t.bytes,
            ),
            (
                "trunkgate_media_lost_packets",
                "RTP packets lost on the way to Trunkgate (sequence gaps), by trunk and sending side",
                |t| t.lost,
            ),
        ];
        for (metric, help, pick) in by_side {
            let mut m = enc.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for t in &snap.trunks {
                let trunk = name(t);
                for (side, v) in SIDES.iter().zip(pick(t)) {
                    let labels = [("trunk", trunk.as_str()), ("side", side)];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_media_dropped_packets",
                "Datagrams dropped by the relay (spoofed or late source, no destination), by trunk",
                None,
                MetricType::Counter,
            )?;
            for t in &snap.trunks {
                let trunk = name(t);
                m.encode_family(&[("trunk", trunk.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&t.dropped, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_media_one_way",
                "Calls flagged with audio in one direction only (direction = the missing one: \
                 pbx_to_trunk, trunk_to_pbx) or in none (both) after the answer, by trunk",
                None,
                MetricType::Counter,
            )?;
            for t in &snap.trunks {
                let trunk = name(t);
                for (missing, v) in Missing::ALL.iter().zip(t.one_way) {
                    let labels = [("trunk", trunk.as_str()), ("direction", missing.label())];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_media_answered",
                "Calls with anchored media answered (the one-way audio check's calls), by trunk",
                None,
                MetricType::Counter,
            )?;
            for t in &snap.trunks {
                let trunk = name(t);
                m.encode_family(&[("trunk", trunk.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&t.answered, None)?;
            }
        }
        type Hist = fn(&trunkgate_media::TrunkMedia) -> &Histogram;
        let histograms: [(&str, &str, Hist); 3] = [
            (
                "trunkgate_media_jitter_seconds",
                "RFC 3550 interarrival jitter per finished stream direction, by trunk",
                |t| &t.jitter,
            ),
            (
                "trunkgate_media_loss_ratio",
                "Lost/expected RTP packets per finished stream direction, by trunk",
                |t| &t.loss_ratio,
            ),
            (
                "trunkgate_media_mos",
                "Estimated MOS (simplified G.107 E-model) per stream direction and \
                 media.quality_interval, by trunk",
                |t| &t.mos,
            ),
        ];
        for (metric, help, pick) in histograms {
            let mut m = enc.encode_descriptor(metric, help, None, MetricType::Histogram)?;
            for t in &snap.trunks {
                let trunk = name(t);
                let h = pick(t);
                m.encode_family(&[("trunk", trunk.as_str())])?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets(h), None)?;
            }
        }
        {
            // 1 for the path latched RTP takes (media.fastpath resolved at start), 0 for the other.
            let mode = self.metrics.fastpath();
            let mut m = enc.encode_descriptor(
                "trunkgate_media_fastpath",
                "Media forwarding path in use (1): kernel (BPF at tc ingress) or userspace",
                None,
                MetricType::Gauge,
            )?;
            for name in ["kernel", "userspace"] {
                m.encode_family(&[("mode", name)])?
                    .encode_gauge(&i64::from(name == mode.as_str()))?;
            }
        }
        if let Some(outcomes) = self.metrics.kernel_outcomes() {
            let mut m = enc.encode_descriptor(
                "trunkgate_media_kernel_packets",
                "Datagrams that matched a kernel fast path entry: forwarded, or left to userspace and why",
                None,
                MetricType::Counter,
            )?;
            for (outcome, n) in outcomes {
                m.encode_family(&[("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        gauge(
            &mut enc,
            "trunkgate_media_sessions",
            "Calls with anchored media",
            snap.sessions,
        )?;
        gauge(
            &mut enc,
            "trunkgate_media_streams",
            "Anchored media streams (m= lines)",
            snap.streams,
        )?;
        gauge(
            &mut enc,
            "trunkgate_media_port_pairs_in_use",
            "RTP/RTCP port pairs bound by anchored streams",
            snap.port_pairs_in_use,
        )?;
        gauge(
            &mut enc,
            "trunkgate_media_port_pairs_quarantined",
            "Released port pairs not yet reusable (late packets of ended calls)",
            snap.port_pairs_quarantined,
        )?;
        gauge(
            &mut enc,
            "trunkgate_media_port_pairs_capacity",
            "RTP/RTCP port pairs in media.ports",
            snap.port_pairs_capacity,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_become_per_bucket_counts_with_inf() {
        let h = Histogram {
            buckets: vec![(0.01, 2), (0.1, 5)],
            sum: 1.0,
            count: 7,
        };
        assert_eq!(buckets(&h), vec![(0.01, 2), (0.1, 3), (f64::INFINITY, 2)]);
    }
}
