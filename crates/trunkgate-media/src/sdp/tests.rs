//! Tests of `sdp.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const SIPP: &[u8] = b"v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const ASTERISK: &[u8] = b"v=0\r\n\
o=- 1716379213 1716379213 IN IP4 192.168.10.5\r\n\
s=Asterisk\r\n\
c=IN IP4 192.168.10.5\r\n\
t=0 0\r\n\
m=audio 13054 RTP/SAVP 8 0 9 101\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

const FREESWITCH_AV: &[u8] = b"v=0\r\n\
o=FreeSWITCH 1716370000 1716370001 IN IP4 10.0.0.20\r\n\
s=FreeSWITCH\r\n\
c=IN IP4 10.0.0.20\r\n\
t=0 0\r\n\
a=msid-semantic: WMS abc\r\n\
m=audio 24560 RTP/AVP 111 9 0 8 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1; minptime=10\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:24561 IN IP4 10.0.0.20\r\n\
a=ptime:20\r\n\
m=video 24562 RTP/AVP 96 34\r\n\
b=AS:1024\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp:24563\r\n\
a=rtcp-mux\r\n\
a=recvonly\r\n\
m=image 0 udptl t38\r\n";

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn rewritten(body: &[u8], addr: IpAddr, ports: &[Option<u16>]) -> Vec<u8> {
    let sdp = parse(body).unwrap();
    let mut out = Vec::new();
    rewrite(body, &sdp, addr, ports, &mut out);
    out
}

fn lines_of(b: &[u8]) -> Vec<&[u8]> {
    b.split_inclusive(|&c| c == b'\n').collect()
}

#[test]
fn sipp_default() {
    let sdp = parse(SIPP).unwrap();
    assert_eq!(sdp.media.len(), 1);
    let m = &sdp.media[0];
    assert_eq!((m.kind, m.port, m.rtp), (MediaKind::Audio, 6000, true));
    assert_eq!(m.conn, Some(v4(127, 0, 0, 1)));
    assert_eq!((m.rtcp_port, m.rtcp_mux), (None, false));
    assert_eq!(
        (m.direction, m.clock_rate, m.on_hold()),
        (Direction::SendRecv, 8000, false)
    );
}

#[test]
fn asterisk_offer_and_rewrite_keeps_other_lines() {
    let sdp = parse(ASTERISK).unwrap();
    let m = &sdp.media[0];
    assert_eq!((m.port, m.rtp, m.clock_rate), (13054, true, 8000));
    let out = rewritten(ASTERISK, v4(203, 0, 113, 7), &[Some(30000)]);
    let (before, after) = (lines_of(ASTERISK), lines_of(&out));
    assert_eq!(before.len(), after.len());
    let changed: Vec<(&[u8], &[u8])> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    assert_eq!(
        changed,
        [
            (
                &b"o=- 1716379213 1716379213 IN IP4 192.168.10.5\r\n"[..],
                &b"o=- 1716379213 1716379213 IN IP4 203.0.113.7\r\n"[..]
            ),
            (
                &b"c=IN IP4 192.168.10.5\r\n"[..],
                &b"c=IN IP4 203.0.113.7\r\n"[..]
            ),
            (
                &b"m=audio 13054 RTP/SAVP 8 0 9 101\r\n"[..],
                &b"m=audio 30000 RTP/SAVP 8 0 9 101\r\n"[..]
            ),
        ]
    );
    let again = parse(&out).unwrap();
    assert_eq!(again.media[0].conn, Some(v4(203, 0, 113, 7)));
    assert_eq!(again.media[0].port, 30000);
}

