//! Tests of `stats.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

const PTIME_NS: u64 = 20_000_000;

fn hdr(seq: u16, ts: u32, ssrc: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: ts,
        ssrc,
    }
}

/// Feeds packet `n` of a 50 pps G.711 stream (seq = start + n, ts = 160 n), on time.
fn feed(s: &mut ReceiveStats, start: u16, n: u64) {
    let seq = start.wrapping_add(n as u16);
    s.on_packet(&hdr(seq, (n * 160) as u32, 7), n * PTIME_NS, 8000);
}

fn rtp_packet(seq: u16) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = 0x80;
    p[1] = 0x80 | 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    p[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    p
}

#[test]
fn reads_the_fixed_header() {
    let p = rtp_packet(0xabcd);
    assert_eq!(
        rtp_header(&p),
        Some(RtpHeader {
            marker: true,
            payload_type: 8,
            seq: 0xabcd,
            timestamp: 0x0102_0304,
            ssrc: 0xdead_beef
        })
    );
    assert_eq!(rtp_header(&p[..11]), None);
    let mut v1 = p;
    v1[0] = 0x40;
    assert_eq!(rtp_header(&v1), None);
    assert!(!is_rtcp(&p));
}

#[test]
fn demultiplexes_rtcp() {
    for pt in [200u8, 201, 202, 203, 204, 205, 206, 207] {
        assert!(is_rtcp(&[0x80, pt, 0, 1]), "{pt}");
    }
    // RTP with marker and PT 0, 8, 96–127 is RTP; PT 72–76 would collide (RFC 5761 §4).
    for b1 in [0u8, 0x80, 8, 0x88, 96, 0xe0, 127, 0xff] {
        assert!(!is_rtcp(&[0x80, b1, 0, 1]), "{b1}");
    }
    assert!(!is_rtcp(&[0x80]));
    assert!(!is_rtcp(&[0x00, 200]));
}

#[test]
fn in_order_stream_has_no_loss() {
    let mut s = ReceiveStats::new();
    for n in 0..1000 {
        feed(&mut s, 1234, n);
    }
    assert_eq!((s.received(), s.expected(), s.lost()), (1000, 1000, 0));
    assert!(s.jitter_seconds().abs() < 1e-12, "{}", s.jitter_seconds());
}

#[test]
fn every_20th_dropped_is_5_percent() {
    let mut s = ReceiveStats::new();
    for n in (0..2000).filter(|n| n % 20 != 7) {
        feed(&mut s, 40000, n);
    }
    assert_eq!(s.expected(), 2000);
    assert_eq!(s.lost(), 100);
    assert!((s.lost() as f64 / s.expected() as f64 - 0.05).abs() < 1e-9);
}

#[test]
fn wraps_at_65535() {
    let mut s = ReceiveStats::new();
    for n in 0..200_000u64 {
        if n != 65_000 && n != 131_072 {
            feed(&mut s, 65_500, n);
        }
    }
    assert_eq!((s.expected(), s.lost()), (200_000, 2));
}

#[test]
fn reordered_neighbours_are_not_loss() {
    let mut s = ReceiveStats::new();
    let mut order: Vec<u64> = (0..1000).collect();
    for pair in order.chunks_mut(2) {
        pair.swap(0, 1);
    }
    // Starts with packet 1 then 0: the base moves back to 0; it also crosses a wrap.
    for n in order {
        feed(&mut s, 65_300, n);
    }
    assert_eq!((s.received(), s.expected(), s.lost()), (1000, 1000, 0));
}

#[test]
fn late_packet_repairs_an_earlier_gap() {
    let mut s = ReceiveStats::new();
    for n in [0, 1, 2, 4, 5, 6] {
        feed(&mut s, 10, n);
    }
    assert_eq!(s.lost(), 1);
    feed(&mut s, 10, 3);
    assert_eq!(s.lost(), 0);
}

#[test]
fn duplicates_do_not_make_loss_negative() {
    let mut s = ReceiveStats::new();
    for n in 0..100 {
        feed(&mut s, 0, n);
        feed(&mut s, 0, n);
    }
    assert_eq!((s.received(), s.expected(), s.lost()), (200, 100, 0));
}

