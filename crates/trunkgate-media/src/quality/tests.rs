//! The E-model pinned against published reference points.

use super::*;

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

#[test]
fn mos_from_r_matches_g107_annex_b() {
    // G.107: every default value gives R = 93.2, MOS 4.41; G.107 Annex B / G.109 table.
    for (r, mos) in [
        (93.2, 4.41),
        (90.0, 4.34),
        (80.0, 4.02),
        (70.0, 3.60),
        (60.0, 3.10),
        (50.0, 2.58),
    ] {
        let got = mos_from_r(r);
        assert!(close(got, mos, 0.005), "R {r}: MOS {got}, expected {mos}");
    }
    assert_eq!(mos_from_r(-5.0), 1.0);
    assert_eq!(mos_from_r(0.0), 1.0);
    assert_eq!(mos_from_r(100.0), 4.5);
    assert_eq!(mos_from_r(120.0), 4.5);
}

#[test]
fn effective_equipment_impairment_follows_g107_eq_7_29() {
    // No loss: the codec's own Ie. All loss: 95.
    assert_eq!(effective_equipment_impairment(Codec::G711, 0.0, 1.0), 0.0);
    assert_eq!(effective_equipment_impairment(Codec::G729, 0.0, 1.0), 11.0);
    assert!(close(
        effective_equipment_impairment(Codec::G711, 100.0, 1.0),
        95.0 * 100.0 / 125.1,
        1e-9
    ));
    // G.711 with PLC (Bpl 25.1), random loss: 2 % -> 7.01, 5 % -> 15.78.
    assert!(close(
        effective_equipment_impairment(Codec::G711, 2.0, 1.0),
        7.01,
        0.01
    ));
    assert!(close(
        effective_equipment_impairment(Codec::G711, 5.0, 1.0),
        15.78,
        0.01
    ));
    // G.729A (Ie 11, Bpl 19), 2 % random: 11 + 84·2/21 = 19.0.
    assert!(close(
        effective_equipment_impairment(Codec::G729, 2.0, 1.0),
        19.0,
        1e-9
    ));
    // Bursty loss hurts more than random loss at the same ratio.
    assert!(
        effective_equipment_impairment(Codec::G711, 2.0, 2.0)
            > effective_equipment_impairment(Codec::G711, 2.0, 1.0)
    );
}

#[test]
fn delay_impairment_is_cole_rosenbluths_fit() {
    assert_eq!(delay_impairment(0.0), 0.0);
    assert!(close(delay_impairment(100.0), 2.4, 1e-9));
    assert!(close(delay_impairment(150.0), 3.6, 1e-9));
    // Past 177.3 ms the second term sets in: 200 ms -> 4.8 + 0.11·22.7 = 7.297.
    assert!(close(delay_impairment(200.0), 7.297, 1e-9));
    assert!(close(delay_impairment(400.0), 9.6 + 0.11 * 222.7, 1e-9));
}

#[test]
fn burst_ratio_is_one_for_random_loss_and_grows_with_bursts() {
    assert_eq!(burst_ratio(0, 0, 0.0), 1.0);
    // 10 single losses in 500 packets (2 %): mean burst 1, random mean burst 1/0.98.
    assert!(close(burst_ratio(10, 10, 0.02), 1.0, 1e-9));
    // The same 10 losses in 2 bursts of 5: BurstR = 5 · 0.98 = 4.9.
    assert!(close(burst_ratio(10, 2, 0.02), 4.9, 1e-9));
}

#[test]
fn jitter_buffer_discards_only_under_heavy_jitter() {
    assert_eq!(jitter_buffer_loss(0.0), 0.0);
    assert!(jitter_buffer_loss(0.002) < 1e-9);
    // J = 20 ms: σ = 17.7 ms, P(deviation > 30 ms) = 0.5·erfc(1.196) ≈ 4.5 %.
    let p = jitter_buffer_loss(0.020);
    assert!(close(p, 0.045, 0.002), "{p}");
    assert!(jitter_buffer_loss(0.040) > p);
}

#[test]
fn erfc_matches_tabulated_values() {
    for (x, want) in [
        (0.0, 1.0),
        (0.5, 0.479_500),
        (1.0, 0.157_299),
        (2.0, 0.004_678),
        (-1.0, 1.842_701),
    ] {
        assert!(close(erfc(x), want, 2e-6), "erfc({x}) = {}", erfc(x));
    }
}

/// The G.711 figures the documentation (docs/operations.md, "Reading call quality") and the
/// end-to-end test's bands are derived from: random loss, no jitter, the default assumed
/// delay of 40 ms (Ta = 70 ms, Id = 1.68).
#[test]
fn g711_reference_figures() {
    let at = |loss: f64| {
        estimate(&Impairments {
            codec: Codec::G711,
            loss_ratio: loss,
            burst_ratio: 1.0,
            jitter: 0.0,
            delay: 0.040,
        })
    };
    let (e0, e2, e5) = (at(0.0), at(0.02), at(0.05));
    assert!(close(e0.r, 91.52, 0.01), "{e0:?}");
    assert!(close(e0.mos, 4.37, 0.01), "{e0:?}");
    assert!(close(e2.r, 84.51, 0.01), "{e2:?}");
    assert!(close(e2.mos, 4.18, 0.01), "{e2:?}");
    assert!(close(e5.r, 75.74, 0.01), "{e5:?}");
    assert!(close(e5.mos, 3.85, 0.01), "{e5:?}");
    // The e2e bands: measured loss within ±0.5 point of 2 %, ±1 point of 5 %.
    assert!(at(0.015).mos < 4.24 && at(0.025).mos > 4.12);
    assert!(at(0.04).mos < 3.97 && at(0.06).mos > 3.74);
    // Everything clamps: total loss, absurd delay.
    let worst = estimate(&Impairments {
        codec: Codec::G729,
        loss_ratio: 1.0,
        burst_ratio: 10.0,
        jitter: 1.0,
        delay: 5.0,
    });
    assert_eq!(worst, Estimate { r: 0.0, mos: 1.0 });
}

#[test]
fn codec_from_static_payload_types() {
    assert_eq!(Codec::from_payload_type(0), Codec::G711);
    assert_eq!(Codec::from_payload_type(8), Codec::G711);
    assert_eq!(Codec::from_payload_type(18), Codec::G729);
    assert_eq!(Codec::from_payload_type(4), Codec::G723);
    assert_eq!(Codec::from_payload_type(111), Codec::G711);
}
