//! RTP/RTCP readers on arbitrary bytes: `rtp_header`, `is_rtcp` and `rtcp_reports` on the
//! whole input, then the input cut into 12-byte records fed to `ReceiveStats::on_packet`
//! as a packet sequence (header + an 8-byte arrival time + clock rate), checking the
//! counters stay consistent.

use smallvec::SmallVec;
use trunkgate_media::stats::{ReceiveStats, RtpHeader, is_rtcp, rtcp_reports, rtp_header};

/// The check, on one input: panics on a violated invariant.
pub fn check(data: &[u8]) {
    let _ = rtp_header(data);
    let _ = is_rtcp(data);
    let mut blocks = SmallVec::new();
    rtcp_reports(data, &mut blocks);
    assert!(blocks.len() <= data.len() / 24);

    let mut stats = ReceiveStats::new();
    let mut arrival = 0u64;
    for rec in data.chunks_exact(12) {
        let seq = u16::from_be_bytes([rec[0], rec[1]]);
        let ts = u32::from_be_bytes([rec[2], rec[3], rec[4], rec[5]]);
        // A few SSRCs, mostly one, so sequence tracking runs long.
        let ssrc = u32::from(rec[6] >> 6);
        let step = u64::from(u32::from_be_bytes([rec[7], rec[8], rec[9], rec[10]]));
        arrival = arrival.wrapping_add(step);
        let clock_rate = [0, 8000, 16000, 48000, 90000, u32::MAX][usize::from(rec[11] % 6)];
        let hdr = RtpHeader {
            marker: rec[6] & 1 != 0,
            payload_type: rec[6] & 0x7f,
            seq,
            timestamp: ts,
            ssrc,
        };
        let before = stats.received();
        stats.on_packet(&hdr, arrival, clock_rate);
        assert!(stats.received() <= before + 1);
        assert!(stats.lost() <= stats.expected());
        let j = stats.jitter_seconds();
        assert!(j.is_finite() && j >= 0.0, "jitter {j}");
    }
}