#[test]
fn audio_video_image_with_rtcp_attributes() {
    let sdp = parse(FREESWITCH_AV).unwrap();
    let [a, v, i] = &sdp.media[..] else {
        panic!("{:?}", sdp.media)
    };
    assert_eq!(
        (a.kind, a.clock_rate, a.rtcp_port, a.rtcp_mux),
        (MediaKind::Audio, 48000, Some(24561), false)
    );
    assert_eq!(
        (v.kind, v.clock_rate, v.rtcp_port, v.rtcp_mux),
        (MediaKind::Video, 90000, Some(24563), true)
    );
    assert_eq!((v.direction, v.on_hold()), (Direction::RecvOnly, true));
    assert_eq!((i.kind, i.port, i.rtp), (MediaKind::Image, 0, false));
    assert!(sdp.media.iter().all(|m| m.conn == Some(v4(10, 0, 0, 20))));

    let out = rewritten(
        FREESWITCH_AV,
        v4(198, 51, 100, 1),
        &[Some(40000), Some(40002), None],
    );
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains("\r\nm=audio 40000 RTP/AVP 111 9 0 8 101\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\na=rtcp:40001 IN IP4 198.51.100.1\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nm=video 40002 RTP/AVP 96 34\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\na=rtcp:40003\r\n"), "{text}");
    assert!(text.ends_with("\r\nm=image 0 udptl t38\r\n"), "{text}");
    assert!(!text.contains("10.0.0.20"), "{text}");
    let again = parse(&out).unwrap();
    assert_eq!(again.media[1].rtcp_port, Some(40003));
    assert_eq!(again.media[2].port, 0);
}

#[test]
fn static_payload_clock_rates() {
    for (pt, rate) in [
        (0, 8000),
        (9, 8000),
        (10, 44100),
        (18, 8000),
        (6, 16000),
        (31, 90000),
        (96, 8000),
    ] {
        let body = format!("v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP {pt}\n");
        assert_eq!(
            parse(body.as_bytes()).unwrap().media[0].clock_rate,
            rate,
            "pt {pt}"
        );
    }
    // An rtpmap for a later format does not count; the first format's does.
    let body = b"v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP 0 97\na=rtpmap:97 L16/16000\n";
    assert_eq!(parse(body).unwrap().media[0].clock_rate, 8000);
    let body = b"v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP 97 0\na=rtpmap:97 L16/16000/2\n";
    assert_eq!(parse(body).unwrap().media[0].clock_rate, 16000);
}

#[test]
fn hold_by_direction_and_by_address() {
    let sendonly = b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n";
    let m = &parse(sendonly).unwrap().media[0];
    assert_eq!((m.direction, m.on_hold()), (Direction::SendOnly, true));
    // Media-level direction wins over session level.
    let both = b"v=0\nc=IN IP4 10.0.0.1\na=inactive\nm=audio 5000 RTP/AVP 0\na=sendrecv\n";
    assert!(!parse(both).unwrap().media[0].on_hold());

    let zero = b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    let m = &parse(zero).unwrap().media[0];
    assert_eq!((m.direction, m.on_hold()), (Direction::SendRecv, true));
    // The hold address survives the rewrite; o= and the port do not.
    let out = rewritten(zero, v4(1, 2, 3, 4), &[Some(7000)]);
    assert_eq!(
        out,
        b"v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"
    );
    let v6hold = b"v=0\nc=IN IP6 ::\nm=audio 5000 RTP/AVP 0\n";
    assert!(parse(v6hold).unwrap().media[0].on_hold());
    assert_eq!(rewritten(v6hold, v4(1, 2, 3, 4), &[None]), v6hold);
}

#[test]
fn rtcp_attribute_with_and_without_address() {
    let body = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\na=rtcp:5001\nm=audio 6000 RTP/AVP 0\na=rtcp:53020 IN IP6 2001:db8::4\n";
    let sdp = parse(body).unwrap();
    assert_eq!(sdp.media[0].rtcp_port, Some(5001));
    assert_eq!(sdp.media[1].rtcp_port, Some(53020));
    let out = rewritten(body, v4(192, 0, 2, 9), &[Some(8000), Some(8002)]);
    assert_eq!(
        out,
        &b"v=0\nc=IN IP4 192.0.2.9\nm=audio 8000 RTP/AVP 0\na=rtcp:8001\nm=audio 8002 RTP/AVP 0\na=rtcp:8003 IN IP4 192.0.2.9\n"[..]
    );
    // A stream left alone keeps its rtcp line too.
    let out = rewritten(body, v4(192, 0, 2, 9), &[Some(8000)]);
    assert!(out.ends_with(b"m=audio 6000 RTP/AVP 0\na=rtcp:53020 IN IP6 2001:db8::4\n"));
    // An unparseable port is left alone and not reported.
    let odd = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\na=rtcp:x\n";
    assert_eq!(parse(odd).unwrap().media[0].rtcp_port, None);
    assert!(rewritten(odd, v4(1, 1, 1, 1), &[Some(2)]).ends_with(b"a=rtcp:x\n"));
}