#[test]
fn large_jump_restarts_after_two_sequential_packets() {
    let mut s = ReceiveStats::new();
    for n in 0..50 {
        feed(&mut s, 100, n);
    }
    // The sender restarts at 30000: the first packet is held back, the second confirms.
    let t = 50 * PTIME_NS;
    s.on_packet(&hdr(30_000, 8000, 7), t, 8000);
    assert_eq!((s.received(), s.expected()), (50, 50));
    for (i, seq) in (30_001..30_101).enumerate() {
        s.on_packet(
            &hdr(seq, 8160 + 160 * i as u32, 7),
            t + (i as u64 + 1) * PTIME_NS,
            8000,
        );
    }
    assert_eq!((s.received(), s.expected(), s.lost()), (150, 150, 0));
    // A single stray far packet is ignored and does not disturb the count.
    s.on_packet(&hdr(5, 0, 7), t, 8000);
    s.on_packet(&hdr(30_101, 0, 7), t, 8000);
    assert_eq!((s.received(), s.expected(), s.lost()), (151, 151, 0));
}

#[test]
fn gap_within_dropout_counts_as_loss() {
    let mut s = ReceiveStats::new();
    feed(&mut s, 0, 0);
    feed(&mut s, 0, 2999);
    assert_eq!((s.expected(), s.lost()), (3000, 2998));
}

#[test]
fn ssrc_change_restarts_sequence_but_keeps_totals() {
    let mut s = ReceiveStats::new();
    for n in (0..100).filter(|n| n % 10 != 0) {
        feed(&mut s, 500, n);
    }
    assert_eq!((s.expected(), s.lost()), (99, 9));
    // A new source (e.g. after a re-INVITE) with unrelated numbering.
    for n in 0..100u16 {
        s.on_packet(&hdr(9000u16.wrapping_add(n) + n % 2, 0, 8), 0, 8000);
    }
    assert_eq!(s.received(), 190);
    assert_eq!(s.expected(), 99 + 101);
    assert_eq!(s.lost(), 10);
}

#[test]
fn jitter_is_zero_for_paced_packets_at_any_clock_rate() {
    for rate in [0u32, 8000, 16000, 48000, 90000] {
        let r = u64::from(if rate == 0 { 8000 } else { rate });
        let mut s = ReceiveStats::new();
        for n in 0..500u64 {
            let ts = (n * r / 50) as u32;
            s.on_packet(
                &hdr(n as u16, ts.wrapping_add(u32::MAX - 1000), 1),
                5 + n * PTIME_NS,
                rate,
            );
        }
        assert!(s.jitter_seconds() < 1e-9, "{rate}: {}", s.jitter_seconds());
    }
}

/// RFC 3550 A.8 verbatim: integer arrival in RTP units, J in RTP units as f64.
fn reference_jitter(packets: &[(u32, u64)], rate: u64) -> f64 {
    let mut j = 0.0f64;
    let mut last_transit: Option<i64> = None;
    for &(ts, arrival_ns) in packets {
        let arrival = (u128::from(arrival_ns) * u128::from(rate) / 1_000_000_000) as i64;
        let transit = arrival - i64::from(ts);
        if let Some(last) = last_transit {
            let d = (transit - last).abs() as f64;
            j += (d - j) / 16.0;
        }
        last_transit = Some(transit);
    }
    j / rate as f64
}

#[test]
fn jitter_matches_a8_for_uniform_random_delay() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let max_delay_ns = 40_000_000u64; // uniform 0–40 ms
    let mut s = ReceiveStats::new();
    let mut packets = Vec::new();
    let mut sum = 0.0;
    for n in 0..20_000u64 {
        let ts = (n * 160) as u32;
        let arrival = 1_000_000_000 + n * PTIME_NS + rng.random_range(0..max_delay_ns);
        packets.push((ts, arrival));
        s.on_packet(&hdr(n as u16, ts, 3), arrival, 8000);
        if n >= 100 {
            sum += s.jitter_seconds();
        }
    }
    // The estimate matches A.8 computed verbatim (which rounds arrivals to RTP units).
    let reference = reference_jitter(&packets, 8000);
    let j = s.jitter_seconds();
    assert!((j - reference).abs() < 0.0002, "ours {j}, A.8 {reference}");
    // D is the difference of two independent U(0, a) delays, so E|D| = a/3; J is a
    // moving average of |D| over ~16 packets, so its mean over the stream is a/3.
    let analytic = max_delay_ns as f64 * 1e-9 / 3.0;
    let mean = sum / 19_900.0;
    assert!(
        (mean - analytic).abs() / analytic < 0.03,
        "mean J {mean}, a/3 {analytic}"
    );
    // Reordering happened (delays > 20 ms) but loss is still zero.
    assert_eq!(s.lost(), 0);
}

