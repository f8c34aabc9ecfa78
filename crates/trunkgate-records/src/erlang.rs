//! Erlang B and Erlang C: blocking and waiting probabilities of a group of channels offered
//! a traffic in Erlangs, and the inverse (channels for a grade of service). Computed with
//! the stable recurrence `B(E, n) = E·B(E, n−1) / (n + E·B(E, n−1))`, `B(E, 0) = 1`: no
//! factorials, no powers, no overflow at thousands of channels.

/// Most channels [`channels_for`] searches; beyond it the answer is `None`.
pub const MAX_CHANNELS: u32 = 100_000;

/// Erlang B: the probability that a call offered to `channels` channels carrying `erlangs`
/// of offered traffic finds them all busy (and is lost). `erlangs <= 0`: 0 (1 for zero
/// channels with positive traffic).
pub fn blocking(erlangs: f64, channels: u32) -> f64 {
    if erlangs.is_nan() || erlangs <= 0.0 {
        return 0.0;
    }
    let mut b = 1.0;
    for n in 1..=channels {
        b = erlangs * b / (f64::from(n) + erlangs * b);
    }
    b
}

/// The fewest channels whose Erlang B blocking for `erlangs` is at most `gos` (a fraction,
/// e.g. 0.01). `None` for a `gos` outside (0, 1) or more than [`MAX_CHANNELS`] channels.
pub fn channels_for(erlangs: f64, gos: f64) -> Option<u32> {
    if !(gos > 0.0 && gos < 1.0 && erlangs.is_finite()) {
        return None;
    }
    if erlangs <= 0.0 {
        return Some(0);
    }
    let mut b = 1.0;
    let mut n = 0;
    while b > gos {
        n += 1;
        if n > MAX_CHANNELS {
            return None;
        }
        b = erlangs * b / (f64::from(n) + erlangs * b);
    }
    Some(n)
}

/// The most traffic (Erlangs) `channels` channels carry at blocking `gos` or less (the
/// numbers in a printed Erlang B table), by bisection over [`blocking`], to 1e-6 E.
pub fn traffic_for(channels: u32, gos: f64) -> f64 {
    if channels == 0 || !(gos > 0.0 && gos < 1.0) {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0_f64, f64::from(channels) * 10.0 + 10.0);
    while hi - lo > 1e-6 {
        let mid = (lo + hi) / 2.0;
        if blocking(mid, channels) > gos {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

/// Erlang C: the probability that a call offered to `channels` agents (a queue) has to
/// wait, from Erlang B: `C = n·B / (n − E·(1 − B))`. 1 when `erlangs >= channels` (the
/// queue grows without bound).
pub fn waiting(erlangs: f64, channels: u32) -> f64 {
    if erlangs.is_nan() || erlangs <= 0.0 {
        return 0.0;
    }
    let n = f64::from(channels);
    if erlangs >= n {
        return 1.0;
    }
    let b = blocking(erlangs, channels);
    n * b / (n - erlangs * (1.0 - b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offered traffic (E) by channels and blocking, as printed in standard Erlang B tables
    /// (e.g. the ITU-T / Siemens "Erlang B" tables), to two decimals.
    const TABLE: &[(u32, f64, f64)] = &[
        (5, 0.01, 1.36),
        (5, 0.02, 1.66),
        (5, 0.05, 2.22),
        (10, 0.01, 4.46),
        (10, 0.02, 5.08),
        (10, 0.05, 6.22),
        (20, 0.01, 12.03),
        (20, 0.02, 13.18),
        (20, 0.05, 15.25),
        (30, 0.01, 20.34),
        (30, 0.02, 21.93),
        (50, 0.01, 37.90),
        (50, 0.02, 40.26),
        (50, 0.05, 44.53),
        (100, 0.01, 84.06),
        (100, 0.02, 87.97),
        (100, 0.05, 95.24),
    ];

    #[test]
    fn traffic_matches_published_erlang_b_tables() {
        for &(n, gos, e) in TABLE {
            let got = traffic_for(n, gos);
            assert!(
                (got - e).abs() < 0.006,
                "{n} channels at {gos}: {got:.3} E, table says {e}"
            );
        }
    }

    #[test]
    fn channels_match_published_examples() {
        // (Erlangs, GoS, lines) as in the usual worked examples of Erlang B tables.
        for (e, gos, lines) in [
            (10.0, 0.02, 17),
            (10.0, 0.01, 18),
            (10.0, 0.05, 15),
            (1.0, 0.01, 5),
            (2.0, 0.01, 7),
            (5.0, 0.01, 11),
            (20.0, 0.01, 30),
            (20.0, 0.02, 28),
            (50.0, 0.01, 64),
            (100.0, 0.01, 117),
        ] {
            assert_eq!(channels_for(e, gos), Some(lines), "{e} E at {gos}");
        }
        // The table entries, read the other way: N channels carry the table's traffic.
        // (the printed figure is rounded, so take the exact capacity just below it).
        for &(n, gos, _) in TABLE {
            let e = traffic_for(n, gos) * 0.9999;
            assert_eq!(channels_for(e, gos), Some(n), "{e} E at {gos}");
            assert_eq!(channels_for(e * 1.01, gos), Some(n + 1), "{e} E at {gos}");
        }
    }

    #[test]
    fn the_recurrence_is_stable_at_large_sizes_and_edges() {
        // 5,000 E: a factorial formula overflows long before; the recurrence stays in (0, 1).
        let b = blocking(5000.0, 5000);
        assert!(b > 0.0 && b < 0.02, "{b}");
        let n = channels_for(5000.0, 0.01).unwrap();
        assert!((5000..5200).contains(&n), "{n}");
        assert_eq!(blocking(0.0, 10), 0.0);
        assert_eq!(blocking(3.0, 0), 1.0);
        assert_eq!(channels_for(0.0, 0.01), Some(0));
        assert_eq!(channels_for(10.0, 0.0), None);
        assert_eq!(channels_for(10.0, 1.5), None);
        assert_eq!(channels_for(f64::NAN, 0.01), None);
        assert_eq!(channels_for(1e9, 0.01), None);
    }

    #[test]
    fn erlang_c_waiting_probability() {
        // 10 agents, 8 E: a classic call-centre example, P(wait) ≈ 0.409.
        let c = waiting(8.0, 10);
        assert!((c - 0.409).abs() < 0.002, "{c}");
        assert_eq!(waiting(10.0, 10), 1.0);
        assert!(waiting(1.0, 10) < 0.001);
    }
}
