//! A test call's own RTP endpoint: one UDP socket (bound before the INVITE, so its port is
//! in the offer), one thread while the call is up. It sends the keyed tone of
//! [`super::audio`] every 20 ms to the address of the answer (Trunkgate's relay when the
//! trunk's media is anchored, so the real relay path is what is measured), receives what
//! comes back, and at the end reports the figures: loss and jitter (RFC 3550, the relay's
//! own code), one-way audio, and whether the far end sent back our pattern, and how late.
//!
//! Bounded: a call holds at most `duration` + 1 s of per-frame data (a few bytes a frame).

use super::audio::{self, FRAME, G711, Generator};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use trunkgate_media::stats::{ReceiveStats, rtp_header};

/// After the last frame sent, what is still received for this long counts (an echo's tail).
const TAIL: Duration = Duration::from_millis(400);
/// Received packets kept for the analysis, at most (10 minutes of 20 ms frames).
const MAX_FRAMES: usize = 30_000;

/// The figures of one test call's audio.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaReport {
    pub codec: &'static str,
    pub sent: u64,
    pub received: u64,
    /// Expected − received of the far end's stream (RFC 3550 §6.4.1).
    pub lost: u64,
    pub loss_ratio: f64,
    pub jitter_ms: f64,
    /// Nothing received while we sent: one-way audio.
    pub one_way_audio: bool,
    /// From the first frame sent to the first packet received.
    pub first_packet_ms: Option<f64>,
    /// The far end's stream carried our pattern (an echo).
    pub echo: Option<Echo>,
    /// E-model estimate (G.107) for the audio received; delay from the echo's round trip.
    pub mos: Option<f64>,
    pub r_factor: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    pub recognised: bool,
    /// Every frame came back byte for byte (a plain loop); false: re-encoded.
    pub exact: bool,
    pub agreement: f64,
    /// Median of (arrival − send time) over the frames matched.
    pub round_trip_ms: Option<f64>,
}

/// A bound socket waiting for the answer's address.
pub struct Endpoint {
    socket: UdpSocket,
    pub local: SocketAddr,
}

impl Endpoint {
    pub fn bind(ip: IpAddr) -> std::io::Result<Endpoint> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        Ok(Endpoint { socket, local })
    }

    /// Start sending to `remote` for `duration`; the report arrives on the returned handle.
    pub fn start(self, remote: SocketAddr, codec: G711, duration: Duration, seed: u16) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(1);
        let flag = stop.clone();
        let socket = self.socket;
        let spawned = std::thread::Builder::new()
            .name("tg-testcall".into())
            .spawn(move || {
                let report = run(&socket, remote, codec, duration, seed, &flag);
                let _ = tx.send(report);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "test call: media thread not started");
        }
        Running { stop, report: rx }
    }
}

/// The media of a call in progress.
pub struct Running {
    stop: Arc<AtomicBool>,
    report: mpsc::Receiver<MediaReport>,
}

impl Running {
    /// Stop sending now (the call ended); the report follows within the tail.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The report, once the thread is done.
    pub fn try_report(&self) -> Option<MediaReport> {
        self.report.try_recv().ok()
    }
}

struct Received {
    seq: u16,
    arrival: Instant,
    tone: Option<bool>,
    hash: u64,
}