proptest! {
    #[test]
    fn any_packet_sequence_is_safe(pkts in proptest::collection::vec(
        (any::<u16>(), any::<u32>(), 0u32..3, any::<u64>(), any::<u32>()), 0..200)) {
        let mut s = ReceiveStats::new();
        for (seq, ts, ssrc, at, rate) in pkts {
            s.on_packet(&hdr(seq, ts, ssrc), at, rate);
            prop_assert!(s.lost() <= s.expected());
            prop_assert!(s.jitter_seconds().is_finite() && s.jitter_seconds() >= 0.0);
        }
    }

    #[test]
    fn shuffled_window_has_exact_loss(drop in proptest::collection::vec(any::<bool>(), 50..400),
                                      start in any::<u16>(), seed in any::<u64>()) {
        // Small local reordering (swap within 8) never counts as loss; drops always do,
        // except drops at the very start or end which no receiver can see.
        // Shuffled within blocks of 8, so no packet is displaced by more than 7. (Chained
        // swaps, as this test once did, can carry a packet more than MAX_MISORDER = 100 late,
        // which RFC 3550 A.1 rightly treats as a sequence jump, not as reordering.)
        let mut order: Vec<u64> = (0..drop.len() as u64).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for block in order.chunks_mut(8) {
            for i in (1..block.len()).rev() {
                let j = rng.random_range(0..=i);
                block.swap(i, j);
            }
        }
        let mut s = ReceiveStats::new();
        for &n in &order {
            if !drop[n as usize] {
                feed(&mut s, start, n);
            }
        }
        let kept: Vec<usize> = (0..drop.len()).filter(|&i| !drop[i]).collect();
        if let (Some(&lo), Some(&hi)) = (kept.first(), kept.last()) {
            let visible = (lo..=hi).filter(|&i| drop[i]).count() as u64;
            prop_assert_eq!(s.lost(), visible);
        }
    }
}

fn sr(count: u8, blocks: &[[u8; 24]], extra: usize) -> Vec<u8> {
    let words = (28 + 24 * blocks.len() + extra) / 4 - 1;
    let mut p = vec![0x80 | count, 200];
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    p.extend_from_slice(&[0u8; 20]); // NTP, RTP ts, packet and octet counts
    for b in blocks {
        p.extend_from_slice(b);
    }
    p.resize(p.len() + extra, 0);
    p
}

fn rr(blocks: &[[u8; 24]]) -> Vec<u8> {
    let mut p = vec![0x80 | blocks.len() as u8, 201];
    p.extend_from_slice(&((8 + 24 * blocks.len()) as u16 / 4 - 1).to_be_bytes());
    p.extend_from_slice(&0x2222_2222u32.to_be_bytes());
    for b in blocks {
        p.extend_from_slice(b);
    }
    p
}

fn block(ssrc: u32, fraction: u8, cumulative: i32, seq: u32, jitter: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&ssrc.to_be_bytes());
    b[4] = fraction;
    b[5..8].copy_from_slice(&cumulative.to_be_bytes()[1..]);
    b[8..12].copy_from_slice(&seq.to_be_bytes());
    b[12..16].copy_from_slice(&jitter.to_be_bytes());
    b[16..24].copy_from_slice(&[0xaa; 8]); // LSR, DLSR
    b
}

fn reports(pkt: &[u8]) -> Vec<ReportBlock> {
    let mut out = SmallVec::new();
    rtcp_reports(pkt, &mut out);
    out.to_vec()
}

#[test]
fn sender_report_with_one_block() {
    let p = sr(1, &[block(0xcafe, 13, 42, 0x0001_0010, 99)], 0);
    assert_eq!(p.len(), 52);
    assert!(is_rtcp(&p));
    assert_eq!(
        reports(&p),
        [ReportBlock {
            ssrc: 0xcafe,
            fraction_lost: 13,
            cumulative_lost: 42,
            highest_seq: 0x0001_0010,
            jitter: 99,
            lsr: 0xaaaa_aaaa,
            dlsr: 0xaaaa_aaaa,
        }]
    );
}

#[test]
fn sender_report_ntp_middle_bits() {
    let mut p = sr(0, &[], 0);
    // NTP timestamp: seconds 0x0102_0304, fraction 0x0506_0708 -> middle 0x0304_0506.
    p[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(sender_report_ntp_middle(&p), Some(0x0304_0506));
    // After an RR in a compound packet too; none in an RR alone or garbage.
    let mut compound = rr(&[block(1, 0, 0, 0, 0)]);
    compound.extend_from_slice(&p);
    assert_eq!(sender_report_ntp_middle(&compound), Some(0x0304_0506));
    assert_eq!(sender_report_ntp_middle(&rr(&[])), None);
    assert_eq!(sender_report_ntp_middle(&p[..12]), None);
    assert_eq!(sender_report_ntp_middle(&[]), None);
}

#[test]
fn loss_events_count_gaps_not_packets() {
    let mut s = ReceiveStats::new();
    assert_eq!(s.last_arrival_nanos(), None);
    // 0..10, then a burst of 3 lost (10, 11, 12), then 13..20, one lost (20), 21..30.
    for n in (0..10).chain(13..20).chain(21..30) {
        feed(&mut s, 100, n);
    }
    assert_eq!(s.lost(), 4);
    assert_eq!(s.loss_events(), 2);
    assert_eq!(s.last_arrival_nanos(), Some(29 * PTIME_NS));
}

#[test]
fn receiver_report_with_two_blocks_and_negative_loss() {
    let p = rr(&[block(1, 0, -3, 7, 0), block(2, 255, 0x7f_ffff, 8, 1)]);
    let got = reports(&p);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].ssrc, got[0].cumulative_lost), (1, -3));
    assert_eq!(
        (got[1].fraction_lost, got[1].cumulative_lost, got[1].jitter),
        (255, 0x7f_ffff, 1)
    );
}

