//! The fuzz targets' checks (`fuzz/checks/*.rs`, the same code `cargo fuzz` runs) on every
//! input kept in `fuzz/regressions/TARGET/`: crashes that `scripts/fuzz-smoke.sh` found
//! stay fixed, in the normal suite, without libFuzzer or a nightly toolchain. A few
//! hand-written inputs per target are always run too, so the harness itself is exercised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/checks/frame_stream.rs"]
mod frame_stream;
#[path = "../fuzz/checks/parse_message.rs"]
mod parse_message;
#[path = "../fuzz/checks/rtp.rs"]
mod rtp;
#[path = "../fuzz/checks/sdp.rs"]
mod sdp;

use std::path::PathBuf;

const INVITE: &[u8] = b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: c1@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 96\r\n";

/// Every file of `fuzz/regressions/{target}/` (the directory may be empty).
fn kept(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| e.file_name() != ".gitkeep")
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8]), seeds: &[&[u8]]) {
    for seed in seeds {
        check(seed);
        for cut in [
            0,
            seed.len() / 3,
            seed.len() / 2,
            seed.len().saturating_sub(1),
        ] {
            check(&seed[..cut]);
        }
    }
    for (name, data) in kept(target) {
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(
            result.is_ok(),
            "fuzz/regressions/{target}/{name} fails the {target} check again"
        );
    }
}

#[test]
fn parse_message_regressions() {
    replay(
        "parse_message",
        parse_message::check,
        &[INVITE, b"SIP/2.0 200 OK\r\n\r\n"],
    );
}

#[test]
fn frame_stream_regressions() {
    let mut two = INVITE.to_vec();
    two.extend_from_slice(b"\r\n\r\n");
    two.extend_from_slice(INVITE);
    replay("frame_stream", frame_stream::check, &[&two, b"\r\n\r\n"]);
}

#[test]
fn sdp_regressions() {
    replay("sdp", sdp::check, &[SDP]);
}

#[test]
fn rtp_regressions() {
    let rtp = [
        0x80u8, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3, 4, 5, 6, 7,
    ];
    replay("rtp", rtp::check, &[&rtp]);
}
