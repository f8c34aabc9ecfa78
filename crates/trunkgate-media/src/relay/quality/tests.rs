//! Tests of the one-way check and the MOS intervals, on a fake clock.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::stats::RtpHeader;

const S: u64 = 1_000_000_000;
const PTIME: u64 = 20_000_000;

fn cfg() -> QualityConfig {
    QualityConfig {
        one_way_after: Duration::from_secs(3),
        interval: Duration::from_secs(10),
        assumed_delay: Duration::from_millis(40),
    }
}

fn answered_at(t: u64) -> SessionQuality {
    SessionQuality {
        answered: Some(t),
        ..SessionQuality::default()
    }
}

/// Runs the check every 250 ms from `from` to `to` with the two sides' newest packets given
/// by `newest(now)`; returns the changes with their times.
fn run(
    sq: &mut SessionQuality,
    shared: [&LegShared; 2],
    slot: &SlotQuality,
    (from, to): (u64, u64),
    held: bool,
    newest: impl Fn(u64) -> [Option<u64>; 2],
) -> Vec<(u64, OneWayChange)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        let c = check_one_way(&cfg(), sq, newest(now), shared, held, 0, Some(slot), now);
        if c != OneWayChange::None {
            out.push((now, c));
        }
        now += S / 4;
    }
    out
}

/// The newest packet of a side sending every 20 ms from 1 s until `stop` (`None`: forever).
fn sending(now: u64, stop: Option<u64>) -> Option<u64> {
    let last = stop.map_or(now, |s| s.min(now));
    (last >= S).then(|| last - (last % PTIME))
}

#[test]
fn trunk_falling_silent_is_flagged_trunk_to_pbx_within_one_way_after() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    let changes = run(&mut sq, [&a, &b], &slot, (S, 20 * S), false, |now| {
        [sending(now, None), sending(now, Some(4 * S))]
    });
    let (at, first) = changes[0];
    assert!(
        matches!(
            first,
            OneWayChange::Flagged {
                missing: Missing::TrunkToPbx,
                ..
            }
        ),
        "{changes:?}"
    );
    // Silent from 4 s, flagged at 4 s + 3 s (+ one check period at most).
    assert!((7 * S..=7 * S + S / 4).contains(&at), "flagged at {at}");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(slot.one_way(), [0, 1, 0]);
    assert_eq!(
        Missing::unpack(b.missing.load(Relaxed)).map(|m| m.0),
        Some(Missing::TrunkToPbx)
    );
}

#[test]
fn normal_call_is_never_flagged_and_no_media_is_its_own_reason() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    let normal = run(&mut sq, [&a, &b], &slot, (S, 30 * S), false, |now| {
        [sending(now, None), sending(now, None)]
    });
    assert!(normal.is_empty(), "{normal:?}");
    // No media at all after the answer.
    let mut sq = answered_at(S);
    let none = run(&mut sq, [&a, &b], &slot, (S, 10 * S), false, |_| {
        [None, None]
    });
    assert!(
        matches!(none.as_slice(), [(t, OneWayChange::Flagged { missing: Missing::Both, .. })] if *t == 4 * S),
        "{none:?}"
    );
    assert_eq!(slot.one_way(), [0, 0, 1]);
}

#[test]
fn both_sides_stopping_close_together_is_no_media_not_one_way() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    let changes = run(&mut sq, [&a, &b], &slot, (S, 20 * S), false, |now| {
        [sending(now, Some(5 * S)), sending(now, Some(5 * S + S / 2))]
    });
    assert!(
        matches!(
            changes.as_slice(),
            [(
                _,
                OneWayChange::Flagged {
                    missing: Missing::Both,
                    ..
                }
            )]
        ),
        "{changes:?}"
    );
}

#[test]
fn hold_is_excluded_and_restarts_the_clock() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    // On hold from 2 s to 20 s, the trunk silent all along.
    let held = run(&mut sq, [&a, &b], &slot, (2 * S, 20 * S), true, |now| {
        [sending(now, None), sending(now, Some(2 * S))]
    });
    assert!(held.is_empty(), "{held:?}");
    // Off hold: the trunk stays silent, flagged 3 s after the hold ended, not at once.
    let after = run(
        &mut sq,
        [&a, &b],
        &slot,
        (20 * S + S / 4, 30 * S),
        false,
        |now| [sending(now, None), sending(now, Some(2 * S))],
    );
    assert!(
        matches!(after.first(), Some((t, OneWayChange::Flagged { missing: Missing::TrunkToPbx, .. })) if *t >= 23 * S),
        "{after:?}"
    );
}

#[test]
fn flag_clears_when_media_returns_and_counts_once() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    let gap = |now: u64| {
        // The PBX silent from 3 s to 10 s, then again from 15 s.
        let pbx = if now < 10 * S {
            sending(now, Some(3 * S))
        } else {
            sending(now, Some(15 * S))
        };
        [pbx, sending(now, None)]
    };
    let changes = run(&mut sq, [&a, &b], &slot, (S, 25 * S), false, gap);
    let kinds: Vec<_> = changes.iter().map(|c| c.1).collect();
    assert!(
        matches!(
            kinds.as_slice(),
            [
                OneWayChange::Flagged {
                    missing: Missing::PbxToTrunk,
                    ..
                },
                OneWayChange::Cleared(Missing::PbxToTrunk),
                OneWayChange::Flagged {
                    missing: Missing::PbxToTrunk,
                    ..
                }
            ]
        ),
        "{changes:?}"
    );
    assert_eq!(slot.one_way(), [1, 0, 0], "counted once per call");
}