#[test]
fn lf_only_trailing_whitespace_missing_final_newline() {
    let body =
        b"v=0\no=- 1 1 IN IP4 10.9.8.7 \nc=IN IP4 10.9.8.7\t\n\nt=0 0\nm=audio  5000  RTP/AVP 0";
    let sdp = parse(body).unwrap();
    assert_eq!(sdp.media[0].conn, Some(v4(10, 9, 8, 7)));
    assert_eq!(sdp.media[0].port, 5000);
    let out = rewritten(body, v4(1, 1, 1, 1), &[Some(9000)]);
    assert_eq!(
        out,
        &b"v=0\no=- 1 1 IN IP4 1.1.1.1 \nc=IN IP4 1.1.1.1\t\n\nt=0 0\nm=audio  9000  RTP/AVP 0"[..]
    );
    // Mixed line endings are kept line by line.
    let mixed = b"v=0\r\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\r\na=x\n";
    let out = rewritten(mixed, v4(1, 1, 1, 1), &[Some(6)]);
    assert_eq!(
        out,
        &b"v=0\r\nc=IN IP4 1.1.1.1\nm=audio 6 RTP/AVP 0\r\na=x\n"[..]
    );
}

#[test]
fn ipv6_to_ipv4_fixes_the_addrtype_and_back() {
    let body = b"v=0\r\no=- 5 5 IN IP6 2001:db8::10\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let sdp = parse(body).unwrap();
    assert_eq!(
        sdp.media[0].conn,
        Some(IpAddr::V6("2001:db8::10".parse().unwrap()))
    );
    let out = rewritten(body, v4(203, 0, 113, 1), &[Some(10000)]);
    assert_eq!(
        out,
        &b"v=0\r\no=- 5 5 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\n"[..]
    );
    let back = rewritten(&out, IpAddr::V6(Ipv6Addr::LOCALHOST), &[Some(10002)]);
    assert_eq!(
        back,
        &b"v=0\r\no=- 5 5 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 10002 RTP/AVP 0\r\n"[..]
    );
}

#[test]
fn multicast_ttl_and_media_level_connection() {
    let mc = b"v=0\nc=IN IP4 224.2.1.1/127\nm=audio 5000 RTP/AVP 0\n";
    assert_eq!(parse(mc).unwrap_err(), SdpError::Multicast);
    let ttl = b"v=0\nc=IN IP4 10.1.2.3/127\nm=audio 5000 RTP/AVP 0\n";
    assert_eq!(parse(ttl).unwrap().media[0].conn, Some(v4(10, 1, 2, 3)));
    // Media-level c= overrides session level; no c= at all leaves conn empty.
    let body = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\nc=IN IP4 10.0.0.2\nm=video 0 RTP/AVP 31\n";
    let sdp = parse(body).unwrap();
    assert_eq!(sdp.media[0].conn, Some(v4(10, 0, 0, 2)));
    assert_eq!(sdp.media[1].conn, Some(v4(10, 0, 0, 1)));
    assert_eq!(
        parse(b"v=0\nm=audio 0 RTP/AVP 0\n").unwrap().media[0].conn,
        None
    );
    // m= port with a count: the count goes with the rewrite.
    let n = b"v=0\nc=IN IP4 10.0.0.1\nm=video 5000/2 RTP/AVP 31\n";
    assert_eq!(parse(n).unwrap().media[0].port, 5000);
    assert!(rewritten(n, v4(1, 1, 1, 1), &[Some(7000)]).ends_with(b"m=video 7000 RTP/AVP 31\n"));
}

