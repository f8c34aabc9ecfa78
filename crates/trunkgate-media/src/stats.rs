//! RTP stream statistics: the fixed RTP header, RTP/RTCP demultiplexing, packet loss from
//! sequence numbers (RFC 3550 A.1, A.3), interarrival jitter (A.8), and the report blocks of
//! peers' RTCP sender/receiver reports.
//!
//! The per-packet functions ([`rtp_header`], [`is_rtcp`], [`ReceiveStats::on_packet`]) are
//! on the relay's hot path: they read fixed offsets, never allocate and never panic.
//! [`rtcp_reports`] runs about once per 5 s per stream.

use smallvec::SmallVec;

/// The fixed part of an RTP header (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// The fixed 12-byte header, read by hand. `None` unless version == 2 and the packet has at
/// least 12 bytes. CSRC count and extension bit are not checked against the length.
pub fn rtp_header(pkt: &[u8]) -> Option<RtpHeader> {
    let h: &[u8; 12] = pkt.get(..12)?.try_into().ok()?;
    if h[0] >> 6 != 2 {
        return None;
    }
    Some(RtpHeader {
        marker: h[1] & 0x80 != 0,
        payload_type: h[1] & 0x7f,
        seq: u16::from_be_bytes([h[2], h[3]]),
        timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
    })
}

/// RFC 5761 §4 demultiplexing of RTP and RTCP on one port: version 2 and the second byte
/// (without the marker bit) in 64..=95, i.e. RTCP packet types 192–223 (SR 200, RR 201,
/// SDES 202, BYE 203, APP 204, RTPFB 205, PSFB 206, XR 207 …).
pub fn is_rtcp(pkt: &[u8]) -> bool {
    match pkt {
        [b0, b1, ..] => b0 >> 6 == 2 && (64..=95).contains(&(b1 & 0x7f)),
        _ => false,
    }
}

/// RFC 3550 A.1: a jump of less than this is in-order (packets were lost).
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a step back of up to this is a late (reordered or duplicate) packet.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: i64 = 1 << 16;

/// Receive-side statistics of one RTP stream (one SSRC at a time; a new SSRC restarts the
/// sequence tracking but keeps the cumulative packet and loss totals).
///
/// Sequence tracking follows RFC 3550 A.1 without probation (counting starts with the first
/// packet). Sequence numbers are kept extended (`cycles * 2^16 + seq`) so that a packet
/// reordered before the first one moves the base back instead of counting as loss.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    /// Sequence tracking has started (false before the first packet).
    started: bool,
    ssrc: u32,
    /// Highest sequence number seen, and the wrap count in units of 2^16.
    max_seq: u16,
    cycles: i64,
    /// Extended sequence number of the first packet of this epoch (may go below 0 when a
    /// packet from before the first one arrives late).
    base_ext: i64,
    /// A.1 `bad_seq`: after a large jump, the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
    /// Packets counted in all epochs (duplicates included, as in RFC 3550).
    received: u64,
    /// Expected packets of finished epochs (earlier SSRCs, restarts).
    expected_done: u64,
    /// Gaps in the sequence (each a burst of one or more lost packets), all epochs; a
    /// reordered packet makes a gap too, so this is an upper bound.
    loss_events: u64,
    /// A.8 state: last arrival (ns) and RTP timestamp, valid when `have_transit`.
    have_transit: bool,
    last_arrival_ns: u64,
    last_ts: u32,
    /// A.8 jitter estimate, kept in seconds (so a clock-rate change does not rescale it).
    jitter: f64,
}

