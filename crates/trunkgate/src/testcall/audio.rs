//! The audio of a test call: a 1004 Hz test tone keyed on and off, one 20 ms frame at a
//! time, by a pseudo-random sequence (a 15-bit LFSR: the pattern repeats after 655 s), in
//! G.711 (μ-law or A-law). The pattern survives what an echo service may do to audio —
//! renumbering, re-timing, transcoding between μ-law and A-law — because it is read back
//! from each frame's energy, not its bytes. Finding the sequence's offset in what came back
//! proves it is our own audio, and the arrival times against the send times give the
//! round trip.

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// Tone frequency: 1004 Hz, the digital milliwatt's, which is not a sub-multiple of 8 kHz
/// (every sample value of the cycle occurs).
const TONE_HZ: f64 = 1004.0;
/// Tone amplitude: −10 dBm0 (a third of full scale), well above any comfort noise.
const TONE_AMPLITUDE: f64 = 0.3 * 32767.0;
/// A frame is "tone" when its mean absolute sample is above this (the tone's is ~6,300;
/// G.711 silence and comfort noise are below 100).
const TONE_THRESHOLD: f64 = 1500.0;

/// The codec of the frames: RTP payload type 0 or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Ulaw,
    Alaw,
}

impl G711 {
    pub fn payload_type(self) -> u8 {
        match self {
            G711::Ulaw => 0,
            G711::Alaw => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            G711::Ulaw => "PCMU",
            G711::Alaw => "PCMA",
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<G711> {
        match pt {
            0 => Some(G711::Ulaw),
            8 => Some(G711::Alaw),
            _ => None,
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711::Ulaw => ulaw_encode(sample),
            G711::Alaw => alaw_encode(sample),
        }
    }

    pub fn decode(self, byte: u8) -> i16 {
        match self {
            G711::Ulaw => ulaw_decode(byte),
            G711::Alaw => alaw_decode(byte),
        }
    }
}

/// ITU-T G.711 μ-law (the classic bias-and-segment encoder).
fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // The segment: the highest set bit above bit 7 (s ≥ BIAS = 0x84 has bit 7 set).
    let exponent = (24 - s.leading_zeros() as i32).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// ITU-T G.711 A-law.
fn alaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    let s = s.min(32767);
    let byte = if s < 256 {
        s >> 4
    } else {
        let exponent = 31 - (s as u32).leading_zeros() as i32 - 7;
        (exponent << 4) | ((s >> (exponent + 3)) & 0x0f)
    };
    ((byte | sign) ^ 0x55) as u8
}

fn alaw_decode(byte: u8) -> i16 {
    let b = i32::from(byte ^ 0x55);
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// The on/off sequence: x^15 + x^14 + 1 (maximal length, period 32,767 frames).
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u16,
}

impl Pattern {
    /// A sequence starting at `seed` (any value; zero is mapped to one).
    pub fn new(seed: u16) -> Pattern {
        Pattern {
            state: (seed & 0x7fff).max(1),
        }
    }

    /// The next frame: tone (true) or silence.
    pub fn next_bit(&mut self) -> bool {
        let bit = ((self.state >> 14) ^ (self.state >> 13)) & 1;
        self.state = ((self.state << 1) | bit) & 0x7fff;
        bit == 1
    }
}

/// Writes the frames of one stream: the tone's phase runs on across tone frames.
#[derive(Debug, Clone)]
pub struct Generator {
    codec: G711,
    pattern: Pattern,
    sample: u64,
}

impl Generator {
    pub fn new(codec: G711, seed: u16) -> Generator {
        Generator {
            codec,
            pattern: Pattern::new(seed),
            sample: 0,
        }
    }