#[test]
fn errors() {
    assert_eq!(parse(b"").unwrap_err(), SdpError::NotSdp);
    assert_eq!(parse(b"hello world").unwrap_err(), SdpError::NotSdp);
    assert_eq!(
        parse(b"o=- 1 1 IN IP4 1.1.1.1\nv=0\n").unwrap_err(),
        SdpError::NotSdp
    );
    assert_eq!(parse(b"v=0\nnonsense\n").unwrap_err(), SdpError::BadLine);
    assert_eq!(
        parse(b"v=0\nc=IN IP4 example.com\n").unwrap_err(),
        SdpError::BadConnection
    );
    assert_eq!(
        parse(b"v=0\nc=IN IP4\n").unwrap_err(),
        SdpError::BadConnection
    );
    assert_eq!(
        parse(b"v=0\nc=ATM NSAP 1\n").unwrap_err(),
        SdpError::BadConnection
    );
    assert_eq!(
        parse(b"v=0\nm=audio x RTP/AVP 0\n").unwrap_err(),
        SdpError::BadMedia
    );
    assert_eq!(
        parse(b"v=0\nm=audio 70000 RTP/AVP 0\n").unwrap_err(),
        SdpError::BadMedia
    );
    assert_eq!(parse(b"v=0\nm=audio\n").unwrap_err(), SdpError::BadMedia);
    let many = format!("v=0\n{}", "m=audio 0 RTP/AVP 0\n".repeat(17));
    assert_eq!(
        parse(many.as_bytes()).unwrap_err(),
        SdpError::TooManyStreams
    );
    assert!(parse(format!("v=0\n{}", "m=audio 0 RTP/AVP 0\n".repeat(16)).as_bytes()).is_ok());
    let big = format!("v=0\n{}", "a=x\n".repeat(16 * 1024 + 1));
    assert_eq!(parse(big.as_bytes()).unwrap_err(), SdpError::TooLarge);
    assert_eq!(SdpError::TooLarge.as_str(), SdpError::TooLarge.to_string());
    // Unknown line types and a malformed o= are tolerated.
    let odd = b"v=0\no=broken\nz=whatever\nk=clear:x\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\n";
    assert_eq!(parse(odd).unwrap().media.len(), 1);
}

/// Re-parses a rewrite and checks each stream's address and port.
fn check_rewrite(body: &[u8], addr: IpAddr, ports: &[Option<u16>]) -> Result<(), TestCaseError> {
    let Ok(sdp) = parse(body) else { return Ok(()) };
    let mut out = Vec::new();
    rewrite(body, &sdp, addr, ports, &mut out);
    let again = parse(&out)
        .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&out))))?;
    prop_assert_eq!(again.media.len(), sdp.media.len());
    for (i, (old, new)) in sdp.media.iter().zip(&again.media).enumerate() {
        let want_conn = match old.conn {
            Some(a) if a.is_unspecified() => Some(a),
            Some(_) => Some(addr),
            None => None,
        };
        prop_assert_eq!(new.conn, want_conn);
        let port = ports.get(i).copied().flatten();
        prop_assert_eq!(new.port, port.unwrap_or(old.port));
        let rtcp = match port {
            Some(p) => old.rtcp_port.map(|_| p.wrapping_add(1)),
            None => old.rtcp_port,
        };
        prop_assert_eq!(new.rtcp_port, rtcp);
        prop_assert_eq!(
            (new.kind, new.rtp, new.direction, new.clock_rate),
            (old.kind, old.rtp, old.direction, old.clock_rate)
        );
    }
    Ok(())
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = prop_oneof![Just(SIPP), Just(ASTERISK), Just(FREESWITCH_AV)];
    (
        seeds,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..8),
    )
        .prop_map(|(seed, muts)| {
            let mut b = seed.to_vec();
            for (at, byte, how) in muts {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                match how {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    2 => {
                        b.remove(i);
                    }
                    _ => {
                        b[i] = b" \r\n=/:0123456789."
                            .get(usize::from(byte) % 17)
                            .copied()
                            .unwrap_or(b' ')
                    }
                }
            }
            b
        })
}

