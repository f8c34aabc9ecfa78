//! SRTP passes the relay unchanged (issue 12): an SDES-SRTP offer and answer (`RTP/SAVP`,
//! `a=crypto`) anchored by the real relay keep every crypto line byte for byte, and SRTP
//! packets (RTP header, encrypted payload, authentication tag) reach the other side exactly
//! as sent, both ways. The relay never needs the keys: it relays by address and port.
//! Runs on 127.0.133.x (its own loopback net) and ports 31300–31339.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;
use trunkgate_media::{CallInfo, Latch, MediaConfig, Relay, SdpKind, Side};

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 133, 1));
const PEERS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 133, 2));

fn config() -> MediaConfig {
    MediaConfig {
        bind: RELAY,
        advertised: RELAY,
        alternate: None,
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
        port_min: 31300,
        port_max: 31339,
        dscp: 46,
        latch: Latch::Any,
        timeout: Duration::from_secs(60),
        hold_timeout: Duration::from_secs(3600),
        threads: 1,
        quarantine: Duration::from_secs(30),
        nice: 0,
        max_sockets: usize::MAX,
        quality: trunkgate_media::QualityConfig::default(),
    }
}

fn sdes(port: u16, keys: &[&str]) -> Vec<u8> {
    let mut body = format!(
        "v=0\r\no=- 7 7 IN IP4 {PEERS}\r\ns=-\r\nc=IN IP4 {PEERS}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 8 101\r\n"
    );
    for (i, key) in keys.iter().enumerate() {
        body.push_str(&format!(
            "a=crypto:{} AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31\r\n",
            i + 1
        ));
    }
    body.push_str("a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n");
    body.into_bytes()
}

fn lines_with<'a>(body: &'a [u8], prefix: &str) -> Vec<&'a str> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\r\n")
        .filter(|l| l.starts_with(prefix))
        .collect()
}

fn m_port(body: &[u8]) -> u16 {
    lines_with(body, "m=")[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// An SRTP packet as a sender would emit it: RTP header, 160 bytes of ciphertext (here a
/// pattern), a 10-byte HMAC-SHA1-80 tag.
fn srtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x5a5a_0001u32.to_be_bytes());
    p.extend((0..160u32).map(|i| (i.wrapping_mul(37) ^ u32::from(seq)) as u8));
    p.extend_from_slice(&[0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18, 0x29, 0x3A]);
    p
}

#[test]
fn sdes_srtp_offer_answer_and_packets_pass_the_relay_unchanged() {
    let relay = Relay::start(config(), vec!["carrier-a".into()], Box::new(|_| {})).unwrap();
    let a = UdpSocket::bind((PEERS, 0)).unwrap();
    let b = UdpSocket::bind((PEERS, 0)).unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }
    let offer = sdes(
        a.local_addr().unwrap().port(),
        &[
            "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        ],
    );
    let answer = sdes(
        b.local_addr().unwrap().port(),
        &["d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"],
    );
    let call = CallInfo {
        id: 1,
        call_id: b"srtp@test",
        trunk: Some(0),
        inbound: false,
        peers: [None, None],
    };
    let mut to_b = Vec::new();
    relay
        .update(&call, Side::A, SdpKind::Offer, &offer, &mut to_b)
        .unwrap();
    let mut to_a = Vec::new();
    relay
        .update(&call, Side::B, SdpKind::Answer, &answer, &mut to_a)
        .unwrap();
    for (sent, anchored) in [(&offer, &to_b), (&answer, &to_a)] {
        assert_eq!(
            lines_with(sent, "a=crypto:"),
            lines_with(anchored, "a=crypto:"),
            "crypto lines changed"
        );
        assert_eq!(
            lines_with(anchored, "m=")[0]
                .split(' ')
                .skip(2)
                .collect::<Vec<_>>(),
            ["RTP/SAVP", "8", "101"],
            "profile and formats kept"
        );
        assert_eq!(
            lines_with(anchored, "c=")[0],
            format!("c=IN IP4 {RELAY}"),
            "anchored"
        );
        assert_eq!(
            anchored.len(),
            sent.len(),
            "only same-length addresses and ports changed"
        );
    }
    let (port_for_a, port_for_b) = (m_port(&to_a), m_port(&to_b));
    for seq in 0..5u16 {
        a.send_to(&srtp(seq), (RELAY, port_for_a)).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = b.recv_from(&mut buf).expect("A→B SRTP");
        assert_eq!(&buf[..n], srtp(seq).as_slice(), "SRTP packet changed A→B");
        assert_eq!(from, SocketAddr::new(RELAY, port_for_b));
        b.send_to(&srtp(1000 + seq), (RELAY, port_for_b)).unwrap();
        let (n, _) = a.recv_from(&mut buf).expect("B→A SRTP");
        assert_eq!(
            &buf[..n],
            srtp(1000 + seq).as_slice(),
            "SRTP packet changed B→A"
        );
    }
    relay.delete(1);
    relay.shutdown();
}