impl ReceiveStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts one RTP packet. `arrival_nanos`: monotonic arrival time in ns (any epoch, the
    /// same for the whole stream); `clock_rate`: the stream's RTP clock in Hz, 0 means 8000.
    pub fn on_packet(&mut self, hdr: &RtpHeader, arrival_nanos: u64, clock_rate: u32) {
        if !self.started || hdr.ssrc != self.ssrc {
            self.restart(hdr.ssrc, hdr.seq);
        } else if !self.update_seq(hdr.seq) {
            // First packet after a large jump: not counted until the next one confirms it.
            return;
        }
        self.received += 1;
        self.update_jitter(hdr.timestamp, arrival_nanos, clock_rate);
    }

    /// RTP packets counted (duplicates count, as in RFC 3550).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Extended highest sequence number − base sequence number + 1, summed across SSRC
    /// changes and restarts.
    pub fn expected(&self) -> u64 {
        self.expected_done.saturating_add(self.epoch_expected())
    }

    /// `expected − received`, clamped at 0 (duplicates never make it negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// RFC 3550 A.8 interarrival jitter estimate, in seconds.
    pub fn jitter_seconds(&self) -> f64 {
        self.jitter
    }

    /// Sequence gaps seen (loss bursts; an upper bound when packets are reordered).
    pub fn loss_events(&self) -> u64 {
        self.loss_events
    }

    /// Arrival time (as given to [`ReceiveStats::on_packet`]) of the newest counted packet.
    pub fn last_arrival_nanos(&self) -> Option<u64> {
        self.started.then_some(self.last_arrival_ns)
    }

    /// Where sequence and jitter tracking stand, for a forwarder that counts the next
    /// packets of this SSRC elsewhere (the kernel fast path); `None` before the first packet.
    pub fn continuation(&self) -> Option<Continuation> {
        self.started.then(|| Continuation {
            ssrc: self.ssrc,
            ext_max: u64::try_from(self.cycles + i64::from(self.max_seq)).unwrap_or(0),
            jitter_ns: (self.jitter * 1e9) as i64,
            transit: self
                .have_transit
                .then_some((self.last_arrival_ns, self.last_ts)),
        })
    }

    /// Fold in packets of this SSRC counted elsewhere since [`ReceiveStats::continuation`]:
    /// `received` and `gaps` more, and that forwarder's newest state (extended highest
    /// sequence number, jitter, newest arrival with its RTP timestamp; arrival in this
    /// stream's clock).
    pub fn resume(&mut self, received: u64, gaps: u64, state: &Continuation) {
        if !self.started || state.ssrc != self.ssrc {
            return;
        }
        self.received = self.received.saturating_add(received);
        self.loss_events = self.loss_events.saturating_add(gaps);
        let ext = i64::try_from(state.ext_max).unwrap_or(i64::MAX);
        if ext > self.cycles + i64::from(self.max_seq) {
            self.cycles = ext & !0xffff;
            self.max_seq = (ext & 0xffff) as u16;
        }
        self.bad_seq = None;
        self.jitter = state.jitter_ns.max(0) as f64 * 1e-9;
        if let Some((arrival, ts)) = state.transit {
            self.have_transit = true;
            self.last_arrival_ns = arrival;
            self.last_ts = ts;
        }
    }

    fn epoch_expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let ext_max = self.cycles + i64::from(self.max_seq);
        u64::try_from(ext_max - self.base_ext + 1).unwrap_or(0)
    }

    /// Starts a new epoch (new SSRC or a confirmed restart) at `seq`.
    fn restart(&mut self, ssrc: u32, seq: u16) {
        self.expected_done = self.expected();
        self.started = true;
        self.ssrc = ssrc;
        self.max_seq = seq;
        self.cycles = 0;
        self.base_ext = i64::from(seq);
        self.bad_seq = None;
        self.have_transit = false;
    }

    /// RFC 3550 A.1 `update_seq`. Returns false for a packet that is not counted (the first
    /// one after a large jump).
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if udelta > 1 {
                self.loss_events += 1;
            }
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: a restart if the next packet follows this one.
            if self.bad_seq == Some(seq) {
                self.restart(self.ssrc, seq);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        } else {
            // Duplicate or late packet. If it precedes the first one, the base moves back so
            // the late packet is expected rather than counted as surplus.
            let behind = i64::from(self.max_seq.wrapping_sub(seq));
            let ext = self.cycles + i64::from(self.max_seq) - behind;
            if ext < self.base_ext {
                self.base_ext = ext;
            }
        }
        true
    }

    /// RFC 3550 A.8: D = (arrival difference) − (timestamp difference), J += (|D| − J) / 16,
    /// computed in seconds.
    fn update_jitter(&mut self, ts: u32, arrival_ns: u64, clock_rate: u32) {
        let rate = if clock_rate == 0 { 8000 } else { clock_rate };
        if self.have_transit {
            let arrival = arrival_ns.wrapping_sub(self.last_arrival_ns) as i64 as f64 * 1e-9;
            let sent = ts.wrapping_sub(self.last_ts) as i32 as f64 / f64::from(rate);
            let d = (arrival - sent).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.have_transit = true;
        self.last_arrival_ns = arrival_ns;
        self.last_ts = ts;
    }
}