fn hash(payload: &[u8]) -> u64 {
    // FNV-1a: identity of a frame's bytes, not security.
    payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn run(
    socket: &UdpSocket,
    remote: SocketAddr,
    codec: G711,
    duration: Duration,
    seed: u16,
    stop: &AtomicBool,
) -> MediaReport {
    let start = Instant::now();
    let frames = (duration.as_millis() / 20) as usize;
    let mut generator = Generator::new(codec, seed);
    let ssrc = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let (seq0, ts0) = (seed.wrapping_mul(31), u32::from(seed).wrapping_mul(977));
    let mut sent_bits = Vec::with_capacity(frames);
    let mut sent_at = Vec::with_capacity(frames);
    let mut sent_hash = Vec::with_capacity(frames);
    let mut received: Vec<Received> = Vec::new();
    let mut stats = ReceiveStats::new();
    let mut packet = [0u8; 12 + FRAME];
    let mut buf = [0u8; 2048];
    let mut sent = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stopped_at.is_none() && (sent_bits.len() >= frames || stop.load(Ordering::Relaxed)) {
            stopped_at = Some(now);
        }
        if stopped_at.is_some_and(|at| now.duration_since(at) >= TAIL) {
            break;
        }
        let next_send = start + Duration::from_millis(20 * sent_bits.len() as u64);
        if stopped_at.is_none() && now >= next_send {
            let i = sent_bits.len();
            let seq = seq0.wrapping_add(i as u16);
            let ts = ts0.wrapping_add((i * FRAME) as u32);
            packet[0] = 0x80;
            packet[1] = codec.payload_type() | if i == 0 { 0x80 } else { 0 };
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            packet[4..8].copy_from_slice(&ts.to_be_bytes());
            packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let mut frame = [0u8; FRAME];
            let tone = generator.next_frame(&mut frame);
            packet[12..].copy_from_slice(&frame);
            sent_bits.push(tone);
            sent_at.push(now);
            sent_hash.push(hash(&frame));
            if socket.send_to(&packet, remote).is_ok() {
                sent += 1;
            }
            continue;
        }
        let wait = match stopped_at {
            Some(at) => (at + TAIL).saturating_duration_since(now),
            None => next_send.saturating_duration_since(now),
        }
        .max(Duration::from_millis(1));
        if socket.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        let Ok((n, _from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let arrival = Instant::now();
        let Some(packet) = buf.get(..n) else { continue };
        let Some(hdr) = rtp_header(packet) else {
            continue;
        };
        if trunkgate_media::stats::is_rtcp(packet) {
            continue;
        }
        let nanos = u64::try_from(arrival.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        stats.on_packet(&hdr, nanos, 8000);
        if received.len() < MAX_FRAMES {
            let payload = packet.get(12..).unwrap_or_default();
            received.push(Received {
                seq: hdr.seq,
                arrival,
                tone: audio::frame_has_tone(hdr.payload_type, payload),
                hash: hash(payload),
            });
        }
    }
    analyse(
        codec, sent, &sent_bits, &sent_at, &sent_hash, received, &stats, start,
    )
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    codec: G711,
    sent: u64,
    sent_bits: &[bool],
    sent_at: &[Instant],
    sent_hash: &[u64],
    mut received: Vec<Received>,
    stats: &ReceiveStats,
    start: Instant,
) -> MediaReport {
    let first_packet_ms = received
        .iter()
        .map(|r| r.arrival)
        .min()
        .map(|t| t.duration_since(start).as_secs_f64() * 1000.0);
    // The far end's order: by sequence number, unwrapped from the first packet's.
    if let Some(first) = received.first().map(|r| r.seq) {
        received.sort_by_key(|r| i32::from(r.seq.wrapping_sub(first) as i16));
        received.dedup_by_key(|r| r.seq);
    }
    let bits: Vec<bool> = received.iter().map(|r| r.tone.unwrap_or(false)).collect();
    let g711 = received.iter().any(|r| r.tone.is_some());
    let echo = (!received.is_empty() && g711)
        .then(|| audio::find_echo(sent_bits, &bits))
        .map(|found| match found {
            None => Echo {
                recognised: false,
                exact: false,
                agreement: 0.0,
                round_trip_ms: None,
            },
            Some(m) => {
                let mut rtts: Vec<f64> = Vec::new();
                let mut exact = 0usize;
                for (k, r) in received.iter().enumerate() {
                    let i = m.offset + k;
                    let (Some(&s_bit), Some(&s_at)) = (sent_bits.get(i), sent_at.get(i)) else {
                        break;
                    };
                    if sent_hash.get(i) == Some(&r.hash) {
                        exact += 1;
                    }
                    if r.tone == Some(s_bit) {
                        rtts.push(r.arrival.saturating_duration_since(s_at).as_secs_f64() * 1000.0);
                    }
                }
                rtts.sort_by(f64::total_cmp);
                Echo {
                    recognised: true,
                    exact: m.compared > 0 && exact * 10 >= m.compared * 9,
                    agreement: m.agreement,
                    round_trip_ms: rtts.get(rtts.len() / 2).copied(),
                }
            }
        });
    let expected = stats.expected();
    let lost = stats.lost();
    let loss_ratio = if expected > 0 {
        lost as f64 / expected as f64
    } else {
        0.0
    };
    let jitter = stats.jitter_seconds();
    let estimate = (stats.received() > 0).then(|| {
        use trunkgate_media::quality;
        let delay = echo
            .as_ref()
            .and_then(|e| e.round_trip_ms)
            .map_or(0.0, |rtt| rtt / 2000.0);
        quality::estimate(&quality::Impairments {
            codec: quality::Codec::G711,
            loss_ratio,
            burst_ratio: quality::burst_ratio(lost, stats.loss_events(), loss_ratio),
            jitter,
            delay,
        })
    });
    MediaReport {
        codec: codec.name(),
        sent,
        received: stats.received(),
        lost,
        loss_ratio,
        jitter_ms: jitter * 1000.0,
        one_way_audio: sent > 0 && stats.received() == 0,
        first_packet_ms,
        echo,
        mos: estimate.map(|e| (e.mos * 100.0).round() / 100.0),
        r_factor: estimate.map(|e| (e.r * 10.0).round() / 10.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain loop on loopback: every frame comes back, exactly, within milliseconds.
    #[test]
    fn an_echo_is_recognised_with_its_round_trip_and_silence_is_one_way_audio() {
        let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        let stop_echo = Arc::new(AtomicBool::new(false));
        let flag = stop_echo.clone();
        let looper = std::thread::spawn(move || {
            let _ = echo.set_read_timeout(Some(Duration::from_millis(50)));
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        });
        let ep = Endpoint::bind("127.0.0.1".parse().expect("ip")).expect("bind");
        let running = ep.start(echo_addr, G711::Ulaw, Duration::from_secs(2), 4242);
        let report = loop {
            if let Some(r) = running.try_report() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stop_echo.store(true, Ordering::Relaxed);
        let _ = looper.join();
        assert_eq!(report.sent, 100, "{report:?}");
        assert_eq!(report.received, 100, "{report:?}");
        assert_eq!(report.lost, 0);
        assert!(!report.one_way_audio);
        let echo = report.echo.expect("echo analysed");
        assert!(echo.recognised && echo.exact, "{echo:?}");
        let rtt = echo.round_trip_ms.expect("rtt");
        assert!(rtt < 50.0, "{rtt}");
        assert!(report.mos.expect("mos") > 4.0);

        // Nobody answers the audio.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ep = Endpoint::bind("127.0.0.1".parse().expect("ip")).expect("bind");
        let running = ep.start(
            silent.local_addr().expect("addr"),
            G711::Alaw,
            Duration::from_secs(1),
            7,
        );
        let report = loop {
            if let Some(r) = running.try_report() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(report.one_way_audio && report.received == 0, "{report:?}");
        assert!(report.echo.is_none() && report.mos.is_none());
    }
}