#[test]
fn compound_sr_sdes_rr() {
    let mut p = sr(1, &[block(5, 1, 2, 3, 4)], 0);
    // SDES: one chunk, CNAME "ab", END, padded to a word.
    p.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 9, 1, 2, b'a', b'b']);
    p.extend_from_slice(&rr(&[block(6, 0, 0, 0, 0)]));
    let got = reports(&p);
    assert_eq!(got.iter().map(|b| b.ssrc).collect::<Vec<_>>(), [5, 6]);
    // The output is appended to, not replaced.
    let mut out = SmallVec::new();
    rtcp_reports(&p, &mut out);
    rtcp_reports(&p, &mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn truncated_and_malformed_packets_stop_without_panic() {
    let mut p = sr(1, &[block(5, 1, 2, 3, 4)], 0);
    p.extend_from_slice(&rr(&[block(6, 0, 0, 0, 0)]));
    for cut in 0..p.len() {
        let got = reports(&p[..cut]);
        assert_eq!(got.len(), usize::from(cut >= 52), "cut at {cut}");
    }
    // A count larger than the packet's length: nothing from that packet.
    let mut liar = rr(&[block(1, 0, 0, 0, 0)]);
    liar[0] = 0x83;
    assert!(reports(&liar).is_empty());
    // Wrong version in the second packet stops the walk after the first.
    let mut p = rr(&[block(1, 0, 0, 0, 0)]);
    p.extend_from_slice(&[0x40, 201, 0, 1, 0, 0, 0, 0]);
    p.extend_from_slice(&rr(&[block(2, 0, 0, 0, 0)]));
    assert_eq!(reports(&p).len(), 1);
    // SR with padding after its blocks (extra words) still reads its blocks.
    assert_eq!(reports(&sr(1, &[block(9, 0, 0, 0, 0)], 8)).len(), 1);
    assert!(reports(&[]).is_empty());
}

proptest! {
    #[test]
    fn rtcp_reports_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut out = SmallVec::new();
        rtcp_reports(&bytes, &mut out);
        prop_assert!(out.len() <= bytes.len() / 24);
        let _ = rtp_header(&bytes);
        let _ = is_rtcp(&bytes);
    }
}

#[test]
fn continuation_and_resume_count_packets_forwarded_elsewhere() {
    // 10 packets here, 90 more counted by another forwarder (2 lost among them: one gap),
    // then 10 more here: the totals are those of one uninterrupted stream.
    let hdr = |seq: u16, ts: u32| RtpHeader {
        marker: false,
        payload_type: 8,
        seq,
        timestamp: ts,
        ssrc: 7,
    };
    let mut s = ReceiveStats::new();
    for i in 0..10u16 {
        s.on_packet(
            &hdr(65530u16.wrapping_add(i), u32::from(i) * 160),
            u64::from(i) * 20_000_000,
            8000,
        );
    }
    let c = s.continuation().unwrap();
    assert_eq!(c.ext_max, 65536 + 3);
    let elsewhere = Continuation {
        ssrc: 7,
        ext_max: c.ext_max + 92,
        jitter_ns: 1_000_000,
        transit: Some((101 * 20_000_000, 101 * 160)),
    };
    s.resume(90, 1, &elsewhere);
    assert_eq!((s.received(), s.expected(), s.lost()), (100, 102, 2));
    assert!((s.jitter_seconds() - 0.001).abs() < 1e-9);
    for i in 102..112u16 {
        s.on_packet(
            &hdr(65530u16.wrapping_add(i), u32::from(i) * 160),
            u64::from(i) * 20_000_000,
            8000,
        );
    }
    assert_eq!((s.received(), s.expected(), s.lost()), (110, 112, 2));
    // Another SSRC's state is not folded in.
    s.resume(
        5,
        0,
        &Continuation {
            ssrc: 8,
            ..elsewhere
        },
    );
    assert_eq!(s.received(), 110);
}