/// The state of a stream's receive statistics handed to another counter of the same SSRC
/// and back ([`ReceiveStats::continuation`], [`ReceiveStats::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    pub ssrc: u32,
    /// Extended highest sequence number (wraps × 2^16 + seq).
    pub ext_max: u64,
    /// RFC 3550 A.8 jitter, ns.
    pub jitter_ns: i64,
    /// Newest counted packet: (arrival ns, RTP timestamp).
    pub transit: Option<(u64, u32)>,
}

/// One report block of an RTCP SR or RR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire; negative with duplicates).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the newest SR from `ssrc` (0: none yet).
    pub lsr: u32,
    /// Delay since that SR was received, in 1/65536 s.
    pub dlsr: u32,
}

const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const REPORT_BLOCK_LEN: usize = 24;
/// Most report blocks one SR/RR can carry (5-bit count).
const MAX_BLOCKS_PER_PACKET: usize = 31;

/// Appends the report blocks of every SR and RR in a (compound) RTCP packet to `out`. Other
/// packet types are skipped by their length. A malformed packet (wrong version, length past
/// the end, blocks past the packet's length) stops the walk; blocks read before it are kept.
///
/// Hand-parsed rather than with webrtc-rs `rtc-rtcp` 0.21.1 (checked): a report block is a
/// fixed 24-byte record, while `rtc_rtcp::packet::unmarshal` builds a `Vec<Box<dyn Packet>>`
/// of the whole compound packet (SDES strings, feedback, XR) and fails it all on the first
/// malformed part, where a monitor wants the blocks it could read. Its `rtc-shared`
/// dependency also brings `rand` 0.10, `url`, `substring` and a second `nix` (0.31) into
/// the build for this one read.
pub fn rtcp_reports(pkt: &[u8], out: &mut SmallVec<[ReportBlock; 4]>) {
    let mut rest = pkt;
    while let [b0, pt, l0, l1, ..] = *rest {
        if b0 >> 6 != 2 {
            return;
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some(packet) = rest.get(..len) else {
            return;
        };
        rest = &rest[len..];
        let blocks_at = match pt {
            RTCP_SR => 28,
            RTCP_RR => 8,
            _ => continue,
        };
        let count = usize::from(b0 & 0x1f).min(MAX_BLOCKS_PER_PACKET);
        let Some(blocks) = packet.get(blocks_at..blocks_at + count * REPORT_BLOCK_LEN) else {
            return;
        };
        out.extend(blocks.chunks_exact(REPORT_BLOCK_LEN).map(report_block));
    }
}

fn report_block(b: &[u8]) -> ReportBlock {
    let u32_at = |i: usize| match b.get(i..i + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    };
    let lost = u32_at(4);
    ReportBlock {
        ssrc: u32_at(0),
        fraction_lost: (lost >> 24) as u8,
        // 24-bit two's complement: shift it to the top, then arithmetic shift back.
        cumulative_lost: ((lost << 8) as i32) >> 8,
        highest_seq: u32_at(8),
        jitter: u32_at(12),
        lsr: u32_at(16),
        dlsr: u32_at(20),
    }
}

/// The middle 32 bits of the NTP timestamp of the first sender report in a (compound)
/// RTCP packet: what a receiver's report blocks echo as `lsr` (RFC 3550 §6.4.1).
pub fn sender_report_ntp_middle(pkt: &[u8]) -> Option<u32> {
    let mut rest = pkt;
    while let [b0, pt, l0, l1, ..] = *rest {
        if b0 >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let packet = rest.get(..len)?;
        if pt == RTCP_SR {
            let ntp: &[u8; 8] = packet.get(8..16)?.try_into().ok()?;
            return Some(u32::from_be_bytes([ntp[2], ntp[3], ntp[4], ntp[5]]));
        }
        rest = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests;