    /// The next 20 ms payload and whether it carries the tone.
    pub fn next_frame(&mut self, out: &mut [u8; FRAME]) -> bool {
        let tone = self.pattern.next_bit();
        for byte in out.iter_mut() {
            let value = if tone {
                let t = self.sample as f64 / 8000.0;
                (TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
            } else {
                0
            };
            *byte = self.codec.encode(value);
            self.sample += 1;
        }
        tone
    }
}

/// Is this received payload a tone frame? `None` for a payload type that is not G.711.
pub fn frame_has_tone(payload_type: u8, payload: &[u8]) -> Option<bool> {
    let codec = G711::from_payload_type(payload_type)?;
    if payload.is_empty() {
        return Some(false);
    }
    let sum: f64 = payload
        .iter()
        .map(|b| f64::from(codec.decode(*b)).abs())
        .sum();
    Some(sum / payload.len() as f64 > TONE_THRESHOLD)
}

/// Where our sequence was found in what came back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoMatch {
    /// Sent frame index of the first frame received.
    pub offset: usize,
    /// Share of the compared frames whose tone/silence agreed (1.0: all).
    pub agreement: f64,
    /// Frames compared.
    pub compared: usize,
}

/// Fewest frames compared before a match is believed (1 s of audio).
const MIN_COMPARED: usize = 50;
/// Share of frames that must agree (a few frames may be lost or cut by the echo's jitter
/// buffer).
pub const MIN_AGREEMENT: f64 = 0.9;

/// Find `received` (tone/silence per frame, in the far end's sequence order) in `sent`:
/// the offset with the best agreement, if it is good enough.
pub fn find_echo(sent: &[bool], received: &[bool]) -> Option<EchoMatch> {
    let mut best: Option<EchoMatch> = None;
    for offset in 0..sent.len() {
        let compared = received.len().min(sent.len() - offset);
        if compared < MIN_COMPARED {
            break;
        }
        let agree = received
            .iter()
            .zip(&sent[offset..])
            .filter(|(r, s)| r == s)
            .count();
        let agreement = agree as f64 / compared as f64;
        if best.is_none_or(|b| agreement > b.agreement) {
            best = Some(EchoMatch {
                offset,
                agreement,
                compared,
            });
        }
    }
    best.filter(|b| b.agreement >= MIN_AGREEMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_round_trips_within_its_quantisation() {
        for codec in [G711::Ulaw, G711::Alaw] {
            for s in (-32768i32..32768).step_by(97) {
                let s = s as i16;
                let back = codec.decode(codec.encode(s));
                let err = (i32::from(back) - i32::from(s)).abs();
                // Segment step at most 1024 for the top segment; relative error < 1/16.
                assert!(
                    err <= 1024.max(i32::from(s).abs() / 16),
                    "{codec:?} {s} → {back}"
                );
            }
        }
        // Known code points (G.711 tables): μ-law 0 → 0xFF, A-law 0 → 0xD5.
        assert_eq!(G711::Ulaw.encode(0), 0xff);
        assert_eq!(G711::Alaw.encode(0), 0xd5);
    }

    #[test]
    fn tone_frames_are_told_from_silence_in_both_laws_and_across_them() {
        let mut generator = Generator::new(G711::Ulaw, 7);
        let mut frame = [0u8; FRAME];
        for _ in 0..200 {
            let tone = generator.next_frame(&mut frame);
            assert_eq!(frame_has_tone(0, &frame), Some(tone));
            // An echo that transcodes μ-law to A-law keeps the pattern.
            let alaw: Vec<u8> = frame
                .iter()
                .map(|b| G711::Alaw.encode(G711::Ulaw.decode(*b)))
                .collect();
            assert_eq!(frame_has_tone(8, &alaw), Some(tone));
        }
        assert_eq!(frame_has_tone(18, &frame), None);
    }

    #[test]
    fn pattern_is_maximal_length() {
        let mut p = Pattern::new(1);
        let start = p.state;
        let mut period = 0;
        loop {
            p.next_bit();
            period += 1;
            if p.state == start {
                break;
            }
        }
        assert_eq!(period, 32767);
    }

    #[test]
    fn echo_is_found_at_its_offset_despite_losses_and_not_in_other_audio() {
        let mut p = Pattern::new(99);
        let sent: Vec<bool> = (0..400).map(|_| p.next_bit()).collect();
        // The echo starts 7 frames in and loses every 25th frame's content (flipped).
        let mut received: Vec<bool> = sent[7..300].to_vec();
        for (i, r) in received.iter_mut().enumerate() {
            if i % 25 == 0 {
                *r = !*r;
            }
        }
        let m = find_echo(&sent, &received).expect("found");
        assert_eq!(m.offset, 7);
        assert!(m.agreement > 0.95 && m.agreement < 1.0, "{m:?}");
        // Another stream's pattern (another seed) is not ours.
        let mut q = Pattern::new(12345);
        let other: Vec<bool> = (0..300).map(|_| q.next_bit()).collect();
        assert_eq!(find_echo(&sent, &other), None);
        // Constant tone or silence (an IVR, music) is not ours either.
        assert_eq!(find_echo(&sent, &[true; 200]), None);
        assert_eq!(find_echo(&sent, &[false; 200]), None);
        // Too little to tell.
        assert_eq!(find_echo(&sent, &sent[..20]), None);
    }
}
