//! Estimated call quality: the ITU-T G.107 E-model in the simplified form monitoring tools
//! use, from what the relay measures itself (loss, burstiness, jitter) plus a one-way delay
//! (from RTCP round trips where the peers send RTCP, else `media.assumed_delay`).
//!
//! ```text
//! R    = 93.2 − Id − Ie,eff                          (Ro − Is = 93.2: G.107 default values, A = 0)
//! Ta   = one-way network delay + JITTER_BUFFER_DELAY   (ms)
//! Id   = 0.024·Ta + 0.11·(Ta − 177.3)·H(Ta − 177.3)    (Cole & Rosenbluth 2001, fit of G.107's Id)
//! Ppl  = Ppl,net + Ppl,jb·(1 − Ppl,net/100)            (%, network loss + late-packet discards)
//! Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)   (G.107 eq. 7-29)
//! BurstR = (lost / loss events) · (1 − p), at least 1  (mean burst length over that of random loss)
//! Ppl,jb = P(delay deviation > JITTER_DISCARD): deviation ~ N(0, σ), σ = J·√π/2 (J: RFC 3550 jitter)
//! MOS  = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)     (G.107 Annex B, R clamped to 0..100)
//! ```
//! Codec impairment (`Ie`, `Bpl`) from the RTP payload type ([`Codec::from_payload_type`]).
//! Pure functions, no I/O: the relay threads call them at interval ticks and call end, never
//! per packet.

/// `Ro − Is` with every G.107 default value (and advantage factor A = 0).
pub const R_DEFAULT: f64 = 93.2;
/// Playout delay assumed for the receiver's jitter buffer (half a 60 ms buffer), in seconds.
pub const JITTER_BUFFER_DELAY: f64 = 0.030;
/// A packet later than this behind its nominal playout time is discarded by that buffer.
pub const JITTER_DISCARD: f64 = 0.030;

/// Equipment impairment of a codec: `Ie` and its packet-loss robustness `Bpl` (G.113
/// Appendix I values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Codec {
    pub name: &'static str,
    pub ie: f64,
    pub bpl: f64,
}

impl Codec {
    /// G.711 with packet-loss concealment (G.711 Appendix I): Ie 0, Bpl 25.1.
    pub const G711: Codec = Codec {
        name: "G.711",
        ie: 0.0,
        bpl: 25.1,
    };
    /// G.729(A): Ie 11, Bpl 19.0.
    pub const G729: Codec = Codec {
        name: "G.729",
        ie: 11.0,
        bpl: 19.0,
    };
    /// G.723.1 at 6.3 kbit/s: Ie 15, Bpl 16.1.
    pub const G723: Codec = Codec {
        name: "G.723.1",
        ie: 15.0,
        bpl: 16.1,
    };

    /// The codec of a static RTP payload type (RFC 3551). Everything else — dynamic types,
    /// G.722 (wideband, outside the narrowband E-model) — is scored as G.711.
    pub fn from_payload_type(pt: u8) -> Codec {
        match pt {
            18 => Codec::G729,
            4 => Codec::G723,
            _ => Codec::G711,
        }
    }
}

/// What the E-model is computed from, for one direction of one stream over some period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairments {
    pub codec: Codec,
    /// Network loss: lost / expected RTP packets, 0.0–1.0.
    pub loss_ratio: f64,
    /// [`burst_ratio`] of that loss (1 = random loss).
    pub burst_ratio: f64,
    /// RFC 3550 interarrival jitter, seconds.
    pub jitter: f64,
    /// One-way network delay (mouth to ear minus the jitter buffer), seconds.
    pub delay: f64,
}

/// The estimate: R-factor and MOS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub r: f64,
    pub mos: f64,
}

/// G.107's `BurstR`: the mean observed burst length (`lost / loss_events`) divided by the
/// mean burst length of random loss at the same ratio (`1 / (1 − p)`); 1 without loss.
pub fn burst_ratio(lost: u64, loss_events: u64, loss_ratio: f64) -> f64 {
    if lost == 0 || loss_events == 0 || loss_ratio >= 1.0 {
        return 1.0;
    }
    let mean_burst = lost as f64 / loss_events as f64;
    (mean_burst * (1.0 - loss_ratio)).max(1.0)
}

/// Delay impairment `Id` for a mouth-to-ear delay `ta_ms` (Cole & Rosenbluth's fit).
pub fn delay_impairment(ta_ms: f64) -> f64 {
    let ta = ta_ms.max(0.0);
    0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 }
}

/// `Ie,eff` for packet loss `ppl` (percent) with burst ratio `burst`.
pub fn effective_equipment_impairment(codec: Codec, ppl: f64, burst: f64) -> f64 {
    let ppl = ppl.clamp(0.0, 100.0);
    if ppl == 0.0 {
        return codec.ie;
    }
    let burst = burst.max(1.0);
    codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst + codec.bpl)
}

/// Share of packets a jitter buffer discards as late, estimated from the RFC 3550 jitter
/// `j` (seconds): the jitter estimates the mean |difference| of consecutive transit times,
/// which for normally distributed transit with deviation σ is 2σ/√π.
pub fn jitter_buffer_loss(j: f64) -> f64 {
    if j <= 0.0 {
        return 0.0;
    }
    let sigma = j * std::f64::consts::PI.sqrt() / 2.0;
    0.5 * erfc(JITTER_DISCARD / (sigma * std::f64::consts::SQRT_2))
}

/// G.107 Annex B: MOS (conversational quality, estimated) from R.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    }
}

/// R and MOS for `imp`.
pub fn estimate(imp: &Impairments) -> Estimate {
    let net = imp.loss_ratio.clamp(0.0, 1.0);
    let late = jitter_buffer_loss(imp.jitter);
    let ppl = 100.0 * (net + late * (1.0 - net));
    let ta_ms = (imp.delay.max(0.0) + JITTER_BUFFER_DELAY) * 1000.0;
    let r = R_DEFAULT
        - delay_impairment(ta_ms)
        - effective_equipment_impairment(imp.codec, ppl, imp.burst_ratio);
    let r = r.clamp(0.0, 100.0);
    Estimate {
        r,
        mos: mos_from_r(r),
    }
}

/// Complementary error function (Abramowitz & Stegun 7.1.26, |error| < 1.5·10⁻⁷).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

#[cfg(test)]
mod tests;