#[test]
fn a_session_refresh_does_not_clear_a_flag_but_returning_audio_does() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = answered_at(S);
    let newest = |now: u64, b_until: u64| [sending(now, None), sending(now, Some(b_until))];
    let check = |sq: &mut SessionQuality, now: u64, last_update: u64, b_until: u64| {
        check_one_way(
            &cfg(),
            sq,
            newest(now, b_until),
            [&a, &b],
            false,
            last_update,
            Some(&slot),
            now,
        )
    };
    // The trunk stops at 2 s: flagged at 5 s.
    let mut now = S;
    while sq.flagged.is_none() {
        check(&mut sq, now, 0, 2 * S);
        now += S / 4;
    }
    assert_eq!(sq.flagged, Some(Missing::TrunkToPbx));
    // A re-INVITE refreshing the session at 6 s: still one-way (the trunk still silent).
    for t in [6 * S, 6 * S + S / 4, 7 * S] {
        assert_eq!(
            check(&mut sq, t, 6 * S, 2 * S),
            OneWayChange::None,
            "at {t}"
        );
    }
    assert_eq!(sq.flagged, Some(Missing::TrunkToPbx));
    // The trunk's audio returns at 8 s: cleared.
    assert_eq!(
        check(&mut sq, 8 * S, 6 * S, u64::MAX),
        OneWayChange::Cleared(Missing::TrunkToPbx)
    );
    assert_eq!(b.missing.load(Relaxed), 0);
    assert_eq!(slot.one_way(), [0, 1, 0]);
}

#[test]
fn not_answered_is_not_checked() {
    let (a, b, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let mut sq = SessionQuality::default();
    let early = run(&mut sq, [&a, &b], &slot, (S, 20 * S), false, |now| {
        [None, sending(now, None)]
    });
    assert!(
        early.is_empty(),
        "early media is one-way by design: {early:?}"
    );
}

fn feed(s: &mut ReceiveStats, n: u64) {
    let h = RtpHeader {
        marker: false,
        payload_type: 8,
        seq: n as u16,
        timestamp: (n * 160) as u32,
        ssrc: 1,
    };
    s.on_packet(&h, n * PTIME + 1, 8000);
}

#[test]
fn intervals_observe_each_direction_and_keep_the_call_figure() {
    let (sa, sb, slot) = (
        LegShared::default(),
        LegShared::default(),
        SlotQuality::default(),
    );
    let (mut a, mut b) = (ReceiveStats::new(), ReceiveStats::new());
    let (mut qa, mut qb) = (LegQuality::default(), LegQuality::default());
    // 10 s at 50 pps: side A loses every 20th packet (5 %, random-like), side B nothing.
    for n in 0..500 {
        if n % 20 != 7 {
            feed(&mut a, n);
        }
        feed(&mut b, n);
    }
    start_if_new(&mut qa, &a, 1);
    start_if_new(&mut qb, &b, 1);
    assert!(interval_due(&cfg(), &qa, 10 * S + 1));
    let views = [
        LegView {
            stats: &a,
            q: &mut qa,
            shared: &sa,
        },
        LegView {
            stats: &b,
            q: &mut qb,
            shared: &sb,
        },
    ];
    let mos = close_intervals(&cfg(), views, false, Some(&slot), 10 * S + 1);
    let (ma, mb) = (mos[0].unwrap(), mos[1].unwrap());
    assert!((ma - 3.85).abs() < 0.02, "5 % loss: {ma}");
    assert!((mb - 4.37).abs() < 0.02, "no loss: {mb}");
    let h = slot.mos();
    assert_eq!(h.count, 2);
    assert_eq!(sa.mos_milli.load(Relaxed), (ma * 1000.0).round() as u64);
    // A held interval is not observed; too few packets give no estimate.
    let views = [
        LegView {
            stats: &a,
            q: &mut qa,
            shared: &sa,
        },
        LegView {
            stats: &b,
            q: &mut qb,
            shared: &sb,
        },
    ];
    let again = close_intervals(&cfg(), views, true, Some(&slot), 20 * S);
    assert_eq!(slot.mos().count, 2);
    // The call figure stays (whole call so far), the interval had no packets.
    assert!(again[0].is_some());
}

#[test]
fn mos_histogram_buckets_are_cumulative() {
    let slot = SlotQuality::default();
    for m in [4.41, 4.1, 3.3, 1.0, 4.45] {
        slot.observe(m);
    }
    let h = slot.mos();
    assert_eq!(h.count, 5);
    assert!((h.sum - 17.26).abs() < 1e-9);
    let at = |le: f64| h.buckets.iter().find(|b| b.0 == le).map(|b| b.1);
    assert_eq!(at(1.0), Some(1));
    assert_eq!(at(3.5), Some(2));
    assert_eq!(at(4.2), Some(3));
    assert_eq!(at(4.4), Some(3));
}

#[test]
fn rtt_from_a_report_answering_the_other_sides_sender_report() {
    let (mut q, shared) = (LegQuality::default(), LegShared::default());
    // The other side's SR passed at 1 s; this side's report comes back at 1.25 s having
    // held it 0.2 s (13107 / 65536 s): 50 ms round trip.
    note_report(
        &mut q,
        &shared,
        Some((0xabcd, S)),
        0xabcd,
        13_107,
        S + S / 4,
    );
    let rtt = q.rtt.unwrap();
    assert!((rtt as i64 - 50_000_000).abs() < 100_000, "{rtt}");
    // A report on another SR, or none, changes nothing.
    note_report(&mut q, &shared, Some((0xabcd, S)), 0x1234, 0, 2 * S);
    note_report(&mut q, &shared, None, 0xabcd, 0, 2 * S);
    assert_eq!(q.rtt, Some(rtt));
}
