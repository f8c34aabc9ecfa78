//! Malformed SIP for robustness tests: random bytes, truncated and mutated copies of a valid
//! INVITE (byte flips, deleted CRLFs, huge Content-Length, a header with no colon, NULs, bad
//! start lines) and oversized datagrams. Seeded, so a failing run can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The largest UDP payload IPv4 can carry (65,535 − 20 − 8). A 70 KB datagram cannot be sent
/// over IPv4 at all (EMSGSIZE); over TCP the oversized case is a 70 KB frame instead.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A valid INVITE from `source` to Trunkgate at `target`, with a unique Call-ID.
pub fn valid_invite(source: SocketAddr, target: SocketAddr, transport: &str, i: u64) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=user1 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = source.ip()
    );
    format!(
        "INVITE sip:1000@{target} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {source};branch=z9hG4bK-garbage-{i}\r\n\
         From: sipp <sip:sipp@{source}>;tag=g{i}\r\n\
         To: sut <sip:1000@{target}>\r\n\
         Call-ID: garbage-{i}@{source_ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@{source}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Garbage test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        source_ip = source.ip(),
        len = sdp.len()
    )
    .into_bytes()
}

fn header_end(msg: &[u8]) -> usize {
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len())
}

fn replace(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8_lossy(msg)
        .replacen(from, to, 1)
        .into_bytes()
}

/// One piece of garbage, of kind `i % 12`.
pub fn datagram(rng: &mut StdRng, source: SocketAddr, target: SocketAddr, i: u64) -> Vec<u8> {
    let invite = valid_invite(source, target, "UDP", i);
    match i % 12 {
        // Random bytes.
        0 => {
            let mut b = vec![0u8; rng.random_range(1..1500)];
            rng.fill(&mut b[..]);
            b
        }
        // Truncated copy (never the whole message).
        1 => invite[..rng.random_range(1..invite.len())].to_vec(),
        // Random byte flips in the header section.
        2 => {
            let mut b = invite.clone();
            let end = header_end(&b);
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..end);
                b[at] ^= rng.random_range(1..=255u8);
            }
            b
        }
        // Deleted CRLFs: one, or all of them.
        3 => {
            if rng.random_bool(0.5) {
                let text = String::from_utf8_lossy(&invite).into_owned();
                let crlfs: Vec<usize> = text.match_indices("\r\n").map(|(at, _)| at).collect();
                let at = crlfs[rng.random_range(0..crlfs.len())];
                let mut b = invite.clone();
                b.drain(at..at + 2);
                b
            } else {
                invite
                    .iter()
                    .copied()
                    .filter(|&c| c != b'\r' && c != b'\n')
                    .collect()
            }
        }
        // Huge or nonsensical Content-Length.
        4 => {
            let values = [
                "4294967296000",
                "99999999",
                "-1",
                "abc",
                "18446744073709551616",
                "",
            ];
            let v = values[rng.random_range(0..values.len())];
            let text = String::from_utf8_lossy(&invite).into_owned();
            let start = text.find("Content-Length:").unwrap_or(0);
            let end = start + text[start..].find("\r\n").unwrap_or(0);
            format!("{}Content-Length: {v}{}", &text[..start], &text[end..]).into_bytes()
        }
        // A header with no colon.
        5 => replace(&invite, "Max-Forwards: 70", "Max-Forwards 70"),
        // NULs sprinkled in.
        6 => {
            let mut b = invite.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..b.len());
                b.insert(at, 0);
            }
            b
        }
        // Bad start lines.
        7 => {
            let lines = [
                "INVITE sip:1000@x SIP/3.0",
                "INVITE  SIP/2.0",
                "INVITE sip:1000@x",
                "SIP/2.0 999999 Huh",
                "SIP/2.0 abc OK",
                "\u{0}\u{0}\u{0}",
                "INV\u{7f}TE sip:1000@x SIP/2.0",
            ];
            let text = String::from_utf8_lossy(&invite).into_owned();
            let rest = text.split_once("\r\n").map(|(_, r)| r).unwrap_or("");
            format!("{}\r\n{rest}", lines[rng.random_range(0..lines.len())]).into_bytes()
        }
        // Missing mandatory headers.
        8 => {
            let drop = ["Via:", "Call-ID:", "CSeq:", "From:", "To:"][rng.random_range(0..5)];
            let text = String::from_utf8_lossy(&invite).into_owned();
            text.split("\r\n")
                .filter(|l| !l.starts_with(drop))
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes()
        }
        // Oversized: the largest datagram IPv4 can carry, an INVITE with a huge header.
        9 if i % 240 == 9 => {
            let mut b = b"INVITE sip:1000@x SIP/2.0\r\nX-Big: ".to_vec();
            b.resize(MAX_UDP_PAYLOAD - 4, b'a');
            b.extend_from_slice(b"\r\n\r\n");
            b
        }
        // Headers repeated or folded strangely.
        9 => replace(
            &invite,
            "CSeq: 1 INVITE",
            "CSeq: 1 INVITE\r\nCSeq: 2 BYE\r\n CSeq: folded",
        ),
        // Random bytes appended after a valid-looking header section.
        10 => {
            let mut b = invite[..header_end(&invite)].to_vec();
            let mut tail = vec![0u8; rng.random_range(1..400)];
            rng.fill(&mut tail[..]);
            b.extend_from_slice(&tail);
            b
        }
        // Empty datagram or lone CRLFs.
        _ => [&b""[..], b"\r\n", b"\r\n\r\n\r\n\r\n", b"\x00"][rng.random_range(0..4)].to_vec(),
    }
}

/// Counts of what a garbage run sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub datagrams: u64,
    pub send_errors: u64,
}

/// Send `count` garbage datagrams to `target` over `duration`, alternating between the given
/// sockets (e.g. one bound on an allowed address, one on an unknown one).
pub fn flood(
    seed: u64,
    sockets: &[UdpSocket],
    target: SocketAddr,
    count: u64,
    duration: Duration,
) -> Sent {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = Sent::default();
    let start = Instant::now();
    let batch = 20u64;
    let batches = count.div_ceil(batch).max(1);
    let pause = duration / u32::try_from(batches).unwrap_or(u32::MAX);
    for i in 0..count {
        let socket = &sockets[(i as usize) % sockets.len()];
        let source = socket.local_addr().expect("local_addr");
        let bytes = datagram(&mut rng, source, target, i);
        match socket.send_to(&bytes, target) {
            Ok(_) => sent.datagrams += 1,
            Err(_) => sent.send_errors += 1,
        }
        if i % batch == batch - 1 {
            let due = start + pause * u32::try_from(i / batch + 1).unwrap_or(u32::MAX);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    sent
}