proptest! {
    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse(&body);
    }

    #[test]
    fn mutated_sdp_parses_or_errs_and_rewrites_cleanly(
        body in mutated(),
        ports in proptest::collection::vec(proptest::option::of(any::<u16>()), 0..4),
        v6 in any::<bool>(),
    ) {
        let addr = if v6 { IpAddr::V6("2001:db8::77".parse().unwrap()) } else { v4(192, 0, 2, 77) };
        check_rewrite(&body, addr, &ports)?;
    }

    #[test]
    fn rewrite_with_a_foreign_body_does_not_panic(a in mutated(), b in mutated()) {
        if let Ok(sdp) = parse(&a) {
            let mut out = Vec::new();
            rewrite(&b, &sdp, v4(1, 1, 1, 1), &[Some(2), Some(4), Some(6)], &mut out);
        }
    }
}

/// SRTP passes the relay unchanged (issue 12): anchoring an SDES-SRTP offer (`RTP/SAVP`,
/// several `a=crypto` suites, one with session parameters and an MKI) and a DTLS-SRTP one
/// (`UDP/TLS/RTP/SAVPF`, `a=fingerprint`, `a=setup`) changes the connection address and the
/// ports only: every `a=crypto`, `a=fingerprint` and `a=setup` line, and each `m=` line's
/// protocol and formats, leave byte for byte as they came. The relay forwards SRTP packets
/// as opaque payloads, so the keys the two ends agreed on stay theirs.
#[test]
fn srtp_crypto_and_fingerprint_lines_survive_anchoring_byte_for_byte() {
    let offer: &[u8] = b"v=0\r\n\
o=carrier 2890844526 2890844527 IN IP4 198.51.100.20\r\n\
s=-\r\n\
c=IN IP4 198.51.100.20\r\n\
t=0 0\r\n\
m=audio 49170 RTP/SAVP 0 8 101\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4 KDR=1 UNENCRYPTED_SRTCP\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32\r\n\
a=crypto:3 AEAD_AES_256_GCM inline:Mzk5ZjZlZWQwYWE0NzQ3MmZkNGFkN2NhNmNhMjYwMTI1OGU5MDQ2ZTA0MzI=\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:49171\r\n\
a=sendrecv\r\n\
m=audio 49172 UDP/TLS/RTP/SAVPF 111\r\n\
a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF\r\n\
a=setup:actpass\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-mux\r\n";
    let out = rewritten(offer, v4(203, 0, 113, 7), &[Some(30000), Some(30002)]);
    let (before, after) = (lines_of(offer), lines_of(&out));
    assert_eq!(before.len(), after.len());
    let kept = |l: &&[u8]| {
        [
            &b"a=crypto:"[..],
            b"a=fingerprint:",
            b"a=setup:",
            b"a=rtpmap:",
            b"a=rtcp-mux",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    };
    let crypto_before: Vec<&[u8]> = before.iter().copied().filter(kept).collect();
    let crypto_after: Vec<&[u8]> = after.iter().copied().filter(kept).collect();
    assert_eq!(crypto_before.len(), 10);
    assert_eq!(crypto_before, crypto_after, "SRTP lines changed");
    // The m= lines: port replaced, protocol and formats as they were.
    let m_lines: Vec<&[u8]> = after
        .iter()
        .copied()
        .filter(|l| l.starts_with(b"m="))
        .collect();
    assert_eq!(
        m_lines,
        [
            &b"m=audio 30000 RTP/SAVP 0 8 101\r\n"[..],
            &b"m=audio 30002 UDP/TLS/RTP/SAVPF 111\r\n"[..]
        ]
    );
    // Everything else that changed is an address or an RTCP port.
    for (a, b) in before.iter().zip(&after) {
        if a != b {
            assert!(
                a.starts_with(b"o=")
                    || a.starts_with(b"c=")
                    || a.starts_with(b"m=")
                    || a.starts_with(b"a=rtcp:"),
                "{:?} became {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }
}
